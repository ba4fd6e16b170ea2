"""The tools declared to the voice model: what the model can pass is what media relays."""

from __future__ import annotations

from google.genai import types

from media.call.tools import options_from_args
from media.providers import agent_prompt


def test_ask_user_declares_optional_string_options() -> None:
    ask = next(t for t in agent_prompt.agent_tools() if t.name == "ask_user")
    assert ask.parameters is not None and ask.parameters.properties is not None
    assert ask.parameters.required == ["question"]
    options = ask.parameters.properties["options"]
    assert options.type == types.Type.ARRAY
    assert options.items is not None and options.items.type == types.Type.STRING


def test_options_from_args_keeps_only_real_choices() -> None:
    assert options_from_args({}) == ()
    assert options_from_args({"options": "20:30"}) == ()  # not a list
    assert options_from_args({"options": [" 20:30 ", "", None, 21, ["x"]]}) == ("20:30", "21")
    assert len(options_from_args({"options": [str(i) for i in range(50)]})) == 10


def test_every_tool_declares_its_behavior_and_only_send_dtmf_blocks() -> None:
    behavior = {t.name: t.behavior for t in agent_prompt.agent_tools()}
    assert behavior == {
        "ask_user": types.Behavior.NON_BLOCKING,
        "end_call": types.Behavior.NON_BLOCKING,
        "send_dtmf": types.Behavior.BLOCKING,
        "report_signal": types.Behavior.NON_BLOCKING,
    }


def test_answers_are_silent_unless_the_model_must_act_on_them() -> None:
    scheduling = agent_prompt.tool_scheduling
    silent = types.FunctionResponseScheduling.SILENT
    when_idle = types.FunctionResponseScheduling.WHEN_IDLE
    assert scheduling("ask_user", {"result": "answered", "mode": "voice"}) == silent
    assert scheduling("ask_user", {"result": "no answer", "timed_out": True}) == when_idle
    assert scheduling("ask_user", {"error": "ask_user needs a question"}) == when_idle
    assert scheduling("end_call", {"result": "ok"}) == silent
    assert scheduling("report_signal", {"result": "noted"}) == silent
    assert scheduling("send_dtmf", {"result": "pressed 1"}) is None  # BLOCKING: not applicable


def test_the_speech_language_code_goes_only_to_models_that_take_one() -> None:
    code = agent_prompt.speech_language_code
    assert code("ru", "gemini-3.8-live") is None  # native audio: the system instruction says it
    assert code("ru", "models/gemini-2.5-flash-native-audio-preview-12-2025") is None
    assert code("ru", "gemini-live-2.5-flash") == "ru-RU"
    assert code("en", "models/gemini-2.0-flash-live-001") == "en-US"
    assert code("auto", "gemini-live-2.5-flash") is None


def test_a_russian_task_is_told_to_speak_russian() -> None:
    instruction = agent_prompt.build_system_instruction(
        "Столик на 3 завтра в 20:00 на имя Иван",
        "ru",
        "restaurant_booking",
        {},
        agent_prompt.DEFAULT_DISCLOSURES["ru"],
    )
    assert "LANGUAGE: Speak Russian." in instruction
