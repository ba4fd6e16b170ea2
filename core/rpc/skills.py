"""SkillService: public discovery, and runs that become calls (idempotent by key)."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeAlias

import asyncpg
import grpc
import orjson
from callagent.v1 import skills_pb2, skills_pb2_grpc

from core.app import accounts, calls, idempotency
from core.domain import idempotency as idempotency_rules
from core.domain import skills, tasks
from core.domain.errors import CallagentError
from core.rpc.interceptor import current_principal

Ctx: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def run_response(skill_id: str, started: calls.Started, task: skills.SkillTask) -> bytes:
    call_id = started.call["call_id"]
    return skills_pb2.RunSkillResponse(
        skill_run_id=f"srun_{call_id}",
        call_id=call_id,
        call_sid=started.call["call_sid"],
        owner_pod=started.call["owner_pod"],
        status=started.call["status"],
        credits_reserved=started.credits_reserved,
        status_url=f"/calls/{call_id}",
        answer_url=f"/calls/{call_id}/answer",
        # The recording itself is admin-only; what a customer can fetch of the call's
        # conversation after it ends is the merged transcript.
        recording_url=f"/calls/{call_id}/transcript-merged",
        replayed=False,
        expected_next_steps=skills.expected_next_steps(call_id, started.queued, task.ask_user_mode),
        queued=started.queued,
    ).SerializeToString()


class SkillServicer(skills_pb2_grpc.SkillServiceServicer):
    def __init__(
        self, registry: skills.Registry, service: calls.CallService, pool: asyncpg.Pool[Any]
    ) -> None:
        self._registry = registry
        self._calls = service
        self._pool = pool
        self._summaries = skills_pb2.ListSkillsResponse(
            skills=[skills_pb2.SkillSummary(**dataclasses.asdict(s)) for s in registry.list()]
        )

    async def ListSkills(self, request: skills_pb2.ListSkillsRequest, context: Ctx) -> Any:
        return self._summaries

    async def GetSkillManifest(
        self, request: skills_pb2.GetSkillManifestRequest, context: Ctx
    ) -> Any:
        return skills_pb2.GetSkillManifestResponse(
            manifest_json=self._registry.manifest_json(request.skill_id),
            etag=self._registry.etag(request.skill_id),
        )

    async def RunSkill(self, request: skills_pb2.RunSkillRequest, context: Ctx) -> Any:
        customer_id = current_principal().customer_id
        try:
            body = orjson.loads(request.input.data or b"{}")
        except orjson.JSONDecodeError:
            raise CallagentError("INVALID_ARGUMENT_INPUT", "the body is not JSON") from None
        key = idempotency_rules.make_key(
            customer_id,
            request.request_id if request.HasField("request_id") else None,
            f"skill:{request.skill_id}",
            body,
        )
        if key is not None:
            # A retry of a finished run skips validation: its body was validated already.
            stored = await idempotency.lookup(
                self._pool, key, self._calls.policy.idempotency_stale_sec
            )
            if stored is not None:
                return self._replay(stored)
        task = self._registry.validate(request.skill_id, body)
        await self._check_channels(customer_id, task)
        idem = None
        if key is not None:
            idem = calls.Idempotent(key, lambda s: run_response(request.skill_id, s, task))
        result = await self._calls.start(
            customer_id, tasks.StartRequest(**dataclasses.asdict(task)), idem
        )
        if isinstance(result, calls.Replay):
            return self._replay(idempotency_rules.Stored(result.response, None))
        return skills_pb2.RunSkillResponse.FromString(run_response(request.skill_id, result, task))

    @staticmethod
    def _replay(stored: idempotency_rules.Stored) -> skills_pb2.RunSkillResponse:
        if stored.error is not None:
            raise stored.error
        assert stored.response is not None
        replay = skills_pb2.RunSkillResponse.FromString(stored.response)
        replay.replayed = True
        return replay

    async def _check_channels(self, customer_id: str, task: skills.SkillTask) -> None:
        """ask_user_mode 'any' must have somewhere to send questions besides SSE."""
        if task.ask_user_mode != "any":
            return
        if await accounts.ask_user_channels(self._pool, customer_id):
            return
        raise CallagentError(
            "ASK_USER_CHANNEL_MISSING",
            "ask_user_mode 'any' needs an ask_user webhook (PUT /users/me/webhook) or a linked "
            "Telegram chat; configure one, or pass ask_user_mode 'stream' and answer questions "
            "from GET /calls/{call_id}/events with POST /calls/{call_id}/answer",
        )
