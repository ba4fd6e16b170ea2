"""Async helpers every process needs: cancelling a task we own without eating our own cancel,
and finishing must-happen work whatever cancels its caller."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel the tasks we own and wait until they have finished.

    The `CancelledError` a cancelled task ends with is swallowed, but only while the task
    running this helper has not itself been cancelled meanwhile (`Task.cancelling()` did not
    rise): a fresh cancellation of the caller always propagates (pipecat's `cancel_task`).
    Any other exception a task ended with is not raised here: its owner reports it.
    """
    await cancel_all_and_wait(tasks)


async def cancel_all_and_wait(
    tasks: Iterable[asyncio.Future[Any] | None],
) -> None:
    """`cancel_and_wait` for a collection (the owner's set of background tasks)."""
    pending = [task for task in tasks if task is not None and not task.done()]
    for task in pending:
        task.cancel()
    if not pending:
        return
    current = asyncio.current_task()
    before = current.cancelling() if current is not None else 0
    try:
        await asyncio.wait(pending)
    except asyncio.CancelledError:
        if current is not None and current.cancelling() > before:
            raise


async def finish_even_if_cancelled(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` to its end even if the caller is cancelled meanwhile, then re-raise.

    For must-happen writes (a call's outcome): the work runs as its own task behind
    `asyncio.shield`; on cancellation it is awaited once more before the cancel propagates.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        raise
