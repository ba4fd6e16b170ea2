"""What each process really serves: the HTTP paths of the gateway's and media's apps, built
by their own `create_app` (nothing runs; the route tables are read), and the port each one
listens on under a container's settings."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import SecretStr
from starlette.routing import BaseRoute, Match

from gateway.app import create_app as create_gateway
from gateway.settings import GatewaySettings
from media.server import create_app as create_media
from media.settings import MediaSettings
from media.twilio.stream_endpoint import STREAM_PATH
from telephony.settings import TwilioSettings
from tests.deploy.manifests import setting_default

# The setting that holds each process's listening port.
PORT_SETTING = {
    "core.main": "callagent_grpc_port",
    "gateway.main": "callagent_http_port",
    "media.server": "callagent_media_port",
}


def serves(process: str, path: str, method: str = "GET") -> bool:
    """Whether the process's app routes `method path` to a handler (the router's own match)."""
    if process == "media.server" and path == STREAM_PATH:
        return method == "GET"  # the websocket upgrade, taken before routing (media.server)
    routes = _app_routes(process)
    scope = {"type": "http", "path": path, "method": method, "root_path": "", "headers": []}
    return any(route.matches(scope)[0] == Match.FULL for route in routes)


@functools.cache
def _app_routes(process: str) -> tuple[BaseRoute, ...]:
    if process == "gateway.main":
        return tuple(create_gateway(GatewaySettings()).router.routes)
    if process == "media.server":
        app = create_media(
            MediaSettings(internal_token=SecretStr("t")),
            TwilioSettings(twilio_account_sid="AC" + "0" * 32, twilio_auth_token=SecretStr("t")),
        )
        return tuple(app.web.router.routes)
    return ()


def configured(process: str, given: dict[str, tuple[str, Any]], field_name: str) -> int:
    """The integer setting a container runs with: its ConfigMap/env value, else the default."""
    kind, value = given.get(field_name.upper(), ("default", None))
    if kind in ("configMap", "value"):
        return int(value)
    assert kind == "default", f"{field_name} must be a plain value, not {kind}"
    return int(setting_default(process, field_name))


def listen_port(process: str, given: dict[str, tuple[str, Any]]) -> int:
    return configured(process, given, PORT_SETTING[process])
