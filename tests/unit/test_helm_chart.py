"""The Helm chart, checked with the real Helm engine and the Kubernetes schemas."""
from __future__ import annotations

import json
import re

import pytest
import yaml

from broker.settings import Settings
from broker.shutdown import BACKSTOP_GRACE_S
from tests.conftest import REPO

helm = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

CHART = REPO / "helm" / "alert-broker"
RUBIN_GPU = {
    "replicaCount": 4,
    "config": {
        "kafka": {"bootstrap": "rubin-kafka:9094", "security_protocol": "SASL_SSL",
                  "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "broker"},
        "schema_registry": {"url": "https://registry.example/"},
        "input_topics": ["alerts-simulated"],
    },
    "secrets": {"existingSecret": "rubin-credentials", "saslPasswordKey": "password"},
    "gpu": {"enabled": True, "nodeSelector": {"nvidia.com/gpu.present": "true"}},
}


def _render(values: dict) -> list[dict]:
    chart = helm.Chart.load(str(CHART))
    out = chart.render(values, name="ab", namespace="astro")
    docs = []
    for path, text in out.items():
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def test_lint_is_clean():
    report = helm.lint(str(CHART), strict=True)
    assert report["errors"] == [] and not [m for m in report["messages"] if m["severity"] >= 2], report


@pytest.mark.parametrize("values", [{}, RUBIN_GPU], ids=["defaults", "rubin-gpu"])
def test_manifests_validate_against_kubernetes(values):
    docs = _render(values)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "ConfigMap", "Service", "PodDisruptionBudget"} <= kinds
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_config_map_is_a_valid_settings_file_without_secrets(tmp_path):
    docs = _render(RUBIN_GPU)
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d["data"])
    assert "password" not in cm["data"]["config.yaml"].lower()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(cm["data"]["config.yaml"])
    s = Settings.load(cfg)
    assert s.kafka.sasl_mechanism == "SCRAM-SHA-512" and s.device == "cuda" and s.metrics_port == 9108
    dep = next(d for d in docs if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["ALERT_BROKER__KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "rubin-credentials"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1 and pod["nodeSelector"]
    # Kubernetes kills after the GIL-free backstop (broker/shutdown.py) had its chance to log the stacks.
    assert pod["terminationGracePeriodSeconds"] > s.shutdown_deadline_s + BACKSTOP_GRACE_S
    assert {p["httpGet"]["path"] for p in (c["livenessProbe"], c["readinessProbe"])} == {"/healthz", "/readyz"}


@pytest.mark.parametrize("config", [
    {"kafka": {"bootstrap": "k:9092", "sasl_password": "oops"}},
    {"kafka": {"bootstrap": "k:9092", "consumer_extra": {"sasl.password": "oops"}}},
    {"kafka": {"bootstrap": "k:9092", "producer_extra": {"ssl.key.password": "oops"}}},
    {"kafka": {"bootstrap": "k:9092"}, "schema_registry": {"url": "https://user:oops@registry/"}},
    {"kafka": {"bootstrap": "k:9092"}, "schema_registry": {"password": "oops"}},
], ids=["sasl_password", "consumer_extra", "producer_extra", "registry_url", "registry_password"])
def test_values_schema_refuses_a_secret_in_the_config_map(config):
    with pytest.raises(helm.HelmError):
        _render({"config": {**config, "input_topics": ["a"]}})
    # ... and the same settings without the secret render.
    _render({"config": {"kafka": {"bootstrap": "k:9092", "consumer_extra": {"fetch.wait.max.ms": 100}},
                        "schema_registry": {"url": "https://registry/"}, "input_topics": ["a"]}})


def test_dashboard_uses_only_metrics_we_export():
    from broker import metrics

    dash = json.loads((CHART / "dashboards" / "alert-broker.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    suffixes = ("", "_total", "_bucket", "_count", "_sum", "_info")
    exported = {m.name + s for m in metrics.REGISTRY.collect() for s in suffixes}
    used = set(re.findall(r"alert_broker_[a-z_]+", exprs))
    assert used and used <= exported, used - exported
    dm = next(d for d in _render({}) if d["metadata"]["name"].endswith("-dashboard"))
    assert json.loads(dm["data"]["alert-broker.json"])["uid"] == "alert-broker"


def test_ca_bundle_mount_extra_env_and_service_monitor_labels():
    values = {**RUBIN_GPU,
              "config": {**RUBIN_GPU["config"], "kafka": {**RUBIN_GPU["config"]["kafka"],
                                                          "ssl_ca_location": "/etc/kafka-ca/ca.crt"}},
              "extraVolumes": [{"name": "kafka-ca", "secret": {"secretName": "kafka-ca"}}],
              "extraVolumeMounts": [{"name": "kafka-ca", "mountPath": "/etc/kafka-ca", "readOnly": True}],
              "extraEnv": [{"name": "ALERT_BROKER__LOG_LEVEL", "value": "DEBUG"}],
              "metrics": {"port": 9108, "serviceMonitor": {"enabled": True, "interval": "30s",
                                                           "labels": {"release": "kube-prometheus-stack"}}}}
    docs = _render(values)
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert {"name": "kafka-ca", "secret": {"secretName": "kafka-ca"}} in pod["volumes"]
    assert any(m["mountPath"] == "/etc/kafka-ca" for m in c["volumeMounts"])
    assert {"name": "ALERT_BROKER__LOG_LEVEL", "value": "DEBUG"} in c["env"]
    sm = next(d for d in docs if d["kind"] == "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    for doc in docs:
        if doc["kind"] != "ServiceMonitor":  # a CRD: not in the Kubernetes schemas
            kubernetes_validate.validate(doc, "1.30.0", strict=True)
    with pytest.raises(helm.HelmError):  # a password as a plain env value is refused
        _render({**values, "extraEnv": [{"name": "ALERT_BROKER__KAFKA__SASL_PASSWORD", "value": "oops"}]})


def test_pod_runs_non_root_on_a_read_only_root_filesystem_with_a_writable_tmp():
    deployment = next(d for d in _render({}) if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert "emptyDir" in tmp and {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_decode_workers_get_an_in_memory_dev_shm_of_the_configured_size():
    deployment = next(d for d in _render({"sharedMemorySize": "512Mi"}) if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    shm = next(v for v in pod["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "512Mi"}
    assert {"name": "shm", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]
