"""The rendered objects fit together and fit the code: probes hit ports and paths the
processes serve, Services and budgets select the pods, the Ingresses reach media's real
Twilio routes on the host Twilio is told to call, the drain timing matches, and every process
runs from one image."""

from __future__ import annotations

import base64
import urllib.parse

import pytest

from tests.deploy.manifests import (
    OVERLAYS,
    Obj,
    callagent_containers,
    env_sources,
    matches,
    named,
    of_kind,
    pod_labels,
    port_number,
    render,
    workloads,
)
from tests.deploy.served import configured, listen_port, serves

PRESTOP_SEC = 5
DRAIN_SLACK_SEC = 15  # terminationGracePeriodSeconds = MEDIA_DRAIN_SEC + 15 (#14 agreement)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_hit_what_the_process_serves(overlay: str) -> None:
    objs = render(overlay)
    for w, c, process in callagent_containers(objs):
        port = listen_port(process, env_sources(objs, c))
        assert port in {p["containerPort"] for p in c["ports"]}, w["metadata"]["name"]
        for kind in ("readinessProbe", "livenessProbe"):
            probe = c[kind]
            if process == "core.main":  # gRPC health (grpc_health.v1), which core serves
                assert port_number(c, probe["grpc"]["port"]) == port
                assert probe["grpc"].get("service", "") == ""
                continue
            get = probe["httpGet"]
            assert port_number(c, get["port"]) == port, (process, kind)
            assert serves(process, get["path"]), (process, kind, get["path"])
        if process != "core.main":
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_a_wrong_probe_path_is_caught() -> None:
    assert serves("gateway.main", "/readyz") and serves("media.server", "/healthz")
    assert not serves("gateway.main", "/ready") and not serves("media.server", "/readyz/x")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_metrics_are_scraped_where_they_are_served(overlay: str) -> None:
    objs = render(overlay)
    for w, c, process in callagent_containers(objs):
        notes = w["spec"]["template"]["metadata"]["annotations"]
        assert notes["prometheus.io/scrape"] == "true"
        assert notes["prometheus.io/path"] == "/metrics"
        given = env_sources(objs, c)
        expected = (
            configured(process, given, "callagent_metrics_port")  # core: its own HTTP port
            if process == "core.main"
            else listen_port(process, given)  # gateway and media: /metrics beside the API
        )
        assert int(notes["prometheus.io/port"]) == expected, process
        assert expected in {p["containerPort"] for p in c["ports"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_media_drains_within_its_grace_period(overlay: str) -> None:
    objs = render(overlay)
    (media,) = [(w, c) for w, c, p in callagent_containers(objs) if p == "media.server"]
    workload, container = media
    drain = configured("media.server", env_sources(objs, container), "media_drain_sec")
    pod = workload["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == drain + DRAIN_SLACK_SEC
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(PRESTOP_SEC)]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_budgets_and_autoscalers_find_their_pods(overlay: str) -> None:
    objs = render(overlay)
    for svc in of_kind(objs, "Service"):
        (target,) = [w for w in workloads(objs) if matches(svc["spec"]["selector"], pod_labels(w))]
        container = target["spec"]["template"]["spec"]["containers"][0]
        for port in svc["spec"]["ports"]:
            port_number(container, port["targetPort"])
    for pdb in of_kind(objs, "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert len([w for w in workloads(objs) if matches(selector, pod_labels(w))]) == 1
    for hpa in of_kind(objs, "HorizontalPodAutoscaler"):
        target = named(objs, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
        for c in target["spec"]["template"]["spec"]["containers"]:
            assert c["resources"]["requests"]["cpu"], "CPU utilisation needs a CPU request"
    scaled = {h["spec"]["scaleTargetRef"]["name"] for h in of_kind(objs, "HorizontalPodAutoscaler")}
    scaled |= {s["spec"]["scaleTargetRef"]["name"] for s in of_kind(objs, "ScaledObject")}
    assert scaled == {w["metadata"]["name"] for w in of_kind(objs, "Deployment")}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_processes_find_core_through_its_service(overlay: str) -> None:
    objs = render(overlay)
    core = named(objs, "Service", "callagent-core")
    (grpc_port,) = [p["port"] for p in core["spec"]["ports"] if p["name"] == "grpc"]
    for _, c, process in callagent_containers(objs):
        if process != "core.main":
            kind, target = env_sources(objs, c)["CORE_GRPC_TARGET"]
            assert (kind, target) == ("configMap", f"callagent-core:{grpc_port}"), process


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_media_ingress_serves_twilio_on_the_public_url(overlay: str) -> None:
    objs = render(overlay)
    ingress = named(objs, "Ingress", "callagent-media")
    (rule,) = ingress["spec"]["rules"]
    assert any(rule["host"] in tls["hosts"] for tls in ingress["spec"]["tls"])
    paths = {p["path"] for p in rule["http"]["paths"]}
    webhooks = {"/twilio/status", "/twilio/recording-status", "/twilio/amd"}
    assert paths == webhooks | {"/twilio/stream"}
    assert all(serves("media.server", p, "POST") for p in webhooks)
    assert serves("media.server", "/twilio/stream")
    for _, c, process in callagent_containers(objs):
        if process in ("core.main", "media.server"):
            kind, url = env_sources(objs, c)["PUBLIC_BASE_URL"]
            parts = urllib.parse.urlsplit(url)
            assert (kind, parts.scheme, parts.hostname) == ("configMap", "https", rule["host"])
            assert parts.path in ("", "/")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingresses_reach_existing_service_ports(overlay: str) -> None:
    objs = render(overlay)
    for ingress in of_kind(objs, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                svc = named(objs, "Service", backend["name"])
                assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_image_runs_every_process_unprivileged(overlay: str) -> None:
    objs = render(overlay)
    images = {c["image"] for _, c, _ in callagent_containers(objs)}
    assert len(images) == 1
    (image,) = images
    if overlay == "prod":
        assert not image.endswith((":latest", ":dev")) and ":" in image, "prod pins a release"
    for w, c, _ in callagent_containers(objs):
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]


def _postgres_url_fits(objs: tuple[Obj, ...]) -> None:
    svc = named(objs, "Service", "callagent-postgres")
    (secret,) = [s for s in of_kind(objs, "Secret") if "DATABASE_URL" in s.get("data", {})]
    url = urllib.parse.urlsplit(base64.b64decode(secret["data"]["DATABASE_URL"]).decode())
    assert (url.hostname, url.port) == ("callagent-postgres", svc["spec"]["ports"][0]["port"])


def test_dev_database_url_points_at_the_in_cluster_postgres() -> None:
    _postgres_url_fits(render("dev"))
