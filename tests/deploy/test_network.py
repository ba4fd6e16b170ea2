"""The NetworkPolicies say what docs/deploy.md says: only gateway and media reach core's gRPC
port, only core reaches PostgreSQL, gateway and media accept traffic from the Ingress, and
everything else is denied. The rendered policies are evaluated (ingress side for who may
connect; egress side for where gateway and media may go), with every selector required to
select real pods."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import (
    OVERLAYS,
    Obj,
    matches,
    named,
    of_kind,
    pod_labels,
    port_number,
    render,
    workloads,
)

ANY = "anywhere"


def _component(workload: Obj) -> str:
    return pod_labels(workload)["app.kubernetes.io/component"]


def _selected(objs: tuple[Obj, ...], selector: Obj) -> list[Obj]:
    labels = selector.get("matchLabels", {})
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are evaluated here"
    return [w for w in workloads(objs) if matches(labels, pod_labels(w))]


def _port_allowed(rule: Obj, container: Obj, port: int) -> bool:
    ports = rule.get("ports")
    return ports is None or any(port_number(container, p["port"]) == port for p in ports)


def allowed_sources(objs: tuple[Obj, ...], component: str, port: int) -> set[str]:
    """Who may open a connection to `component`'s pods on `port`: components, ANY, or
    `namespace:<name>` for peers chosen by namespace."""
    (target,) = [w for w in workloads(objs) if _component(w) == component]
    container = target["spec"]["template"]["spec"]["containers"][0]
    sources: set[str] = set()
    governed = False
    for policy in of_kind(objs, "NetworkPolicy"):
        spec = policy["spec"]
        if "Ingress" not in spec["policyTypes"] or target not in _selected(
            objs, spec["podSelector"]
        ):
            continue
        governed = True
        for rule in spec.get("ingress", []):
            if not _port_allowed(rule, container, port):
                continue
            if "from" not in rule:
                sources.add(ANY)
            for peer in rule.get("from", []):
                if "namespaceSelector" in peer:
                    assert "podSelector" not in peer
                    name = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    sources.add(f"namespace:{name}")
                else:
                    chosen = _selected(objs, peer["podSelector"])
                    assert chosen, f"{policy['metadata']['name']}: a peer selects no pod"
                    sources |= {_component(w) for w in chosen}
    assert governed, f"no policy governs {component}: it would accept anything"
    return sources


def egress_ports(objs: tuple[Obj, ...], component: str) -> set[tuple[str, int]]:
    """(destination, port) pairs `component` may reach; destination is a component or ANY."""
    (source,) = [w for w in workloads(objs) if _component(w) == component]
    found: set[tuple[str, int]] = set()
    for policy in of_kind(objs, "NetworkPolicy"):
        spec = policy["spec"]
        if "Egress" not in spec["policyTypes"] or source not in _selected(
            objs, spec["podSelector"]
        ):
            continue
        for rule in spec.get("egress", []):
            ports = rule.get("ports")
            assert ports, f"{policy['metadata']['name']}: an egress rule open on every port"
            dests = [ANY] if "to" not in rule else [
                _component(w) for peer in rule["to"] for w in _selected(objs, peer["podSelector"])
            ]  # fmt: skip
            found |= {(d, int(p["port"])) for d in dests for p in ports}
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_selector_selects_pods(overlay: str) -> None:
    objs = render(overlay)
    for policy in of_kind(objs, "NetworkPolicy"):
        assert _selected(objs, policy["spec"]["podSelector"]), policy["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_is_denied_unless_allowed(overlay: str) -> None:
    objs = render(overlay)
    deny = named(objs, "NetworkPolicy", "callagent-default-deny")["spec"]
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    assert _selected(objs, deny["podSelector"]) == workloads(objs)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_gateway_and_media_reach_core(overlay: str) -> None:
    objs = render(overlay)
    assert allowed_sources(objs, "core", 50051) == {"gateway", "media"}
    assert allowed_sources(objs, "core", 9464) == {"namespace:monitoring"}  # Prometheus


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_and_media_accept_ingress_traffic(overlay: str) -> None:
    objs = render(overlay)
    assert allowed_sources(objs, "gateway", 8080) == {ANY}
    assert allowed_sources(objs, "media", 8081) == {ANY}
    assert allowed_sources(objs, "gateway", 9999) == set()


def test_only_core_reaches_postgres() -> None:
    objs = render("dev")
    assert allowed_sources(objs, "postgres", 5432) == {"core"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_and_media_cannot_reach_a_database(overlay: str) -> None:
    """In prod PostgreSQL is outside the cluster, so the egress rules are what keep gateway
    and media off it: core on its gRPC port, DNS, and (media only) HTTPS to the providers and
    other media pods' media port (a DTMF re-connect relayed to the call's owner)."""
    objs = render(overlay)
    dns = {(ANY, 53)}
    assert egress_ports(objs, "gateway") == {("core", 50051)} | dns
    assert egress_ports(objs, "media") == {("core", 50051), ("media", 8081), (ANY, 443)} | dns


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_media_pods_may_relay_to_each_other_on_the_media_port(overlay: str) -> None:
    objs = render(overlay)
    assert ("media", 8081) in egress_ports(objs, "media")
    assert allowed_sources(objs, "media", 8081) & {"media", ANY}  # and the owner accepts it
