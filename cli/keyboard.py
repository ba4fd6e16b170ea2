"""Stdin read on the event loop for `callagent call`, so typing an answer never stalls the
live event stream: whole lines, or single keys (cbreak, no echo) while the live view
draws the line being typed.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import sys
from typing import Any


class Keyboard:
    """Stdin read on the event loop (add_reader), so waiting for an answer never stalls the
    event stream. In key mode the terminal is in cbreak with echo off and the live view
    draws the line being typed; otherwise whole lines are delivered."""

    def __init__(self, *, keys: bool) -> None:
        self.keys = keys
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._fd = sys.stdin.fileno()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self._saved: list[Any] | None = None
        self._watching = False

    def __enter__(self) -> Keyboard:
        if self.keys:
            import termios
            import tty

            self._saved = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)
        try:
            asyncio.get_running_loop().add_reader(self._fd, self._readable)
            self._watching = True
        except PermissionError:  # a regular file or /dev/null: reading never blocks
            while self._readable():
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        self._unwatch()
        if self._saved is not None:
            import termios

            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)

    def _readable(self) -> bool:
        try:
            chunk = os.read(self._fd, 4096)
        except BlockingIOError:
            return True
        text = self._decoder.decode(chunk, final=not chunk)
        if self.keys:
            for key in text:
                self.queue.put_nowait(key)
        else:
            *lines, self._partial = (self._partial + text).split("\n")
            for line in lines:
                self.queue.put_nowait(line)
        if not chunk:
            if self._partial:
                self.queue.put_nowait(self._partial)
            self.queue.put_nowait(None)
            self._unwatch()
        return bool(chunk)

    def _unwatch(self) -> None:
        if self._watching:
            asyncio.get_running_loop().remove_reader(self._fd)
            self._watching = False
