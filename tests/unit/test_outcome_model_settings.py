"""Which outcome classifier core builds from its settings: the model only with a key and
analysis enabled; otherwise none, and the rules decide as before."""

from __future__ import annotations

from core import main as server
from tests.conftest import make_settings


def test_no_key_means_no_model() -> None:
    assert server.build_outcome_model(make_settings(gemini_api_key=None)) is None


def test_analysis_disabled_means_no_model() -> None:
    settings = make_settings(gemini_api_key="k", analysis_enabled=False)
    assert not settings.analysis_configured
    assert server.build_outcome_model(settings) is None


async def test_a_key_builds_the_configured_model() -> None:
    settings = make_settings(
        gemini_api_key="k", analysis_model="gemini-x-flash", analysis_base_url="http://127.0.0.1:9"
    )
    model = server.build_outcome_model(settings)
    assert model is not None and model.model == "gemini-x-flash"
    await model.aclose()
