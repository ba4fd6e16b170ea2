"""Refuse, at the boundary, request text PostgreSQL cannot store (a NUL character).

Every unary request message is walked before its servicer runs, nested messages, maps
and `Struct`s included. A NUL in an id can only name nothing, so it is NOT_FOUND with the
same body as any unknown id; a NUL anywhere else is INVALID_ARGUMENT_FIELD naming the
field. Raw JSON bytes (a skill run's body) are checked where they are parsed
(core.domain.skills).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from google.protobuf.message import Message

from core.domain import texts
from core.domain.errors import CallagentError, not_found


def _strings(message: Message, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(field path, text) for every string in the message, keys of maps included."""
    for field, value in message.ListFields():
        path = prefix + field.name
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            yield from ((path, key) for key in value if isinstance(key, str))
            yield from _items(path, value.values())
        elif field.is_repeated:
            yield from _items(path, value)
        else:
            yield from _items(path, [value])


def _items(path: str, items: Iterable[object]) -> Iterator[tuple[str, str]]:
    for item in items:
        if isinstance(item, Message):
            yield from _strings(item, f"{path}.")
        elif isinstance(item, str):
            yield path, item


def check(request: object) -> None:
    """Raise if any string in the request holds a NUL character.

    Raises:
        CallagentError: NOT_FOUND for a NUL in a top-level `*_id` field,
            INVALID_ARGUMENT_FIELD for one anywhere else.
    """
    if not isinstance(request, Message):
        return
    for path, text in _strings(request):
        if texts.NUL not in text:
            continue
        if path.endswith("_id") and "." not in path and path != "request_id":
            raise not_found(path.removesuffix("_id"))
        raise CallagentError(
            "INVALID_ARGUMENT_FIELD", f"{path} contains a NUL character, which cannot be stored"
        )
