"""Every real alert in, through a real Kafka-protocol broker, out exactly once."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from confluent_kafka import Producer

from broker.annotations import decode_annotation
from broker.codec import DecodeError, Decoder
from broker.kafka_io import ensure_topics
from broker.tools.replay import iter_payloads, replay
from broker.schema_store import SchemaResolver
from broker.settings import KafkaSettings
from tests.conftest import SHARED
from tests.integration.conftest import read_topic

pytestmark = pytest.mark.integration

INPUT, ANN, DLQ, GOOD = "it.alerts", "it.annotations", "it.dlq", "it.good"


def _expected_ids(paths: list[str]) -> Counter:
    decoder = Decoder(SchemaResolver())
    ids: Counter = Counter()
    for _, data in iter_payloads(paths):
        try:
            msg = decoder.decode(data)
        except DecodeError:
            continue
        for r in msg.records:
            if "candidate" in r:
                ids[r.get("candid") or r["candidate"]["candid"]] += 1
            else:
                ids[r.get("diaSourceId") or r.get("alertId") or r["diaSource"]["diaSourceId"]] += 1
    return ids


def test_replay_run_tail_every_alert_once(kafka, tmp_path):
    if not SHARED.exists():
        pytest.skip("../shared/data is not beside the checkout")
    good_dirs = [str(SHARED / "ztf" / "alerts" / d) for d in sorted(os.listdir(SHARED / "ztf" / "alerts")) if d != "corrupted"]
    good_dirs.append(str(SHARED / "lsst" / "alerts"))
    negative_dirs = [str(SHARED / "ztf" / "alerts" / "corrupted"), str(SHARED / "other" / "invalid_schema")]
    ensure_topics(KafkaSettings(bootstrap=kafka.bootstrap), [INPUT], partitions=3)

    decoder = Decoder(SchemaResolver())
    sent = replay(good_dirs + negative_dirs, kafka.bootstrap, INPUT, decoder, progress=False)
    good = open(next((SHARED / "ztf" / "alerts" / "ampel" / "ztf_public_20180601").glob("*.avro")), "rb").read()
    garbage = {
        "empty": [b"", None],
        "unknown_framing": [os.urandom(3000), b"not an alert"],
        "truncated": [good[:1500], good[:len(good) // 2]],
        "unknown_schema_id": [b"\x00\x00\x00\x27\x0f" + os.urandom(200)],
        "too_large": [b"Obj\x01" + os.urandom(700_000)],
    }
    p = Producer({"bootstrap.servers": kafka.bootstrap, "log.connection.close": False})
    for values in garbage.values():
        for v in values:
            p.produce(INPUT, value=v)
    p.flush(10)
    n_garbage = sum(len(v) for v in garbage.values())

    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"routes:\n  - {{topic: {GOOD}, condition: 'quality.score >= 1'}}\nlimits: {{max_message_bytes: 500000}}\n"
                   "kafka: {session_timeout_ms: 6000}\nbatch: {max_alerts: 300, max_wait_ms: 200}\n")
    run = subprocess.run(
        [sys.executable, "-m", "broker.tools.cli", "run", "--config", str(cfg), "--bootstrap", kafka.bootstrap,
         "--input-topic", INPUT, "--group", "it", "--annotations-topic", ANN, "--dlq-topic", DLQ,
         "--filters", "quality", "--exit-when-idle", "3"],
        capture_output=True, text=True, timeout=180,
    )
    assert run.returncode == 0, run.stderr[-3000:]

    annotations = [decode_annotation(m.value()) for m in read_topic(kafka.bootstrap, ANN)]
    dead = read_topic(kafka.bootstrap, DLQ)
    expected = _expected_ids(good_dirs)
    got = Counter(a["alert_id"] for a in annotations)
    assert got == expected  # every decodable alert exactly once, nothing extra
    assert sum(expected.values()) > 1000
    assert len(annotations) + len(dead) == sent + n_garbage  # count in = annotated + dead-lettered
    reasons = Counter(dict(m.headers())["alert-broker.dlq.reason"].decode() for m in dead)
    assert reasons["invalid_schema"] == 16 and reasons["corrupt"] + reasons["truncated"] >= 5 + 2
    for reason in ("empty", "unknown_framing", "unknown_schema_id", "too_large"):
        assert reasons[reason] == len(garbage[reason]), reasons
    for m in dead:
        h = dict(m.headers())
        assert h["alert-broker.dlq.topic"] == INPUT.encode() and int(h["alert-broker.dlq.offset"]) >= 0
    for a in annotations:
        q = a["filters"]["quality"]
        assert (q["score"] is None) == (q["reason"] is not None)
    routed = read_topic(kafka.bootstrap, GOOD)
    assert len(routed) == sum(a["filters"]["quality"]["score"] == 1.0 for a in annotations) > 0
    # Forwarded alerts are the original bytes: any ZTF/LSST reader decodes them.
    for m in routed[:20]:
        assert decoder.decode(m.value()).records
        assert json.loads(dict(m.headers())["alert-broker.annotation"])["filters"]["quality"]["score"] == 1.0

    # The tail command prints the dead letters with their reasons.
    tail = subprocess.run(
        [sys.executable, "-m", "broker.tools.cli", "tail", "--bootstrap", kafka.bootstrap, "--topic", DLQ,
         "--from-beginning", "--exit-when-idle", "2"],
        capture_output=True, text=True, timeout=120,
    )
    lines = [json.loads(line) for line in tail.stdout.splitlines()]
    assert len(lines) == len(dead) and all({"reason", "error", "topic", "partition", "offset"} <= set(x) for x in lines)
