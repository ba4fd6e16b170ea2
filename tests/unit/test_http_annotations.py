"""The protos' `google.api.http` REST mappings and the gateway's FastAPI routes agree.

Both ways: every annotated RPC is served by exactly that method + path, by a route
that calls that RPC; every contract route is the mapping of one annotated RPC. A
route with a JSON body maps with `body: "*"`, except a route that forwards the raw body
(`await request.body()`): it maps with `body: "<field>"`, a `google.api.HttpBody` field it
fills. Path parameters are request fields, and the internal-only services (media
session, telephony events, admin) carry no mapping.
So a grpc-gateway generated from proto/ would serve the same paths as the gateway.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
from typing import Any

import pytest
from callagent.v1 import (
    accounts_pb2,
    admin_pb2,
    bookings_pb2,
    calls_pb2,
    media_pb2,
    skills_pb2,
    telephony_pb2,
)
from fastapi.routing import APIRoute
from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from gateway import routes as routes_package
from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.unit.test_openapi_contract import CONTRACT, METHODS

PUBLIC = {
    "AccountService": "accounts",  # the gateway.stubs.Stubs attribute that calls it
    "BookingService": "bookings",
    "CallService": "calls",
    "SkillService": "skills",
}
INTERNAL = {"AdminService", "MediaSessionService", "TelephonyEventService"}
Key = tuple[str, str]  # (HTTP method, path template)


def _services() -> list[ServiceDescriptor]:
    modules = (accounts_pb2, admin_pb2, bookings_pb2, calls_pb2, media_pb2, skills_pb2)
    modules += (telephony_pb2,)
    return [s for m in modules for s in m.DESCRIPTOR.services_by_name.values()]


def _rule(method: MethodDescriptor) -> http_pb2.HttpRule | None:
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return None
    rule: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]
    return rule


def _annotated() -> dict[Key, tuple[MethodDescriptor, http_pb2.HttpRule]]:
    out: dict[Key, tuple[MethodDescriptor, http_pb2.HttpRule]] = {}
    for service in _services():
        for method in service.methods:
            rule = _rule(method)
            if rule is None:
                continue
            verb = rule.WhichOneof("pattern")
            assert verb in METHODS, (method.full_name, verb)
            key = (verb, getattr(rule, verb))
            assert key not in out, f"{key} is mapped by two RPCs"
            out[key] = (method, rule)
    return out


@pytest.fixture(scope="module")
def routes() -> dict[Key, APIRoute]:
    """The contract routes the gateway serves (per its OpenAPI document), each with the
    APIRoute (of a `gateway.routes` module's router) whose endpoint serves it."""
    contract = json.loads(CONTRACT.read_text())
    served = create_app(GatewaySettings()).openapi()["paths"]
    wanted = {(m, p) for p, ops in contract["paths"].items() for m in ops if m in METHODS}
    assert {(m, p) for p, ops in served.items() for m in ops} >= wanted
    out: dict[Key, APIRoute] = {}
    for info in pkgutil.iter_modules(routes_package.__path__):
        module = importlib.import_module(f"{routes_package.__name__}.{info.name}")
        for route in module.router.routes:
            assert isinstance(route, APIRoute)
            for verb in route.methods:
                key = (verb.lower(), route.path)
                assert key not in out, f"{key} is served twice"
                out[key] = route
    assert set(out) >= wanted, f"contract routes outside gateway.routes: {wanted - set(out)}"
    return {key: route for key, route in out.items() if key in wanted}


def test_every_annotated_rpc_is_served_by_its_route(routes: dict[Key, APIRoute]) -> None:
    for key, (method, _) in _annotated().items():
        assert key in routes, f"{method.full_name} maps to {key}, which the gateway lacks"
        stub = PUBLIC[method.containing_service.name]
        source = inspect.getsource(routes[key].endpoint)
        assert f"core.{stub}.{method.name}(" in source, (key, method.full_name)


def test_every_contract_route_has_an_annotated_rpc(routes: dict[Key, APIRoute]) -> None:
    missing = set(routes) - set(_annotated())
    assert not missing, f"routes with no google.api.http mapping in proto/: {missing}"


HTTP_BODY = "google.api.HttpBody"


def _http_body_fields(method: MethodDescriptor) -> set[str]:
    return {
        f.name
        for f in method.input_type.fields
        if f.message_type is not None and f.message_type.full_name == HTTP_BODY
    }


def test_body_and_path_parameters_match(routes: dict[Key, APIRoute]) -> None:
    contract: dict[str, Any] = json.loads(CONTRACT.read_text())
    for (verb, path), (method, rule) in _annotated().items():
        has_body = "requestBody" in contract["paths"][path][verb]
        source = inspect.getsource(routes[(verb, path)].endpoint)
        raw = "request.body()" in source
        raw_fields = _http_body_fields(method)
        if not has_body:
            assert not raw, (method.full_name, "reads a body the contract does not declare")
            assert rule.body == "", (method.full_name, rule.body)
        elif raw:
            # The raw body goes to core as is, so transcoding binds it to an HttpBody field.
            assert rule.body in raw_fields, (method.full_name, rule.body, HTTP_BODY)
            assert f"{rule.body}=httpbody_pb2.HttpBody(" in source, (method.full_name, rule.body)
        else:
            assert rule.body == "*", (method.full_name, rule.body)
        # An HttpBody field that is not the body would be filled from query parameters.
        assert raw_fields <= {rule.body}, (method.full_name, raw_fields)
        fields = set(method.input_type.fields_by_name)
        for param in re.findall(r"{(\w+)}", path):
            assert param in fields, (method.full_name, param)
            assert param != rule.body, (method.full_name, param)
        assert not rule.additional_bindings, method.full_name


def test_only_public_services_are_annotated() -> None:
    for service in _services():
        annotated = [m.name for m in service.methods if _rule(m) is not None]
        if service.name in INTERNAL:
            assert not annotated, (service.name, annotated)
        else:
            assert service.name in PUBLIC, f"classify {service.name} as PUBLIC or INTERNAL"
            assert annotated == [m.name for m in service.methods], service.name
