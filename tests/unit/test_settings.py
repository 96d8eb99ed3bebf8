from __future__ import annotations

from broker.settings import Settings


def test_yaml_then_env_then_flags(tmp_path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "kafka:\n  bootstrap: yaml:9092\n  security_protocol: SASL_SSL\n  sasl_mechanism: SCRAM-SHA-512\n"
        "  sasl_username: rubin\ninput_topics: [a, b]\nfilters: [quality]\n"
        "routes:\n  - {topic: good, condition: 'quality.score >= 1'}\nbatch: {max_alerts: 50}\n"
    )
    monkeypatch.setenv("ALERT_BROKER__KAFKA__SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("ALERT_BROKER__GROUP_ID", "from-env")
    s = Settings.load(cfg, annotations_topic="flag-topic")
    assert s.kafka.bootstrap == "yaml:9092" and s.group_id == "from-env"
    assert s.annotations_topic == "flag-topic" and s.batch.max_alerts == 50
    assert s.routes[0].topic == "good" and s.input_topics == ["a", "b"]
    conf = s.kafka.client_config()
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512" and conf["sasl.password"] == "s3cret"
    assert "s3cret" not in repr(s) and "s3cret" not in str(s.model_dump())
    # A flag for one nested field keeps the YAML's other nested fields.
    s2 = Settings.load(cfg, kafka={"bootstrap": "flag:1"})
    assert s2.kafka.bootstrap == "flag:1" and s2.kafka.sasl_username == "rubin"


def test_secret_from_mounted_file(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    s = Settings.load(None, kafka={"sasl_mechanism": "SCRAM-SHA-512", "sasl_password_file": str(secret)})
    assert s.kafka.client_config()["sasl.password"] == "from-file"


def test_comma_separated_filters():
    assert Settings.load(None, filters="quality, badamp").filters == ["quality", "badamp"]


def test_typos_in_nested_keys_and_missing_files_are_errors(tmp_path):
    import pytest
    from pydantic import ValidationError

    from broker.settings import SettingsError

    for text in ("kafka:\n  bootstrap_servers: x\n", "kafka:\n  sasl_pasword: x\n",
                 "limits: {max_history: 5}\n", "batch: {max_alerts: many}\n"):
        cfg = tmp_path / "c.yaml"
        cfg.write_text(text)
        with pytest.raises(ValidationError):
            Settings.load(cfg)
    with pytest.raises(SettingsError, match="does not exist"):
        Settings.load(tmp_path / "missing.yaml")


def test_invalid_settings_give_one_line_naming_the_setting(tmp_path):
    import subprocess
    import sys

    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka:\n  sasl_pasword: hunter2\n")
    for args in (["--config", str(cfg)], ["--config", str(tmp_path / "nope.yaml")],
                 ["--filters", "no-such-filter", "--bootstrap", "127.0.0.1:1"]):
        run = subprocess.run([sys.executable, "-m", "broker.tools.cli", "run", *args], capture_output=True, text=True,
                             timeout=60)
        lines = [x for x in run.stderr.splitlines() if x.startswith("alert-broker:")]
        assert run.returncode == 2 and len(lines) == 1, run.stderr[-2000:]
        assert "Traceback" not in run.stderr and "hunter2" not in run.stderr
    assert "kafka.sasl_pasword" in subprocess.run(
        [sys.executable, "-m", "broker.tools.cli", "run", "--config", str(cfg)], capture_output=True, text=True).stderr


def test_unreachable_bootstrap_is_one_line_not_a_flood(tmp_path):
    import os
    import subprocess
    import sys
    import time

    env = dict(os.environ, ALERT_BROKER__TIMEOUTS__STARTUP_S="3")
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "broker.tools.cli", "run", "--bootstrap", "127.0.0.1:1",
                          "--exit-when-idle", "1"], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 2 and time.monotonic() - t0 < 30
    assert [x for x in run.stderr.splitlines() if x.startswith("alert-broker:")] == [
        "alert-broker: kafka.bootstrap 127.0.0.1:1: no answer within 3s (Failed to get metadata: "
        "Local: Broker transport failure)"]
    assert len(run.stderr.splitlines()) < 15, run.stderr  # librdkafka's retries deduplicated


def test_compute_threads_default_to_the_cores_the_decode_workers_leave(monkeypatch):
    from broker import settings as settings_module

    monkeypatch.setattr(settings_module, "usable_cores", lambda: 8)
    assert Settings.load(None).resolved_compute_threads() == 7  # one decode worker by default
    assert Settings.load(None, batch={"decode_workers": 0}).resolved_compute_threads() == 8
    assert Settings.load(None, batch={"decode_workers": 12}).resolved_compute_threads() == 1
    assert Settings.load(None, compute_threads=3).resolved_compute_threads() == 3


def test_usable_cores_reads_a_cgroup_quota(monkeypatch, tmp_path):
    import os

    from broker import settings as settings_module

    assert 1 <= settings_module.usable_cores() <= (os.cpu_count() or 1)
    real_path = settings_module.Path
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(settings_module, "Path", lambda p: quota if p == "/sys/fs/cgroup/cpu.max" else real_path(p))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    quota.write_text("150000 100000\n")  # a Kubernetes limit of 1.5 CPUs
    assert settings_module.usable_cores() == 1
    quota.write_text("max 100000\n")
    assert settings_module.usable_cores() == 16


def test_fetch_wait_reaches_the_consumer_and_consumer_extra_still_wins(monkeypatch):
    from broker.kafka_io import consumer_config

    assert consumer_config(Settings.load(None).kafka, "g")["fetch.wait.max.ms"] == 50
    monkeypatch.setenv("ALERT_BROKER__KAFKA__FETCH_WAIT_MAX_MS", "200")
    assert consumer_config(Settings.load(None).kafka, "g")["fetch.wait.max.ms"] == 200
    s = Settings.load(None, kafka={"consumer_extra": {"fetch.wait.max.ms": 500}})
    assert consumer_config(s.kafka, "g")["fetch.wait.max.ms"] == 500
