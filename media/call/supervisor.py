"""Supervisor rules: what kind of thing the agent is talking to, decided from plain facts.

The bridge feeds facts in (callee transcript finals from the Deepgram ear, Twilio's async AMD
`AnsweredBy`, silence runs, the agent's own utterances, the ear being lost) and gets back
`Decision`s to act on: leave a voicemail or hang up, state who is calling to a screener, allow
DTMF for an IVR, wait on hold and give up after a bound, end a call where the agent is stuck
repeating itself, degrade when the ear is lost. The rules are pure: no I/O and no clock. Every
method takes `now_s` (seconds on the caller's monotonic call clock), so a test replays a call
exactly. English and Russian cues; text is normalised (lower case, ё→е, punctuation dropped).

A decision is emitted once per kind per call unless that kind's state changes. Only hold has
states: `wait` on entering hold, `give_up` once `hold_give_up_s` has passed since its onset, and
`wait` again for a new hold after the callee came back. A hold that restarts within
`hold_resume_grace_s` of ending (a looping announcement between "please hold" messages) is the
same hold: same clock, no new decision. Cues match over the previous callee final (if it came
within `cue_window_s`) joined to the new one, because Deepgram endpoints mid-phrase ("please
leave a" / "message after the tone"); a match counts only if it reaches into the new final, so a
cue is never decided twice and hold ends on a final that is not a hold message. Once a voicemail
is detected, transcript cues for screening, IVR and hold are ignored (a greeting saying
"press 1" is still a voicemail).
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import re

AMD_MACHINE = frozenset(
    {"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other"}
)


class Kind(enum.StrEnum):
    VOICEMAIL = "voicemail"
    CALL_SCREENING = "call_screening"
    IVR = "ivr"
    HOLD = "hold"
    AGENT_REPEATING = "agent_repeating"
    EAR_LOST = "ear_lost"


class Action(enum.StrEnum):
    LEAVE_MESSAGE = "leave_message"
    HANG_UP = "hang_up"
    IDENTIFY = "identify"  # say who is calling and why, then continue
    ALLOW_DTMF = "allow_dtmf"
    WAIT = "wait"
    GIVE_UP = "give_up"
    END_NEEDS_FOLLOW_UP = "end_needs_follow_up"
    DEGRADE = "degrade"  # fall back to Gemini's input transcription


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What to do, and why: `reason` names the cue or signal (never the transcript itself)."""

    kind: Kind
    reason: str
    action: Action


@dataclasses.dataclass(frozen=True, slots=True)
class SupervisorSettings:
    """Per-call knobs; defaults suit a consumer phone call."""

    voicemail_action: Action = Action.LEAVE_MESSAGE
    hold_silence_s: float = 20.0
    hold_give_up_s: float = 300.0
    hold_resume_grace_s: float = 30.0
    repeat_count: int = 3
    repeat_similarity: float = 0.9
    cue_window_s: float = 15.0

    def __post_init__(self) -> None:
        if self.voicemail_action not in (Action.LEAVE_MESSAGE, Action.HANG_UP):
            raise ValueError("voicemail_action must be leave_message or hang_up")
        if self.repeat_count < 2:
            raise ValueError("repeat_count must be at least 2")


def _cues(*patterns: str) -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple((p, re.compile(rf"\b(?:{p})\b")) for p in patterns)


_NUMBER = r"(?:\d+|one|two|three|four|five|six|seven|eight|nine|zero|star|pound|hash)"
_RU_NUMBER = (
    r"(?:\d+|один|одну|два|три|четыре|пять|шесть|семь|восемь|девять|ноль|звездочку|решетку)"
)

VOICEMAIL_CUES = _cues(
    r"leave (?:a|your|me a|us a) (?:message|voicemail)",
    r"after the (?:tone|beep)",
    r"at the (?:tone|beep)",
    r"record your message",
    r"voice ?mail",
    r"mailbox",
    r"(?:is )?(?:not available|unavailable) to take your call",
    r"can ?not come to the phone|can t come to the phone",
    r"оставьте (?:ваше |свое |голосовое )?сообщение",
    r"после (?:звукового )?сигнала",
    r"голосов\w* (?:почт\w*|почтов\w* ящик\w*)",
    r"не может (?:сейчас )?ответить на (?:ваш )?звонок",
    r"автоответчик\w*",
)
SCREENING_CUES = _cues(
    r"(?:please )?(?:say|state|record) your name",
    r"who (?:is|s) calling",
    r"reason for (?:your|the) call",
    r"this call is being screened",
    r"before i (?:try to )?connect you",
    r"представьтесь",
    r"назовите (?:ваше |свое )?имя",
    r"кто (?:вы|звонит|это звонит)",
    r"(?:по какому вопросу|цель (?:вашего )?звонка|причину (?:вашего )?звонка)",
)
IVR_CUES = _cues(
    rf"press {_NUMBER}",
    rf"dial {_NUMBER}",
    r"enter (?:your|the) (?:extension|account|number|pin)",
    r"(?:main )?menu options",
    r"to repeat (?:these|this) (?:options|menu)",
    rf"нажмите (?:клавишу )?{_RU_NUMBER}",
    r"для .{1,60} нажмите",
    r"наберите (?:добавочный|номер)",
    r"тонов\w* режим\w*",
    r"главн\w* меню",
)
HOLD_CUES = _cues(
    r"please (?:hold|stay on the line|wait)",
    r"(?:continue|remain) (?:to hold|holding|on the line)",
    r"your call is (?:very )?important",
    r"all (?:of )?our (?:agents|operators|representatives) are (?:currently )?busy",
    r"you are (?:number \w+ )?in (?:the )?queue",
    r"on hold",
    r"оставайтесь на линии",
    r"ожидайте ответа",
    r"(?:пожалуйста )?подождите",
    r"ваш звонок (?:очень )?важен",
    r"все (?:операторы|специалисты) (?:сейчас )?заняты",
)


def normalize(text: str) -> str:
    """Lower case, ё→е, every non-word character to one space; cues match on this form."""
    text = text.lower().replace("ё", "е")
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def _match(
    cues: tuple[tuple[str, re.Pattern[str]], ...], text: str, new_from: int = 0
) -> str | None:
    """The first cue with a match ending past `new_from` (in the newest final's part of text)."""
    for name, pattern in cues:
        if any(m.end() > new_from for m in pattern.finditer(text)):
            return name
    return None


class Supervisor:
    """The rule state of one call; feed it facts in time order, act on the decisions returned."""

    def __init__(self, settings: SupervisorSettings | None = None) -> None:
        self._settings = settings or SupervisorSettings()
        self._emitted: dict[Kind, Action] = {}
        self._hold_since: float | None = None
        # (onset, ended_at) of the last hold, so a hold loop interrupted by an announcement
        # that is not a hold cue resumes the same hold instead of restarting the give-up clock.
        self._last_hold: tuple[float, float] | None = None
        self._agent_recent: list[str] = []
        self._last_final: tuple[float, str] | None = None  # (when, normalised text)
        self.history: list[Decision] = []

    @property
    def holding(self) -> bool:
        return self._hold_since is not None

    def on_amd(self, answered_by: str, now_s: float) -> list[Decision]:
        """Twilio's `AnsweredBy`; `human` and `unknown` decide nothing."""
        out = self._tick(now_s)
        if answered_by in AMD_MACHINE:
            out += self._emit(Kind.VOICEMAIL, f"amd:{answered_by}", self._settings.voicemail_action)
        elif answered_by == "fax":
            out += self._emit(Kind.VOICEMAIL, "amd:fax", Action.HANG_UP)
        return out

    def on_callee_final(self, text: str, now_s: float) -> list[Decision]:
        """A settled callee transcript span (Deepgram `is_final`)."""
        out = self._tick(now_s)
        norm = normalize(text)
        if not norm:
            return out
        last, self._last_final = self._last_final, (now_s, norm)
        new_from = 0
        if last is not None and now_s - last[0] <= self._settings.cue_window_s:
            new_from = len(last[1]) + 1
            norm = f"{last[1]} {norm}"
        if cue := _match(VOICEMAIL_CUES, norm, new_from):
            self._hold_since = None
            return out + self._emit(Kind.VOICEMAIL, f"cue:{cue}", self._settings.voicemail_action)
        if Kind.VOICEMAIL in self._emitted:
            return out
        if cue := _match(SCREENING_CUES, norm, new_from):
            out += self._emit(Kind.CALL_SCREENING, f"cue:{cue}", Action.IDENTIFY)
        if cue := _match(IVR_CUES, norm, new_from):
            out += self._emit(Kind.IVR, f"cue:{cue}", Action.ALLOW_DTMF)
        if cue := _match(HOLD_CUES, norm, new_from):
            out += self._enter_hold(f"cue:{cue}", now_s)
        elif self._hold_since is not None:
            # Something that is not a hold message: the callee may be back.
            self._last_hold = (self._hold_since, now_s)
            self._hold_since = None
        return out

    def on_silence(self, duration_s: float, now_s: float) -> list[Decision]:
        """Nobody has spoken for `duration_s` (silence, or music with no transcribed words)."""
        out = self._tick(now_s)
        if duration_s >= self._settings.hold_silence_s and Kind.VOICEMAIL not in self._emitted:
            out += self._enter_hold("silence", now_s - duration_s)
            out += self._tick(now_s)
        return out

    def on_agent_utterance(self, text: str, now_s: float) -> list[Decision]:
        """One finished utterance of our agent (Gemini output transcription)."""
        out = self._tick(now_s)
        norm = normalize(text)
        if not norm:
            return out
        n = self._settings.repeat_count
        self._agent_recent = [*self._agent_recent, norm][-n:]
        if len(self._agent_recent) == n and all(
            difflib.SequenceMatcher(None, self._agent_recent[0], other).ratio()
            >= self._settings.repeat_similarity
            for other in self._agent_recent[1:]
        ):
            out += self._emit(Kind.AGENT_REPEATING, f"repeated:{n}", Action.END_NEEDS_FOLLOW_UP)
        return out

    def on_ear_lost(self, reason: str, now_s: float) -> list[Decision]:
        return self._tick(now_s) + self._emit(Kind.EAR_LOST, reason, Action.DEGRADE)

    def tick(self, now_s: float) -> list[Decision]:
        """Time passing with no new facts; call periodically so the hold bound can fire."""
        return self._tick(now_s)

    def _enter_hold(self, reason: str, since_s: float) -> list[Decision]:
        if self._hold_since is None:
            last = self._last_hold
            if last is not None and since_s - last[1] <= self._settings.hold_resume_grace_s:
                self._hold_since = last[0]
            else:
                self._hold_since = since_s
                self._emitted.pop(Kind.HOLD, None)
        return self._emit(Kind.HOLD, reason, Action.WAIT)

    def _tick(self, now_s: float) -> list[Decision]:
        since = self._hold_since
        if since is not None and now_s - since >= self._settings.hold_give_up_s:
            return self._emit(
                Kind.HOLD, f"hold_over_{self._settings.hold_give_up_s:g}s", Action.GIVE_UP
            )
        return []

    def _emit(self, kind: Kind, reason: str, action: Action) -> list[Decision]:
        previous = self._emitted.get(kind)
        # Only hold has states after its first decision: wait, then give_up (never back).
        if previous is not None and (
            kind is not Kind.HOLD or previous == action or previous is Action.GIVE_UP
        ):
            return []
        self._emitted[kind] = action
        decision = Decision(kind, reason, action)
        self.history.append(decision)
        return [decision]
