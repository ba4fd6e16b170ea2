"""Text PostgreSQL can store: no NUL character anywhere.

JSON and protobuf both carry U+0000 happily, but PostgreSQL's `text` and `jsonb` refuse
it, so a NUL that reaches a query fails the statement. Every request is checked at the
boundary (core/rpc) and JSON inputs here, so such input is a 4xx, never a failed query.
"""

from __future__ import annotations

from typing import Any

NUL = "\x00"


def nul_path(value: Any, path: str = "") -> str | None:
    """Where in a JSON value (keys included) a NUL character sits, or None.

    Walks iteratively, so a deeply nested value cannot exhaust the stack.
    """
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                return where or "value"
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{where}.{key}" if where else str(key)
                if isinstance(key, str) and NUL in key:
                    return where or "value"
                stack.append((child, child_path))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
    return None
