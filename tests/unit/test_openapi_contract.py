"""The gateway's /openapi.json serves exactly the public contract.

Every contract operation must be present with the same parameters (extra ones only
if optional), the same request/response schemas (by name, field names, field types
and required fields; extra fields only if optional: additive ones) and the same status
codes. Extra operations are allowed only
under a tag the contract does not use.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from gateway.app import create_app
from gateway.settings import GatewaySettings

# shared/ sits beside the checkout (or beside the folder of worktrees holding it)
CONTRACT = next(
    (
        folder / "shared/contract/openapi.json"
        for folder in pathlib.Path(__file__).resolve().parents[3:]
        if (folder / "shared/contract/openapi.json").exists()
    ),
    pathlib.Path(__file__).resolve().parents[3] / "shared/contract/openapi.json",
)
METHODS = {"get", "put", "post", "delete", "patch"}


def _shape(schema: dict[str, Any], components: dict[str, Any], depth: int = 0) -> Any:
    """A comparable type signature: names and types, ignoring titles and descriptions."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if depth > 3:
            return ("ref", name)
        return ("ref", name, _shape(components[name], components, depth + 1))
    if "anyOf" in schema:
        return ("anyOf", frozenset(_shape(s, components, depth) for s in schema["anyOf"]))
    if "enum" in schema:
        return ("enum", schema.get("type"), tuple(sorted(schema["enum"])))
    kind = schema.get("type")
    if kind == "array":
        return ("array", _shape(schema.get("items", {}), components, depth))
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return (
            "object",
            tuple(sorted((k, _shape(v, components, depth)) for k, v in props.items())),
            tuple(sorted(schema.get("required", []))),
        )
    return (kind, schema.get("format"))


def _fits(theirs: Any, mine: Any) -> bool:
    """Our shape serves the contract's: equal, except that objects may add optional fields."""
    if theirs == mine:
        return True
    if not (isinstance(theirs, tuple) and isinstance(mine, tuple)) or len(theirs) != len(mine):
        return False
    if theirs[0] != mine[0]:
        return False
    if theirs[0] == "object":
        t_props, m_props = dict(theirs[1]), dict(mine[1])
        extra = set(m_props) - set(t_props)
        return (
            theirs[2] == mine[2]
            and not extra & set(mine[2])
            and all(k in m_props and _fits(v, m_props[k]) for k, v in t_props.items())
        )
    if theirs[0] == "anyOf":
        left = list(mine[1])
        for t in theirs[1]:
            match = next((m for m in left if _fits(t, m)), None)
            if match is None:
                return False
            left.remove(match)
        return not left
    return all(_fits(t, m) for t, m in zip(theirs[1:], mine[1:], strict=True))


def _operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path, method): op
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if method in METHODS
    }


@pytest.fixture(scope="module")
def specs() -> tuple[dict[str, Any], dict[str, Any]]:
    contract = json.loads(CONTRACT.read_text())
    ours = create_app(GatewaySettings()).openapi()
    return contract, ours


def test_every_contract_operation_is_served(specs: tuple[dict[str, Any], dict[str, Any]]) -> None:
    contract, ours = specs
    missing = set(_operations(contract)) - set(_operations(ours))
    assert not missing


def test_extra_operations_only_under_a_separate_tag(
    specs: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    contract, ours = specs
    contract_ops = _operations(contract)
    contract_tags = {t for op in contract_ops.values() for t in op.get("tags", [])}
    for key, op in _operations(ours).items():
        if key not in contract_ops:
            assert op.get("tags") and not set(op["tags"]) & contract_tags, key


def test_parameters_match(specs: tuple[dict[str, Any], dict[str, Any]]) -> None:
    contract, ours = specs
    ours_ops = _operations(ours)
    for key, op in _operations(contract).items():
        theirs = {(p["in"], p["name"]): p for p in op.get("parameters", [])}
        mine = {(p["in"], p["name"]): p for p in ours_ops[key].get("parameters", [])}
        for pkey, param in theirs.items():
            assert pkey in mine, (key, pkey)
            assert param.get("required", False) == mine[pkey].get("required", False), (key, pkey)
            assert _shape(param["schema"], {}) == _shape(mine[pkey]["schema"], {}), (key, pkey)
            for bound in ("minimum", "maximum", "default"):
                assert param["schema"].get(bound) == mine[pkey]["schema"].get(bound), (key, pkey)
        for pkey in set(mine) - set(theirs):
            assert not mine[pkey].get("required", False), ("extra required parameter", key, pkey)


def _body_schema(op: dict[str, Any]) -> Any:
    body = op.get("requestBody")
    if body is None:
        return None
    return body["content"]["application/json"]["schema"]


def test_request_and_response_schemas_match(specs: tuple[dict[str, Any], dict[str, Any]]) -> None:
    contract, ours = specs
    c_comp = contract["components"]["schemas"]
    o_comp = ours["components"]["schemas"]
    ours_ops = _operations(ours)
    for key, op in _operations(contract).items():
        mine = ours_ops[key]
        theirs_body, my_body = _body_schema(op), _body_schema(mine)
        assert (theirs_body is None) == (my_body is None), key
        if theirs_body is not None:
            assert _fits(_shape(theirs_body, c_comp), _shape(my_body, o_comp)), key
            assert op["requestBody"].get("required") == mine["requestBody"].get("required"), key
        for status, response in op["responses"].items():
            assert status in mine["responses"], (key, status)
            content = response.get("content", {}).get("application/json", {})
            my_content = mine["responses"][status].get("content", {}).get("application/json", {})
            if content.get("schema"):
                assert _fits(
                    _shape(content["schema"], c_comp), _shape(my_content.get("schema", {}), o_comp)
                ), (key, status)


def test_schema_names_match(specs: tuple[dict[str, Any], dict[str, Any]]) -> None:
    contract, ours = specs
    assert set(contract["components"]["schemas"]) <= set(ours["components"]["schemas"])


def test_additive_fields_must_be_optional() -> None:
    booking = ("object", (("id", ("string", None)),), ("id",))
    added = ("object", (("id", ("string", None)), ("zone", ("string", None))), ("id",))
    required = ("object", (("id", ("string", None)), ("zone", ("string", None))), ("id", "zone"))
    assert _fits(booking, added) and _fits(("array", booking), ("array", added))
    assert not _fits(booking, required)
    assert not _fits(added, booking)
