"""Every overlay renders with `kubectl kustomize`, and every object it renders is valid
against the Kubernetes API schemas (`kubernetes-validate`, offline, strict: an unknown or
misplaced field fails) of the oldest and the newest release we target. KEDA's ScaledObject
is a CRD those schemas do not know, so it is checked field by field against the fields of
KEDA's v1alpha1 CRD (kedacore/keda config/crd/bases/keda.sh_scaledobjects.yaml) and the
Prometheus scaler's documented metadata."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest

from tests.deploy.manifests import OVERLAYS, Obj, named, of_kind, render

# 1.30: the oldest release still common on managed clusters (gRPC probes are GA since 1.27).
K8S_VERSIONS = ("1.30.0", "1.37.0")
CRDS = {("keda.sh/v1alpha1", "ScaledObject")}


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_is_valid_kubernetes(overlay: str, version: str) -> None:
    problems = []
    objs = render(overlay)
    for obj in objs:
        if (obj["apiVersion"], obj["kind"]) in CRDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.path)
            problems.append(f"{obj['kind']}/{obj['metadata']['name']} {where}: {exc.message}")
    assert problems == []
    kinds = {o["kind"] for o in objs}
    assert {"Deployment", "Service", "Ingress", "HorizontalPodAutoscaler"} <= kinds
    assert {"PodDisruptionBudget", "NetworkPolicy", "ConfigMap"} <= kinds


def test_a_bad_field_is_caught() -> None:
    """The validation above can fail: a probe with a misspelt field does."""
    deployment = named(render("prod"), "Deployment", "callagent-core")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    broken = {**container, "readinessProbe": {"grpc": {"port": 50051, "prot": 1}}}
    spec = {**deployment["spec"]["template"]["spec"], "containers": [broken]}
    bad = {**deployment, "spec": {**deployment["spec"], "template": {"spec": spec}}}
    with pytest.raises(kubernetes_validate.ValidationError, match="'prot' was unexpected"):
        kubernetes_validate.validate(bad, K8S_VERSIONS[0], strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_media_scales_on_its_live_calls(overlay: str) -> None:
    objs = render(overlay)
    (scaled,) = of_kind(objs, "ScaledObject")
    _check_scaled_object(objs, scaled)


def _check_scaled_object(objs: tuple[Obj, ...], scaled: Obj) -> None:
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert set(scaled) == {"apiVersion", "kind", "metadata", "spec"}
    spec = scaled["spec"]
    known = {
        "scaleTargetRef", "minReplicaCount", "maxReplicaCount", "pollingInterval",
        "cooldownPeriod", "fallback", "advanced", "triggers", "idleReplicaCount",
    }  # fmt: skip
    assert set(spec) <= known, set(spec) - known
    target = spec["scaleTargetRef"]
    assert set(target) <= {"apiVersion", "kind", "name", "envSourceContainerName"}
    assert target.get("kind", "Deployment") == "Deployment"
    media = named(objs, "Deployment", target["name"])
    assert media["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "media.server"
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["minReplicaCount"] <= spec["fallback"]["replicas"] <= spec["maxReplicaCount"]
    assert spec["fallback"]["failureThreshold"] >= 1
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert set(behavior) <= {"scaleUp", "scaleDown"}
    (trigger,) = spec["triggers"]
    known_trigger = {
        "type",
        "metadata",
        "metricType",
        "name",
        "authenticationRef",
        "useCachedMetrics",
    }
    assert set(trigger) <= known_trigger, set(trigger) - known_trigger
    assert trigger["type"] == "prometheus"
    assert trigger["metricType"] == "AverageValue"  # per pod: threshold = live calls per pod
    meta = trigger["metadata"]
    assert set(meta) <= {"serverAddress", "query", "threshold", "activationThreshold",
                         "ignoreNullValues", "namespace", "customHeaders", "unsafeSsl"}  # fmt: skip
    assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata values are strings"
    assert re.match(r"https?://[^/]+:\d+$", meta["serverAddress"])
    assert float(meta["threshold"]) > 0
    query = re.fullmatch(
        r'sum\(callagent_media_active_calls\{namespace="([^"]+)"\}\)', meta["query"]
    )
    assert query, meta["query"]
    namespaces = {o["metadata"].get("namespace") for o in objs if o["kind"] == "Deployment"}
    assert namespaces == {query.group(1)}, "the query must count this namespace's media pods"
