"""Fault suite, inputs: misbehaving filters, poison in the stream, a schema registry outage.
Every scenario ends with its ledger line."""
from __future__ import annotations

import json
import os
import random
import struct
import time
from collections import Counter

import numpy as np
import pytest
from confluent_kafka import Producer

from broker.tools.embedded import free_port
from broker.kafka_io import ensure_topics
from broker.tools.replay import iter_payloads
from broker.settings import KafkaSettings
from tests.conftest import FIXTURES
from tests.faults.faulty_filters import plugin_path, poisoned
from tests.faults.harness import PipelineProc, ledger, supervise
from tests.faults.poison import ANNOTATED, MAKERS, build, expected
from tests.faults.registry import LocalRegistry
from tests.faults.test_delivery_faults import alert_paths, feed, names

HEAVY = {"huge_20MB", "deflate_bomb", "history_25k", "history_100k"}  # at most 2 of each per run


def produce(bootstrap: str, topic: str, values: list[bytes], partitions: int = 2) -> None:
    ensure_topics(KafkaSettings(bootstrap=bootstrap), [topic], partitions=partitions)
    p = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 30_000_000, "linger.ms": 5,
                  "log.connection.close": False})
    errors = []
    for i, v in enumerate(values):
        while True:
            try:
                p.produce(topic, value=v, partition=i % partitions, on_delivery=lambda e, _m: e and errors.append(e))
                break
            except BufferError:
                p.poll(0.2)
        p.poll(0)
    p.flush(120)
    assert not errors, errors[:3]


def test_misbehaving_filters_cost_only_their_alerts(kafka, tmp_path):
    topic, ann, dlq, group = names("f.filters")
    feed(kafka.bootstrap, topic, 2)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("filter_options: {hangs: {hang_s: 2}}\ntimeouts: {filter_s: 1}\n")
    env = {"PYTHONPATH": f"{plugin_path(tmp_path / 'plugins')}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    make = lambda: PipelineProc(kafka.bootstrap, topic, group, ann, dlq, config=cfg, env=env,  # noqa: E731
                                filters="quality,raises,hangs,badvalues,wronglength")
    restarts, _ = supervise(make)
    line, annotations, _ = ledger("misbehaving filters", kafka.bootstrap, topic, ann, dlq, restarts)
    assert line.lost == 0 and restarts == 0
    bad = poisoned([a["alert_id"] for a in annotations])
    assert bad.any() and (~bad).any()
    for a, is_bad in zip(annotations, bad):
        for name, out in a["filters"].items():
            assert (out["score"] is None) == (out["reason"] is not None)
            assert out["score"] is None or (np.isfinite(out["score"]) and 0 <= out["score"] <= 1)
        f = a["filters"]
        if is_bad:
            assert f["raises"]["reason"] == "error:RuntimeError"
            assert f["badvalues"]["reason"] == "invalid_output" and f["wronglength"]["reason"] == "invalid_output"
            assert f["hangs"]["reason"] == "timeout"
        else:
            for name in ("raises", "badvalues", "wronglength"):
                assert f[name]["score"] == pytest.approx((a["alert_id"] % 100) / 100), (name, f[name])
        assert f["hangs"]["score"] is not None or f["hangs"]["reason"] == "timeout"


def _poison_stream(good: list[bytes], share: float, seed: int) -> tuple[list[bytes], dict[int, str]]:
    """``good`` with poison mixed in at ``share`` of the stream; the poison kind by index."""
    rng = random.Random(seed)
    n_poison = max(len(MAKERS), round(len(good) * share / (1 - share)))
    kinds, heavy = [], Counter()
    for k in (sorted(MAKERS) * (n_poison // len(MAKERS) + 1)):
        if k in HEAVY and heavy[k] >= 2:
            k = "truncated"
        heavy[k] += k in HEAVY
        kinds.append(k)
    kinds = kinds[:n_poison]
    stream: list[bytes] = list(good)
    where: dict[int, str] = {}
    for k in kinds:
        stream.insert(rng.randrange(len(stream) + 1), b"POISON:" + k.encode())
    for i, v in enumerate(stream):
        if v.startswith(b"POISON:"):
            kind = v[7:].decode()
            where[i] = kind
            stream[i] = build(kind)
    return stream, where


def _good_rate(p: PipelineProc, good: int) -> float:
    """Good alerts per second of processing: from the group's assignment to the last commit."""
    start = p.events("partitions assigned")[-1]["ts"]
    return good / (p.events("batch committed")[-1]["ts"] - start)


@pytest.mark.parametrize("share", [0.01, 0.5])
def test_poison_in_the_stream(kafka, share):
    good = [v for _, v in iter_payloads(alert_paths())] * 4
    tag = f"f.poison{int(share * 100)}"
    rates = {}
    for label, (stream, where) in {"clean": (good, {}), "poisoned": _poison_stream(good, share, 11)}.items():
        topic, ann, dlq, group = names(f"{tag}.{label}")
        produce(kafka.bootstrap, topic, stream, partitions=1)
        # Default batch size: with the suite's small batches, fixed per-batch costs (commit,
        # flush) would be what poison doubles, not the per-message work this measures.
        env = {"ALERT_BROKER__BATCH__MAX_ALERTS": "500"}
        restarts, procs = supervise(lambda: PipelineProc(kafka.bootstrap, topic, group, ann, dlq, env=env))
        assert restarts == 0  # no restart loop: the first process went through the whole stream
        rates[label] = _good_rate(procs[0], len(good))
        line, annotations, dead = ledger(f"poison {share:.0%} ({label}, {len(where)} poison)",
                                         kafka.bootstrap, topic, ann, dlq, restarts)
        assert line.lost == 0 and line.duplicates == 0
        reasons = {int(dict(m.headers())["alert-broker.dlq.offset"]): dict(m.headers())["alert-broker.dlq.reason"].decode()
                   for m in dead}
        annotated_offsets = {a["source_offset"] for a in annotations}
        for offset, kind in where.items():
            if expected(kind) == {ANNOTATED}:
                assert offset in annotated_offsets, kind
            else:
                assert reasons.get(offset) in expected(kind), (kind, reasons.get(offset))
        for a in annotations:
            for out in a["filters"].values():
                assert (out["score"] is None) == (out["reason"] is not None)
    # A figure for the README, not an assertion: tests do not time anything (noisy machines).
    print(f"throughput {share:.0%} poison: good alerts/s clean {rates['clean']:.0f}, poisoned "
          f"{rates['poisoned']:.0f}, ratio {rates['clean'] / rates['poisoned']:.2f}x")


def test_registry_down_for_30s_loses_and_dead_letters_nothing(kafka, tmp_path):
    """LSST alerts framed with a schema id only the registry knows (7401 = v7.4); the registry
    is down for the first 30 s. Secrets planted in the environment and a secret file must not
    appear in logs, metrics, annotations or dead letters."""
    from broker.schema_store import SCHEMAS_DIR, load_schema_dir

    topic, ann, dlq, group = names("f.registry")
    schema = load_schema_dir(SCHEMAS_DIR / "lsst" / "7" / "4")
    port = free_port()
    registry = LocalRegistry(port, {7401: json.dumps(schema)})
    values = []
    for path in sorted((FIXTURES / "lsst" / "alerce_confluent_v7.4").glob("*.avro")):
        body = path.read_bytes()[5:]
        values.append(b"\x00" + struct.pack(">I", 7401) + body)
    values = values * 10
    produce(kafka.bootstrap, topic, values)
    secret_env, secret_file = "kafka-s3cret-planted", "registry-s3cret-planted"
    (tmp_path / "pw").write_text(secret_file + "\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"schema_registry: {{url: '{registry.url}', username: broker, password_file: '{tmp_path / 'pw'}'}}\n"
                   "timeouts: {backoff_max_s: 4}\n")
    env = {"ALERT_BROKER__KAFKA__SASL_PASSWORD": secret_env}
    p = PipelineProc(kafka.bootstrap, topic, group, ann, dlq, config=cfg, env=env, metrics=True, idle_s=5)
    assert p.wait_for('"transient fault; pausing"', 1, 60), p.log_tail()
    outage_start = time.monotonic()
    codes = set()
    while time.monotonic() - outage_start < 30:
        codes.add(p.http("/readyz"))
        time.sleep(0.5)
    import urllib.request
    metrics_text = urllib.request.urlopen(f"http://127.0.0.1:{p.metrics_port}/metrics").read().decode()
    registry.start()
    try:
        assert p.wait(120) == 0, p.log_tail()
    finally:
        registry.stop()
    assert 503 in codes and 200 not in codes, codes
    line, annotations, dead = ledger("schema registry down 30s", kafka.bootstrap, topic, ann, dlq)
    assert line.lost == 0 and line.dead_lettered == 0 and line.annotated == len(values)
    assert all(a["survey"] == "lsst" and a["schema_version"] == "7.4" for a in annotations)
    assert any(h.startswith("Basic ") for h in registry.auth_headers)  # the secret was used ...
    for text in ("".join(p.lines), metrics_text,
                 repr([(m.value(), m.headers()) for m in dead]), json.dumps(annotations)):
        assert secret_env not in text and secret_file not in text  # ... and shown nowhere
