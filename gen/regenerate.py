"""Regenerate the Python stubs in gen/ from proto/ with grpcio-tools and mypy-protobuf.

`make gen` runs this; tests/unit/test_stubs.py runs `generate()` into a temp
directory and fails when the committed stubs differ (stale). Only callagent/v1 is
generated: proto/google/api/ (vendored for the `google.api.http` REST mappings) is an
import path only, its Python comes from the googleapis-common-protos package.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PACKAGE = pathlib.Path("callagent") / "v1"


def generate(out_dir: pathlib.Path) -> None:
    """Run protoc (from grpcio-tools) over every proto into out_dir."""
    from grpc_tools import protoc  # dev dependency

    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / PACKAGE).glob("*.proto"))
    include = str(pathlib.Path(protoc.__file__).parent / "_proto")
    bindir = pathlib.Path(sys.executable).parent
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *protos,
    ]
    cwd = os.getcwd()
    os.chdir(PROTO_DIR)
    try:
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
    finally:
        os.chdir(cwd)
    for pkg in (out_dir / "callagent", out_dir / PACKAGE):
        (pkg / "__init__.py").write_text("")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp)
        generate(out)
        target = ROOT / "gen" / "callagent"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(out / "callagent", target)
    print(f"regenerated {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
