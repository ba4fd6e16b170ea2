"""The little HTTP/1.1 the sim's plain-HTTP stand-ins need (Deepgram's batch POST, Gemini's
generateContent and model lookup): one request per connection, read whole, answered with
JSON, closed. The websocket stand-ins cannot take POST bodies, hence this."""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any


async def read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]]:
    """(method, target, lower-cased headers) of the next request.

    Raises:
        ValueError: an unparsable request line.
        asyncio.IncompleteReadError, asyncio.LimitOverrunError: the head never ended.
    """
    head = await reader.readuntil(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers = {}
    for line in header_lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return method, target, headers


async def write_json(
    writer: asyncio.StreamWriter,
    status: int,
    payload: Any,
    content_type: str = "application/json",
) -> None:
    """One JSON response, with its length, on a connection that then closes."""
    data = json.dumps(payload).encode()
    writer.write(
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(data)}\r\nconnection: close\r\n\r\n".encode()
        + data
    )
    await writer.drain()
