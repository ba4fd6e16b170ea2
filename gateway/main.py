"""Run the gateway with uvicorn (uvloop + httptools when installed)."""

from __future__ import annotations

import logging

import uvicorn

from gateway.app import create_app
from gateway.settings import get_settings


def main() -> None:
    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        create_app(settings),
        host=settings.callagent_bind_host,
        port=settings.callagent_http_port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
