"""The committed gen/ stubs are exactly what `make gen` produces from proto/."""

from __future__ import annotations

import filecmp
import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _regenerate_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("regenerate", ROOT / "gen" / "regenerate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _differences(left: pathlib.Path, right: pathlib.Path) -> list[str]:
    cmp = filecmp.dircmp(left, right, ignore=["__pycache__"])
    out = [f"only in gen/: {n}" for n in cmp.left_only] + [f"missing: {n}" for n in cmp.right_only]
    _, mismatch, errors = filecmp.cmpfiles(left, right, cmp.common_files, shallow=False)
    out += [f"stale: {n}" for n in mismatch + errors]
    for sub in cmp.common_dirs:
        out += _differences(left / sub, right / sub)
    return out


def test_generated_stubs_are_fresh(tmp_path: pathlib.Path) -> None:
    _regenerate_module().generate(tmp_path)
    stale = _differences(ROOT / "gen" / "callagent", tmp_path / "callagent")
    assert not stale, f"run `make gen` and commit: {stale}"


def test_staleness_is_detected(tmp_path: pathlib.Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    _regenerate_module().generate(fresh)
    altered = tmp_path / "altered"
    altered.mkdir()
    _regenerate_module().generate(altered)
    target = altered / "callagent" / "v1" / "accounts_pb2.pyi"
    target.write_text(target.read_text() + "\n# edited by hand\n")
    assert _differences(altered / "callagent", fresh / "callagent") == ["stale: accounts_pb2.pyi"]
