"""common.aio.cancel_and_wait: our own tasks end quietly, our caller's cancel still wins."""

from __future__ import annotations

import asyncio

import pytest

from common import aio


async def test_cancels_and_waits_for_every_task_without_raising() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    tasks = [asyncio.create_task(forever()) for _ in range(3)]
    await started.wait()
    await aio.cancel_and_wait(*tasks, None)
    assert all(task.cancelled() for task in tasks)


async def test_a_task_that_already_failed_is_not_raised_again() -> None:
    async def boom() -> None:
        raise ValueError("reported by its owner")

    task = asyncio.create_task(boom())
    await asyncio.wait([task])
    await aio.cancel_all_and_wait([task])
    assert isinstance(task.exception(), ValueError)


async def test_a_cancel_of_the_caller_propagates() -> None:
    stubborn_started = asyncio.Event()
    release = asyncio.Event()
    cleaning_up = asyncio.Event()

    async def stubborn() -> None:
        stubborn_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cleaning_up.set()
            await release.wait()  # takes its time to clean up
            raise

    child = asyncio.create_task(stubborn())
    await stubborn_started.wait()
    closer = asyncio.create_task(aio.cancel_and_wait(child))
    await cleaning_up.wait()
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closer
    release.set()
    await asyncio.wait([child])
    assert child.cancelled()


async def test_must_happen_work_finishes_though_its_caller_is_cancelled() -> None:
    release = asyncio.Event()
    done: list[str] = []

    async def write() -> str:
        await release.wait()
        done.append("written")
        return "ok"

    caller = asyncio.create_task(aio.finish_even_if_cancelled(write()))
    await asyncio.sleep(0)  # let the caller start the work
    caller.cancel()
    await asyncio.sleep(0)
    assert not caller.done()  # still waiting for the write
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert done == ["written"]


async def test_must_happen_work_returns_its_result() -> None:
    async def write() -> str:
        return "ok"

    assert await aio.finish_even_if_cancelled(write()) == "ok"
