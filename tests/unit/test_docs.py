"""Docs that must stay true: every error reason is documented."""

from __future__ import annotations

import pathlib

from core.domain.errors import REASONS

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"


def test_every_error_reason_is_in_docs_errors_md() -> None:
    text = (DOCS / "errors.md").read_text()
    missing = [name for name in REASONS if f"`{name}`" not in text]
    assert not missing, f"document these reasons in docs/errors.md: {missing}"
