"""What the deploy tests read: the rendered overlays, and what each process really accepts.

`render` runs the real `kubectl kustomize`. A workload's process is the module of its
container command; `settings_env` lists the environment variables that process's settings
classes read (pydantic-settings: the field name upper-cased, no prefix), so a misspelt or
misplaced variable in a manifest is caught rather than silently ignored.
"""

from __future__ import annotations

import functools
import pathlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from core.settings import Settings as CoreSettings
from gateway.settings import GatewaySettings
from media.settings import MediaSettings
from telephony.settings import TwilioSettings

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "prod")
Obj = dict[str, Any]

# The process each image command runs, and the settings classes it reads.
PROCESSES: dict[str, tuple[type[BaseSettings], ...]] = {
    "core.main": (CoreSettings,),
    "gateway.main": (GatewaySettings,),
    "media.server": (MediaSettings, TwilioSettings),
}


@functools.cache
def render(overlay: str) -> tuple[Obj, ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the overlays cannot be rendered here")
    out = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def of_kind(objs: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def named(objs: tuple[Obj, ...], kind: str, name: str) -> Obj:
    found = [o for o in of_kind(objs, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def workloads(objs: tuple[Obj, ...]) -> list[Obj]:
    return [o for o in objs if o["kind"] in ("Deployment", "StatefulSet")]


def pod_labels(workload: Obj) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def containers(objs: tuple[Obj, ...]) -> Iterator[tuple[Obj, Obj]]:
    for w in workloads(objs):
        for c in w["spec"]["template"]["spec"]["containers"]:
            yield w, c


def process_of(container: Obj) -> str | None:
    """The module a callagent container runs (`python -m <module>`), else None."""
    command = container.get("command", [])
    if command[:2] == ["python", "-m"] and len(command) == 3:
        module: str = command[2]
        return module
    return None


def callagent_containers(objs: tuple[Obj, ...]) -> Iterator[tuple[Obj, Obj, str]]:
    for w, c in containers(objs):
        if (process := process_of(c)) is not None:
            yield w, c, process


def settings_env(process: str) -> dict[str, Any]:
    """Environment variable → the default, for every setting `process` reads."""
    names: dict[str, Any] = {}
    for cls in PROCESSES[process]:
        config = cls.model_config
        assert config.get("env_prefix", "") == "" and not config.get("case_sensitive"), cls
        for field_name, field in cls.model_fields.items():
            assert field.validation_alias is None and field.alias is None, (cls, field_name)
            names[field_name.upper()] = field
    return names


def setting_default(process: str, field_name: str) -> Any:
    for cls in PROCESSES[process]:
        if field_name in cls.model_fields:
            return cls.model_fields[field_name].get_default(call_default_factory=True)
    raise KeyError(f"{process} has no setting {field_name}")


def env_sources(objs: tuple[Obj, ...], container: Obj) -> dict[str, tuple[str, Any]]:
    """Every variable the container gets: name → (source kind, value or reference)."""
    found: dict[str, tuple[str, Any]] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            cm = named(objs, "ConfigMap", source["configMapRef"]["name"])
            found |= {k: ("configMap", v) for k, v in cm.get("data", {}).items()}
        else:
            ref = source["secretRef"]
            found |= {k: ("secretRef", ref) for k in _secret_keys(objs, ref["name"])}
    for var in container.get("env", []):
        if "value" in var:
            found[var["name"]] = ("value", var["value"])
        elif "secretKeyRef" in var.get("valueFrom", {}):
            found[var["name"]] = ("secretKeyRef", var["valueFrom"]["secretKeyRef"])
        else:
            found[var["name"]] = ("fieldRef", var["valueFrom"])
    return found


_REFERENCE = re.compile(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def composed_only(container: Obj) -> set[str]:
    """Variables that exist only to build another one's value (`$(POD_IP)` in a later
    variable): Kubernetes expands a reference to a variable defined earlier in `env`.

    A reference to a variable that is not defined earlier fails the assertion: Kubernetes would
    pass the text `$(NAME)` through unexpanded."""
    defined: list[str] = []
    used: set[str] = set()
    for var in container.get("env", []):
        for name in _REFERENCE.findall(var.get("value", "")):
            assert name in defined, f"{var['name']} uses $({name}) before it is defined"
            used.add(name)
        defined.append(var["name"])
    return used


def _secret_keys(objs: tuple[Obj, ...], name: str) -> set[str]:
    secret = named(objs, "Secret", name)
    return set(secret.get("data", {})) | set(secret.get("stringData", {}))


def rendered_secret_keys(objs: tuple[Obj, ...]) -> dict[str, set[str]]:
    return {
        s["metadata"]["name"]: _secret_keys(objs, s["metadata"]["name"])
        for s in of_kind(objs, "Secret")
    }


def external_secret_keys(overlay: str) -> dict[str, set[str]]:
    """The Secrets an overlay expects from outside, per its `secrets.env.example`
    (`# --- <secret name>` opens each Secret's keys)."""
    path = DEPLOY / "overlays" / overlay / "secrets.env.example"
    if not path.exists():
        return {}
    keys: dict[str, set[str]] = {}
    current = None
    for line in path.read_text().splitlines():
        if header := re.match(r"# --- (\S+)", line):
            current = keys.setdefault(header.group(1), set())
        elif line and not line.startswith("#"):
            assert current is not None, f"{path}: a key before any '# --- <secret>' header"
            current.add(line.split("=", 1)[0])
    return keys


def port_number(container: Obj, port: int | str) -> int:
    """A probe's or Service's port (a number or a container port's name) as a number."""
    if isinstance(port, int):
        return port
    found = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert len(found) == 1, f"port {port!r} is not a named port of {container['name']}"
    return int(found[0])
