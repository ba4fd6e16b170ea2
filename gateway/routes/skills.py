"""`/skills*`: discover skills and run one as a call, via core's SkillService.

A run's body is the skill's own input, so it goes to core as raw JSON bytes in a
`google.api.HttpBody` (the proto maps it with `body: "input"`; core validates it against
the skill's schema); the manifest is served with an ETag for caching.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from callagent.v1 import skills_pb2
from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from google.api import httpbody_pb2

from gateway import schemas, views
from gateway.credentials import Creds
from gateway.responses import JsonResponse
from gateway.stubs import Core

router = APIRouter(tags=["skills"])

_OBJECT_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"type": "object", "additionalProperties": True, "title": "Body"}
        }
    },
}


@router.get(
    "/skills",
    summary="List registered AI-agent skills",
    response_model=list[schemas.SkillSummary],
)
async def list_skills(core: Core) -> Response:
    reply = await core.skills.ListSkills(skills_pb2.ListSkillsRequest())
    return JsonResponse(
        [
            {
                "skill_id": s.skill_id,
                "title": s.title,
                "description": s.description,
                "manifest_url": s.manifest_url,
                "run_url": s.run_url,
            }
            for s in reply.skills
        ]
    )


@router.get(
    "/skills/{skill_id}/manifest",
    summary="Get the input schema + capability manifest for a skill",
    response_model=dict[str, Any],
)
async def get_manifest(skill_id: str, request: Request, core: Core) -> Response:
    reply = await core.skills.GetSkillManifest(
        skills_pb2.GetSkillManifestRequest(skill_id=skill_id)
    )
    headers = {"ETag": reply.etag, "Cache-Control": "public, max-age=300"}
    if request.headers.get("if-none-match") == reply.etag:
        return Response(status_code=304, headers=headers)
    return Response(reply.manifest_json, media_type="application/json", headers=headers)


@router.post(
    "/skills/{skill_id}/run",
    summary="Run a skill — translates structured input into a voice call",
    status_code=201,
    response_model=schemas.SkillRunResponse,
    responses={
        202: {
            "model": schemas.SkillRunResponse,
            "description": "Call queued (call_queue_enabled). The drainer "
            "dials it later; poll status_url.",
        }
    },
    openapi_extra={"requestBody": _OBJECT_BODY},
)
async def run_skill(
    skill_id: str,
    request: Request,
    creds: Creds,
    core: Core,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    # The raw JSON goes to core as is (core validates it against the skill's schema);
    # only "is it a JSON object" is checked here, with FastAPI's 422 shape.
    raw = await request.body()
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        return JsonResponse(
            {
                "detail": [
                    {
                        "type": "dict_type",
                        "loc": ["body"],
                        "msg": "Input should be a valid JSON object",
                        "input": None,
                    }
                ]
            },
            status_code=422,
        )
    reply = await core.skills.RunSkill(
        skills_pb2.RunSkillRequest(
            skill_id=skill_id,
            input=httpbody_pb2.HttpBody(content_type="application/json", data=raw),
            request_id=idempotency_key,
        ),
        metadata=creds,
    )
    return JsonResponse(views.skill_run(reply), status_code=202 if reply.queued else 201)
