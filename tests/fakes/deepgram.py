"""Tests use the simulated world's Deepgram server as their Deepgram fake."""

from sim.deepgram_server import (
    MODEL_INFO,
    MODEL_UUID,
    MULAW_BYTES_PER_S,
    BatchRequest,
    FakeDeepgram,
    ListenSession,
    ScriptedUtterance,
    TranscriptSource,
)

__all__ = [
    "MODEL_INFO",
    "MODEL_UUID",
    "MULAW_BYTES_PER_S",
    "BatchRequest",
    "FakeDeepgram",
    "ListenSession",
    "ScriptedUtterance",
    "TranscriptSource",
]
