"""Supervisor rules, replayed on an explicit clock: every kind in English and Russian,
once per kind, the hold give-up bound, and agent repetition."""

from __future__ import annotations

import pytest

from media.call.supervisor import (
    Action,
    Decision,
    Kind,
    Supervisor,
    SupervisorSettings,
    normalize,
)


def _kinds(decisions: list[Decision]) -> list[tuple[Kind, Action]]:
    return [(d.kind, d.action) for d in decisions]


@pytest.mark.parametrize(
    "text",
    [
        "Hi, you've reached Anna. Please leave a message after the tone.",
        "The person you are calling is not available to take your call.",
        "Welcome to the voicemail box of 555-0101.",
        "Здравствуйте, оставьте сообщение после звукового сигнала.",
        "Абонент не может сейчас ответить на ваш звонок.",
        "Вы позвонили на автоответчик.",
    ],
)
def test_voicemail_greeting_leaves_a_message_by_default(text: str) -> None:
    decisions = Supervisor().on_callee_final(text, now_s=3.0)
    assert _kinds(decisions) == [(Kind.VOICEMAIL, Action.LEAVE_MESSAGE)]
    assert decisions[0].reason.startswith("cue:")


@pytest.mark.parametrize(
    "answered_by", ["machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other"]
)
def test_amd_machine_results_are_voicemail_with_the_configured_action(answered_by: str) -> None:
    sup = Supervisor(SupervisorSettings(voicemail_action=Action.HANG_UP))
    assert sup.on_amd(answered_by, now_s=2.0) == [
        Decision(Kind.VOICEMAIL, f"amd:{answered_by}", Action.HANG_UP)
    ]


@pytest.mark.parametrize("answered_by", ["human", "unknown"])
def test_amd_human_or_unknown_decides_nothing(answered_by: str) -> None:
    assert Supervisor().on_amd(answered_by, now_s=2.0) == []


def test_amd_fax_hangs_up_even_when_messages_are_wanted() -> None:
    assert _kinds(Supervisor().on_amd("fax", now_s=1.0)) == [(Kind.VOICEMAIL, Action.HANG_UP)]


def test_voicemail_is_decided_once_and_silences_later_cues() -> None:
    sup = Supervisor()
    assert _kinds(sup.on_amd("machine_start", now_s=1.0)) == [
        (Kind.VOICEMAIL, Action.LEAVE_MESSAGE)
    ]
    assert sup.on_callee_final("Please leave a message after the beep.", now_s=4.0) == []
    assert sup.on_callee_final("To leave a callback number press 1.", now_s=6.0) == []
    assert sup.on_silence(60.0, now_s=70.0) == []
    assert len(sup.history) == 1


def test_a_greeting_with_a_menu_is_still_just_a_voicemail() -> None:
    decisions = Supervisor().on_callee_final(
        "Leave your message after the tone, or press 1 for more options.", now_s=2.0
    )
    assert _kinds(decisions) == [(Kind.VOICEMAIL, Action.LEAVE_MESSAGE)]


@pytest.mark.parametrize(
    "text",
    [
        "Please say your name and the reason for your call.",
        "Who's calling, please?",
        "This call is being screened by Google.",
        "Представьтесь, пожалуйста.",
        "Назовите ваше имя и цель звонка.",
        "Кто звонит?",
    ],
)
def test_call_screening_asks_the_agent_to_identify(text: str) -> None:
    assert _kinds(Supervisor().on_callee_final(text, now_s=1.0)) == [
        (Kind.CALL_SCREENING, Action.IDENTIFY)
    ]


@pytest.mark.parametrize(
    "text",
    [
        "For sales, press 1. For support, press 2.",
        "Please enter your extension followed by the pound key.",
        "Для связи с оператором нажмите ноль.",
        "Нажмите 3, чтобы прослушать меню ещё раз.",
        "Переключите телефон в тоновый режим.",
    ],
)
def test_ivr_menus_allow_dtmf(text: str) -> None:
    assert _kinds(Supervisor().on_callee_final(text, now_s=1.0)) == [(Kind.IVR, Action.ALLOW_DTMF)]


def test_ivr_is_decided_once_per_call() -> None:
    sup = Supervisor()
    assert len(sup.on_callee_final("For billing press 1.", now_s=1.0)) == 1
    assert sup.on_callee_final("For sales press 2.", now_s=3.0) == []
    assert sup.on_callee_final("Для бронирования нажмите 3.", now_s=5.0) == []


@pytest.mark.parametrize(
    "text",
    [
        "Please hold while we connect you.",
        "Your call is important to us. All of our agents are currently busy.",
        "Оставайтесь на линии.",
        "Все операторы сейчас заняты, ожидайте ответа.",
    ],
)
def test_hold_messages_mean_wait(text: str) -> None:
    sup = Supervisor()
    assert _kinds(sup.on_callee_final(text, now_s=1.0)) == [(Kind.HOLD, Action.WAIT)]
    assert sup.holding


def test_hold_gives_up_once_after_the_bound_from_its_onset() -> None:
    sup = Supervisor(SupervisorSettings(hold_give_up_s=120.0))
    assert _kinds(sup.on_callee_final("Please hold.", now_s=10.0)) == [(Kind.HOLD, Action.WAIT)]
    assert sup.on_callee_final("Please continue to hold.", now_s=60.0) == []
    assert sup.tick(129.9) == []
    assert sup.tick(130.0) == [Decision(Kind.HOLD, "hold_over_120s", Action.GIVE_UP)]
    assert sup.tick(200.0) == []
    assert sup.on_callee_final("Thank you for holding, please continue to hold.", 210.0) == []


def test_long_silence_is_hold_counted_from_when_the_silence_began() -> None:
    sup = Supervisor(SupervisorSettings(hold_silence_s=20.0, hold_give_up_s=60.0))
    assert sup.on_silence(19.0, now_s=29.0) == []
    assert _kinds(sup.on_silence(20.0, now_s=30.0)) == [(Kind.HOLD, Action.WAIT)]
    assert sup.on_silence(40.0, now_s=50.0) == []
    assert _kinds(sup.on_silence(60.0, now_s=70.0)) == [(Kind.HOLD, Action.GIVE_UP)]


def test_a_new_hold_after_the_callee_came_back_is_decided_again() -> None:
    sup = Supervisor(SupervisorSettings(hold_resume_grace_s=30.0))
    assert _kinds(sup.on_callee_final("Please hold.", now_s=5.0)) == [(Kind.HOLD, Action.WAIT)]
    assert sup.on_callee_final("Hi, sorry about that, how can I help?", now_s=40.0) == []
    assert not sup.holding
    assert _kinds(sup.on_callee_final("Одну секунду, подождите.", now_s=100.0)) == [
        (Kind.HOLD, Action.WAIT)
    ]


def test_an_announcement_inside_a_hold_loop_does_not_restart_the_clock() -> None:
    sup = Supervisor(SupervisorSettings(hold_give_up_s=100.0, hold_resume_grace_s=30.0))
    assert len(sup.on_callee_final("Please hold.", now_s=0.0)) == 1
    assert sup.on_callee_final("Visit our website for opening hours.", now_s=50.0) == []
    assert sup.on_callee_final("Please hold.", now_s=70.0) == []  # same hold, no new wait
    assert _kinds(sup.tick(100.0)) == [(Kind.HOLD, Action.GIVE_UP)]


@pytest.mark.parametrize(
    "utterances",
    [
        ["Hello, can you hear me?", "Hello? Can you hear me?", "Hello, can you hear me?"],
        ["Алло, вы меня слышите?", "Алло! Вы меня слышите?", "алло вы меня слышите"],
    ],
)
def test_agent_repeating_itself_ends_with_follow_up(utterances: list[str]) -> None:
    sup = Supervisor(SupervisorSettings(repeat_count=3))
    decisions = [d for i, u in enumerate(utterances) for d in sup.on_agent_utterance(u, i * 5.0)]
    assert decisions == [Decision(Kind.AGENT_REPEATING, "repeated:3", Action.END_NEEDS_FOLLOW_UP)]
    assert sup.on_agent_utterance(utterances[0], 20.0) == []  # once per call


def test_agent_varying_its_utterances_is_not_repeating() -> None:
    sup = Supervisor(SupervisorSettings(repeat_count=3))
    lines = [
        "Hello, I'm calling to book a table for two.",
        "Hello, I'm calling to book a table for two.",
        "Tomorrow at seven, if possible.",
        "Hello, I'm calling to book a table for two.",
    ]
    assert [d for i, u in enumerate(lines) for d in sup.on_agent_utterance(u, float(i))] == []


def test_ear_lost_degrades_once() -> None:
    sup = Supervisor()
    assert sup.on_ear_lost("deepgram connection dropped", now_s=12.0) == [
        Decision(Kind.EAR_LOST, "deepgram connection dropped", Action.DEGRADE)
    ]
    assert sup.on_ear_lost("deepgram connection dropped", now_s=13.0) == []


def test_ordinary_conversation_decides_nothing() -> None:
    sup = Supervisor()
    for i, text in enumerate(
        [
            "Bella Napoli, good evening!",
            "Sure, for how many people?",
            "Добрый вечер, ресторан слушает.",
            "На какое время вам удобно?",
        ]
    ):
        assert sup.on_callee_final(text, now_s=float(i)) == []
    assert sup.history == []


def test_normalize_folds_case_punctuation_and_yo() -> None:
    assert (
        normalize("  Ещё РАЗ,  пожалуйста!  Who's calling?") == "еще раз пожалуйста who s calling"
    )


def test_settings_reject_a_voicemail_action_that_is_not_one() -> None:
    with pytest.raises(ValueError, match="voicemail_action"):
        SupervisorSettings(voicemail_action=Action.WAIT)


def test_a_voicemail_phrase_split_over_two_finals_is_caught_once() -> None:
    sup = Supervisor()
    assert sup.on_callee_final("Hi, you've reached Sam. Please leave a", now_s=3.0) == []
    assert _kinds(sup.on_callee_final("message after the tone.", now_s=4.5)) == [
        (Kind.VOICEMAIL, Action.LEAVE_MESSAGE)
    ]
    assert sup.on_callee_final("Thanks.", now_s=5.0) == []
    assert len(sup.history) == 1


def test_an_ivr_cue_split_over_finals_is_decided_once_not_again_on_the_next_final() -> None:
    sup = Supervisor()
    assert sup.on_callee_final("For billing, press", now_s=1.0) == []
    assert _kinds(sup.on_callee_final("two. For sales,", now_s=2.0)) == [
        (Kind.IVR, Action.ALLOW_DTMF)
    ]
    assert sup.on_callee_final("stay on the phone.", now_s=3.0) == []


def test_finals_further_apart_than_the_cue_window_are_not_joined() -> None:
    sup = Supervisor(SupervisorSettings(cue_window_s=5.0))
    assert sup.on_callee_final("I said please leave a", now_s=1.0) == []
    assert sup.on_callee_final("message for him yesterday.", now_s=20.0) == []


def test_hold_ends_on_the_next_final_even_though_the_window_still_holds_the_cue() -> None:
    sup = Supervisor()
    assert _kinds(sup.on_callee_final("Please hold.", now_s=1.0)) == [(Kind.HOLD, Action.WAIT)]
    assert sup.on_callee_final("Okay, I'm back.", now_s=3.0) == []
    assert not sup.holding
