"""One TLS trust store per process for the providers' HTTP clients.

Building an `SSLContext` reads the whole CA bundle (tens of milliseconds of CPU on the event
loop); doing it per call stalled every live call's audio at each call start. The SDKs'
own default is kept: `SSL_CERT_FILE` when set, else certifi's bundle.
"""

from __future__ import annotations

import functools
import os
import ssl

import certifi


@functools.cache
def default_tls() -> ssl.SSLContext:
    """The process's shared client context (built once, on first use)."""
    return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE", certifi.where()))
