"""The manifests give each process only settings it reads, every setting a cluster needs,
and Secrets that exist: a misspelt variable (`CORE_GRPC_TARGT`), one given to the wrong
process, or a secretKeyRef to a key nobody creates would otherwise fail silently or only
at rollout. Settings are read from the real pydantic settings classes."""

from __future__ import annotations

import pytest

from media.settings import MediaSettings
from tests.deploy.manifests import (
    OVERLAYS,
    callagent_containers,
    composed_only,
    env_sources,
    external_secret_keys,
    render,
    rendered_secret_keys,
    settings_env,
)

# Settings whose default suits one laptop only, so a cluster must set them: every process binds
# loopback by default; gateway and media look for core on loopback; core would start an
# embedded PostgreSQL without DATABASE_URL; core and media refuse to start without the carrier's
# credentials and media without INTERNAL_TOKEN (core.main.build_telephony, media.server); Twilio
# calls back on PUBLIC_BASE_URL; media fails every call without a model key.
DEPLOY_REQUIRED = {
    "core.main": {
        "CALLAGENT_BIND_HOST", "DATABASE_URL", "INTERNAL_TOKEN", "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN", "PUBLIC_BASE_URL",
    },
    "gateway.main": {"CALLAGENT_BIND_HOST", "CORE_GRPC_TARGET"},
    "media.server": {
        "CALLAGENT_BIND_HOST", "CORE_GRPC_TARGET", "INTERNAL_TOKEN", "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN", "PUBLIC_BASE_URL", "GEMINI_API_KEY",
    },
}  # fmt: skip


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_is_a_setting_of_its_process(overlay: str) -> None:
    objs = render(overlay)
    unknown = {
        (w["metadata"]["name"], name)
        for w, c, process in callagent_containers(objs)
        for name in env_sources(objs, c)
        if name not in settings_env(process) and name not in composed_only(c)
    }
    assert unknown == set()


def test_a_variable_used_before_it_is_defined_is_caught() -> None:
    """`composed_only` can fail: Kubernetes leaves `$(POD_IP)` as text unless it comes first."""
    container = {
        "env": [
            {"name": "MEDIA_INTERNAL_URL", "value": "ws://$(POD_IP):8081"},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ]
    }
    with pytest.raises(AssertionError):
        composed_only(container)
    container["env"].reverse()
    assert composed_only(container) == {"POD_IP"}
    assert composed_only({"env": [{"name": "X", "value": "$$(POD_IP)"}]}) == set()  # escaped


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_media_pods_name_their_own_address_for_dtmf_relays(overlay: str) -> None:
    """Each media pod's MEDIA_INTERNAL_URL is its pod IP on its media port, so a DTMF
    re-connect relayed by another pod reaches exactly this pod (not the Service)."""
    objs = render(overlay)
    (media,) = [c for _, c, process in callagent_containers(objs) if process == "media.server"]
    given = env_sources(objs, media)
    assert given["POD_IP"] == ("fieldRef", {"fieldRef": {"fieldPath": "status.podIP"}})
    kind, url = given["MEDIA_INTERNAL_URL"]
    assert kind == "value" and composed_only(media) == {"POD_IP"}
    port = given["CALLAGENT_MEDIA_PORT"][1]
    assert url == f"ws://$(POD_IP):{port}"
    assert [p["containerPort"] for p in media["ports"] if p["name"] == "http"] == [int(port)]
    resolved = url.replace("$(POD_IP)", "10.0.3.7")
    assert MediaSettings(media_internal_url=resolved).internal_url == f"ws://10.0.3.7:{port}"


def test_a_misplaced_variable_is_caught() -> None:
    """The check above can fail: DATABASE_URL is core's, not the gateway's."""
    assert "DATABASE_URL" in settings_env("core.main")
    assert "DATABASE_URL" not in settings_env("gateway.main")
    assert "CORE_GRPC_TARGET" not in settings_env("core.main")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_needed_setting_is_set(overlay: str) -> None:
    objs = render(overlay)
    processes = set()
    for w, c, process in callagent_containers(objs):
        processes.add(process)
        given = env_sources(objs, c)
        pydantic_required = {n for n, f in settings_env(process).items() if f.is_required()}
        missing = (DEPLOY_REQUIRED[process] | pydantic_required) - set(given)
        assert missing == set(), (w["metadata"]["name"], missing)
        optional = {
            n for n, (kind, ref) in given.items() if kind == "secretKeyRef" and ref.get("optional")
        }
        assert DEPLOY_REQUIRED[process] & optional == set(), w["metadata"]["name"]
    assert processes == set(DEPLOY_REQUIRED), "one Deployment per process"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_secret_reference_is_provided(overlay: str) -> None:
    """Dev renders its Secrets; prod renders none and lists what must exist beforehand in
    `secrets.env.example`. Either way every key a container reads is accounted for."""
    objs = render(overlay)
    rendered = rendered_secret_keys(objs)
    external = external_secret_keys(overlay)
    assert set(rendered).isdisjoint(external), "a Secret is both rendered and external"
    if overlay == "prod":
        assert rendered == {}, "production secrets never live in the repository"
    available = rendered | external
    for w, c, _ in callagent_containers(objs):
        for name, (kind, ref) in env_sources(objs, c).items():
            if kind != "secretKeyRef":
                continue
            assert ref["key"] == name, (w["metadata"]["name"], name, ref)
            if ref.get("optional"):
                assert ref["name"] in available, (w["metadata"]["name"], ref)
            else:
                assert ref["key"] in available.get(ref["name"], set()), (w["metadata"]["name"], ref)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_core_gets_the_database(overlay: str) -> None:
    objs = render(overlay)
    holders = {
        process
        for _, c, process in callagent_containers(objs)
        if "DATABASE_URL" in env_sources(objs, c)
    }
    assert holders == {"core.main"}
