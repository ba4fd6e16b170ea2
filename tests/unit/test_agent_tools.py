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
