"""Run the gateway with uvicorn (uvloop + httptools when installed)."""

from __future__ import annotations

import uvicorn

from common import logs, tracing
from gateway.app import create_app
from gateway.settings import get_settings


def main() -> None:
    settings = get_settings()
    logs.configure(settings.log_format)
    tracing.setup("callagent-gateway", settings.otel_exporter_otlp_endpoint)
    uvicorn.run(
        create_app(settings),
        host=settings.callagent_bind_host,
        port=settings.callagent_http_port,
        log_level="warning",
        log_config=None,  # uvicorn's lines go through our handler (JSON with LOG_FORMAT=json)
        access_log=False,
    )


if __name__ == "__main__":
    main()
