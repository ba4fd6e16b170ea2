"""Tests use the simulated world's Gemini Live server as their Gemini fake."""

from sim.gemini_live_server import AUDIO_OUT_MIME, BAD_KEY_REASON, PATH_RE, FakeGeminiLive
from sim.live_connection import LiveConnection, SayResult, ToolResult, UserTurn, either_case

__all__ = [
    "AUDIO_OUT_MIME",
    "BAD_KEY_REASON",
    "PATH_RE",
    "FakeGeminiLive",
    "LiveConnection",
    "SayResult",
    "ToolResult",
    "UserTurn",
    "either_case",
]
