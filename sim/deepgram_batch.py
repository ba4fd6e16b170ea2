"""The body of Deepgram's pre-recorded (batch) `/v1/listen` answer, as the stand-in sends it.

Consumers of `utterances=true` read `results.utterances` to find where each stretch of speech
starts, so it must be shaped like Deepgram's: one utterance per run of words whose gaps stay
under `utt_split` seconds (0.8 by default), each with its own start, end, words, transcript,
confidence, channel and id. `metadata.duration` is the length of the audio, not the end of
its last word, and the merged transcript's calibration relies on both.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

MODEL_UUID = "1dbdfb4d-85b2-4659-9a7b-0e2e4e1a5d7f"
MODEL_INFO = {"name": "fake-nova-3", "version": "2024-01-01.0", "arch": "nova-3"}
UTT_SPLIT_S = 0.8
CONFIDENCE = 0.98


def utt_split_s(query: dict[str, list[str]]) -> float:
    """The `utt_split` query parameter in seconds; the default when absent or invalid."""
    raw = (query.get("utt_split") or [""])[-1]
    try:
        value = float(raw)
    except ValueError:
        return UTT_SPLIT_S
    return value if value > 0 else UTT_SPLIT_S


def split_utterances(words: list[dict[str, Any]], split_s: float) -> list[dict[str, Any]]:
    """Group timed words into utterances, a new one wherever the silence between two words
    reaches `split_s`."""
    runs: list[list[dict[str, Any]]] = []
    for word in words:
        if runs and word["start"] - runs[-1][-1]["end"] < split_s:
            runs[-1].append(word)
        else:
            runs.append([word])
    return [
        {
            "start": run[0]["start"],
            "end": run[-1]["end"],
            "confidence": round(sum(w["confidence"] for w in run) / len(run), 4),
            "channel": 0,
            "transcript": " ".join(w["punctuated_word"] for w in run),
            "words": run,
            "id": str(uuid.uuid4()),
        }
        for run in runs
    ]


def response(
    text: str,
    words: list[dict[str, Any]],
    *,
    body: bytes,
    query: dict[str, list[str]],
    duration_s: float,
) -> dict[str, Any]:
    """The JSON answer for a recording (`body`) whose words are `words`."""
    alternative = {"transcript": text, "confidence": CONFIDENCE, "words": words}
    results: dict[str, Any] = {"channels": [{"alternatives": [alternative]}]}
    if query.get("utterances") == ["true"] and words:
        results["utterances"] = split_utterances(words, utt_split_s(query))
    metadata = {
        "transaction_key": "deprecated",
        "request_id": str(uuid.uuid4()),
        "sha256": hashlib.sha256(body).hexdigest(),
        "created": "2024-01-01T00:00:00.000Z",
        "duration": round(duration_s, 3),
        "channels": 1,
        "models": [MODEL_UUID],
        "model_info": {MODEL_UUID: MODEL_INFO},
    }
    return {"metadata": metadata, "results": results}
