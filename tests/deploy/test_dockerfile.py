"""The Dockerfile, which no container engine here can build, read as instructions: two stages,
the runtime one unprivileged (with the numeric user the manifests' runAsUser names), no secret
baked in, every package the project ships copied in and not excluded by .dockerignore, and
the commands it and the manifests run are modules that exist and run as `python -m`."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import tomllib

import pytest

from tests.deploy.manifests import OVERLAYS, PROCESSES, ROOT, callagent_containers, render

DOCKERFILE = ROOT / "Dockerfile"
SECRETISH = re.compile(r"(SECRET|TOKEN|PASSWORD|API_KEY|DATABASE_URL|AUTH)", re.I)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), with continuations joined and heredoc bodies dropped."""
    found: list[tuple[str, str]] = []
    lines = iter(DOCKERFILE.read_text().splitlines())
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\"):
            line = line[:-1] + " " + next(lines).strip()
        word, _, rest = line.strip().partition(" ")
        found.append((word.upper(), rest.strip()))
        if heredoc := re.search(r"<<-?'?(\w+)'?", rest):
            for body in lines:
                if body.strip() == heredoc.group(1):
                    break
    return found


def stages() -> list[list[tuple[str, str]]]:
    split: list[list[tuple[str, str]]] = []
    for word, rest in instructions():
        if word == "FROM":
            split.append([])
        if split:
            split[-1].append((word, rest))
    return split


def test_two_stages_and_a_slim_python_runtime() -> None:
    build, runtime = stages()
    assert re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim AS build", build[0][1])
    assert runtime[0][1] == "python:${PYTHON_VERSION}-slim"
    assert ("COPY", "--from=build /opt/venv /opt/venv") in runtime
    assert not any(w == "COPY" and "--from" not in r for w, r in runtime), "only the venv"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_runs_as_the_unprivileged_user_the_manifests_expect(overlay: str) -> None:
    runtime = stages()[-1]
    (user,) = [rest for word, rest in runtime if word == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric, so the kubelet can verify runAsNonRoot"
    assert gid.isdigit() and int(gid) != 0
    for w, _, _ in callagent_containers(render(overlay)):
        context = w["spec"]["template"]["spec"]["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"]) == (int(uid), int(gid))


def test_no_secret_is_baked_in() -> None:
    for word, rest in instructions():
        if word in ("ENV", "ARG"):
            names = re.findall(r"(\w+)=", rest) or [rest.split()[0]]
            assert not [n for n in names if SECRETISH.search(n)], (word, rest)
    secret_files = {".env", "secrets.env", "database.env"}
    assert not [r for w, r in instructions() if w in ("COPY", "ADD") and
                any(f in r for f in secret_files)]  # fmt: skip


def test_every_shipped_package_is_copied_and_not_ignored() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    sources = {rest.split()[0].rstrip("/") for word, rest in stages()[0] if word == "COPY"}
    copied = sources - {"pyproject.toml"}
    assert "gen" in copied  # the generated stubs: the `callagent` package
    assert copied == (shipped - {"callagent"}) | {"gen"}
    for path in copied:
        assert (ROOT / path).is_dir(), path
    ignore = [
        line for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]  # fmt: skip
    assert ignore[0] == "*", "everything is excluded unless re-included"
    for path in copied | {"pyproject.toml"}:
        assert f"!{path}/" in ignore or f"!{path}" in ignore, path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_command_is_a_runnable_module(overlay: str) -> None:
    (cmd,) = [rest for word, rest in stages()[-1] if word == "CMD"]
    commands = {cmd}
    commands |= {
        str(c["command"]).replace("'", '"') for _, c, _ in callagent_containers(render(overlay))
    }
    modules = set()
    for command in commands:
        match = re.fullmatch(r'\["python", "-m", "([\w.]+)"\]', command)
        assert match, command
        modules.add(match.group(1))
    assert modules <= set(PROCESSES)
    for module in modules:
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None, module
        source = pathlib.Path(spec.origin).read_text()
        assert 'if __name__ == "__main__":' in source, module
