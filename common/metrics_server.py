"""`/metrics` on a port of its own, for a process with no HTTP server (core speaks gRPC only).

prometheus-client's server runs in a daemon thread: a scrape never waits on the event loop,
and reads the same registry the RPC handlers write. A port already taken is logged and
skipped rather than fatal: two cores on one host (a laptop, a test) must not stop each other,
while in a pod the port is always free.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

log = logging.getLogger(__name__)


@dataclasses.dataclass
class MetricsServer:
    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @classmethod
    def open(cls, host: str, port: int) -> MetricsServer | None:
        """Serve `/metrics` on host:port (0 picks a free port); None if the port is taken."""
        try:
            server, thread = start_http_server(port, addr=host)
        except OSError as exc:
            log.error("metrics not served: port %s unavailable (%s)", port, exc.strerror)
            return None
        log.info("metrics on %s:%s", host, server.server_port)
        return cls(server, thread)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
