"""Every example values file renders with the real Helm engine, and every manifest validates:
built-in kinds against the Kubernetes schemas, KEDA and ServiceMonitor resources against their
vendored CRD schemas. Autoscaling is refused where it would only add idle pods."""
from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import REPO
from tests.unit.test_helm_chart import CHART, _render, helm, kubernetes_validate

jsonschema = pytest.importorskip("jsonschema")
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
CRDS = {}
for path in (REPO / "tests" / "fixtures" / "crds").glob("*.json"):
    crd = json.loads(path.read_text())
    CRDS[(f"{crd['group']}/{crd['version']}", crd["kind"])] = crd["schema"]


def _validate(doc: dict) -> None:
    schema = CRDS.get((doc["apiVersion"], doc["kind"]))
    if schema is not None:
        jsonschema.validate(doc, schema)
    else:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_renders_and_validates(example):
    values = yaml.safe_load(example.read_text())
    docs = _render(values)
    for doc in docs:
        _validate(doc)
    for cm in (d for d in docs if d["kind"] == "ConfigMap"):
        text = json.dumps(cm["data"]).lower()
        assert "password" not in text and "secret" not in text.replace("existingsecret", ""), cm["metadata"]["name"]
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert ("nvidia.com/gpu" in c["resources"].get("limits", {})) == bool(values.get("gpu", {}).get("enabled"))
    keda = values.get("autoscaling", {}).get("keda", {})
    scaled = [d for d in docs if d["kind"] == "ScaledObject"]
    assert bool(scaled) == bool(keda.get("enabled"))
    if scaled:
        assert scaled[0]["spec"]["maxReplicaCount"] <= keda["partitions"] and "replicas" not in pod


def test_examples_cover_the_streams_we_deploy_beside():
    assert {p.stem for p in EXAMPLES} >= {"embedded-dev", "ztf-public", "rubin", "gpu"}


def test_rubin_scales_on_lag_with_the_brokers_own_credentials():
    docs = _render(yaml.safe_load((CHART / "examples" / "rubin.yaml").read_text()))
    so = next(d for d in docs if d["kind"] == "ScaledObject")
    trigger = so["spec"]["triggers"][0]
    assert trigger["type"] == "kafka" and trigger["metadata"]["sasl"] == "scram_sha512"
    assert trigger["metadata"]["tls"] == "enable" and trigger["metadata"]["consumerGroup"] == "my-broker-alert-broker"
    auth = next(d for d in docs if d["kind"] == "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "password", "name": "rubin-credentials", "key": "sasl-password"}]
    env = {e["name"]: e for e in next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ALERT_BROKER__KAFKA__SASL_USERNAME"]["value"] == "my-broker"


@pytest.mark.parametrize("autoscaling, message", [
    ({"keda": {"enabled": True, "partitions": 4, "maxReplicas": 8}}, "exceeds the input partitions"),
    ({"keda": {"enabled": True, "maxReplicas": 2}}, "partitions"),
    ({"keda": {"enabled": True, "partitions": 4}, "hpa": {"enabled": True}}, "not both"),
], ids=["more-pods-than-partitions", "partitions-unknown", "keda-and-hpa"])
def test_autoscaling_refused_where_it_cannot_help(autoscaling, message):
    with pytest.raises(helm.HelmError, match=message):
        _render({"autoscaling": autoscaling})


def test_notes_tell_how_to_subscribe_and_warn_of_a_missing_secret():
    values = yaml.safe_load((CHART / "examples" / "rubin.yaml").read_text())
    out = helm.Chart.load(str(CHART)).render(values, name="ab", namespace="astro")
    notes = next(text for path, text in out.items() if path.endswith("NOTES.txt"))
    assert "rubin.reliable  <-  quality.score >= 1" in notes
    assert "alert-broker tail --bootstrap usdf-alert-stream-dev.lsst.cloud:9094 --topic rubin.reliable" in notes
    # Rendering without a cluster, the Secret is never found: the warning shows.
    assert "Secret rubin-credentials was not found in namespace astro" in notes
