"""Deepgram live finals as the real service sends them, not one tidy final per utterance.

Real `is_final` Results are back-to-back windows that tile the audio: a window's `start` is where
the previous one ended, so it includes the silence before the first word; silence alone yields
finals with an empty transcript; a long utterance arrives as several `is_final` pieces, and only
the last carries `speech_final: true` (after `endpointing` of quiet). Clients that take `start`
as the first word's time, or expect one final per utterance, break on the real service; this
timeline lets the simulator show them that. Positions are on the session's audio clock.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from sim.deepgram_batch import MODEL_INFO, MODEL_UUID


@dataclasses.dataclass(frozen=True, slots=True)
class Windows:
    """How finals are cut: an empty final per `silence_s` of quiet, `piece_words` per piece."""

    silence_s: float = 2.0
    piece_words: int = 5


@dataclasses.dataclass(slots=True)
class WindowState:
    """Per live session: where the last final window ended, words already sent as finals."""

    cursor_s: float = 0.0
    final_words: dict[object, int] = dataclasses.field(default_factory=dict)
    interim_words: dict[object, int] = dataclasses.field(default_factory=dict)


def results(
    words: list[dict[str, Any]],
    start: float,
    end: float,
    *,
    final: bool,
    speech_final: bool,
    from_finalize: bool = False,
) -> dict[str, Any]:
    """One `Results` message for `words` in the window [start, end]."""
    return {
        "type": "Results",
        "channel_index": [0, 1],
        "duration": round(end - start, 3),
        "start": round(start, 3),
        "is_final": final,
        "speech_final": speech_final,
        "from_finalize": from_finalize,
        "channel": {
            "alternatives": [
                {
                    "transcript": " ".join(w["punctuated_word"] for w in words),
                    "confidence": 0.98 if words else 0.0,
                    "words": words,
                }
            ]
        },
        "metadata": {
            "request_id": str(uuid.uuid4()),
            "model_info": MODEL_INFO,
            "model_uuid": MODEL_UUID,
        },
    }


def silence(windows: Windows, state: WindowState, until_s: float) -> list[dict[str, Any]]:
    """Empty finals for whole quiet windows that end by `until_s` (now, or the next speech)."""
    out = []
    while state.cursor_s + windows.silence_s <= until_s:
        end = state.cursor_s + windows.silence_s
        out.append(results([], state.cursor_s, end, final=True, speech_final=False))
        state.cursor_s = end
    return out


def interim(state: WindowState, key: object, words: list[dict[str, Any]]) -> dict[str, Any] | None:
    """An interim for the heard words (`words`: all heard so far) not yet in a final, in the
    open window; None unless a word was heard since the last one (interims grow word by word,
    as the real service's do)."""
    sent = state.final_words.get(key, 0)
    if len(words) <= max(sent, state.interim_words.get(key, 0)):
        return None
    state.interim_words[key] = len(words)
    words = words[sent:]
    start = min(state.cursor_s, words[0]["start"])
    return results(words, start, words[-1]["end"], final=False, speech_final=False)


def pieces(
    windows: Windows,
    state: WindowState,
    key: object,
    words: list[dict[str, Any]],
    now_s: float,
    endpoint_s: float,
) -> tuple[list[dict[str, Any]], bool]:
    """The utterance's `is_final` pieces due by `now_s`; True once the speech_final one is out.

    A piece is due when its last word has been heard; the last piece waits for `endpoint_s`
    of quiet and its window runs to that point.
    """
    out = []
    sent = state.final_words.get(key, 0)
    while sent < len(words):
        upto = min(sent + windows.piece_words, len(words))
        last = upto == len(words)
        end = words[upto - 1]["end"] + (endpoint_s if last else 0.0)
        if now_s < end:
            break
        start = min(state.cursor_s, words[sent]["start"])
        out.append(results(words[sent:upto], start, end, final=True, speech_final=last))
        state.cursor_s, sent = end, upto
    state.final_words[key] = sent
    return out, sent == len(words)


def flush(
    state: WindowState, key: object, words: list[dict[str, Any]], now_s: float, *, finalize: bool
) -> dict[str, Any] | None:
    """What Finalize/CloseStream forces out: the utterance's words not yet sent as finals."""
    sent = state.final_words.get(key, 0)
    if sent >= len(words):
        return None
    rest = words[sent:]
    start = min(state.cursor_s, rest[0]["start"])
    end = max(now_s, rest[-1]["end"])
    state.cursor_s, state.final_words[key] = end, len(words)
    return results(rest, start, end, final=True, speech_final=not finalize, from_finalize=finalize)


def multilingual(message: dict[str, Any]) -> dict[str, Any]:
    """A Results message as a `language=multi` stream sends it: each word tagged with the
    language it was heard in, the alternative with the languages by word count, and the
    (here empty) `language_hint` echo. The sim cannot listen, so a word is Russian if it is
    written in Cyrillic, English otherwise."""
    if message.get("type") != "Results":
        return message
    for alternative in message["channel"]["alternatives"]:
        counts: dict[str, int] = {}
        for word in alternative["words"]:
            word["language"] = "ru" if any("а" <= c.lower() <= "я" for c in word["word"]) else "en"
            counts[word["language"]] = counts.get(word["language"], 0) + 1
        if counts:
            alternative["languages"] = sorted(counts, key=lambda k: -counts[k])
        alternative["languages_hinted"] = []
    return message
