"""badamp scores are a function of the input: one pipeline, two pipelines in one group, and a
replay with other batch cuts give every alert the same score (issue #12)."""
from __future__ import annotations

import io
import time
from pathlib import Path

import fastavro
import numpy as np
import pytest
from confluent_kafka import Producer

from broker.annotations import decode_annotation
from broker.kafka_io import ensure_topics
from broker.settings import KafkaSettings
from tests.faults.harness import PipelineProc
from tests.integration.conftest import read_topic

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "alerts" / "ztf"
PARTITIONS, EXPOSURES, PER_BLOCK = 3, 4, 30


def _base_alerts() -> list[tuple[dict, dict]]:
    """(writer schema, record) of the single-alert ZTF fixtures."""
    out = []
    for path in sorted(FIXTURES.rglob("*.avro")):
        with path.open("rb") as fh:
            reader = fastavro.reader(fh)
            records = list(reader)
            if len(records) == 1:
                out.append((reader.writer_schema, records[0]))
    return out


def _exposure_stream() -> dict[int, list[bytes]]:
    """Real ZTF alerts re-stamped into exposures of 90 alerts (30 per partition), some with a
    failing channel: a block of low real/bogus detections on channel 13."""
    base = _base_alerts()
    rng = np.random.default_rng(12)
    out: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    k = 0
    for e in range(EXPOSURES):
        for p in range(PARTITIONS):
            for j in range(PER_BLOCK):
                schema, record = base[k % len(base)]
                rec = dict(record, candid=10**15 + k, candidate=dict(record["candidate"]))
                cand = rec["candidate"]
                cand.update(candid=10**15 + k, pid=7 * 10**11 + e, rcid=int(rng.integers(0, 64)))
                if e % 2 == 0 and p == 0 and j < 12:
                    cand.update(rcid=13, rb=0.12, drb=0.03)
                buf = io.BytesIO()
                fastavro.writer(buf, schema, [rec])
                out[p].append(buf.getvalue())
                k += 1
    return out


def _scores(bootstrap: str, topic: str) -> dict[int, float | None]:
    out = {}
    for m in read_topic(bootstrap, topic):
        a = decode_annotation(m.value())
        out[a["alert_id"]] = a["filters"]["badamp"]["score"]
    return out


def _run(kafka, name: str, members: int, max_alerts: int, quiet_s: float = 3.0) -> dict[int, float | None]:
    """The same alerts produced into a fresh topic, scored by ``members`` pipelines in one group
    that are all holding partitions before the first alert arrives."""
    topic = f"det.{name}.in"
    ensure_topics(KafkaSettings(bootstrap=kafka.bootstrap), [topic], partitions=PARTITIONS)
    env = {"ALERT_BROKER__BATCH__MAX_ALERTS": str(max_alerts), "ALERT_BROKER__BATCH__EXPOSURE_QUIET_S": str(quiet_s)}
    procs = [PipelineProc(kafka.bootstrap, topic, f"det-{name}", f"det.{name}.ann", f"det.{name}.dlq",
                          filters="badamp", idle_s=15.0, env=env) for _ in range(members)]
    end = time.monotonic() + 120
    while time.monotonic() < end and not all(p.assigned_for() > 2.0 for p in procs):
        time.sleep(0.2)
    assert all(p.assigned_for() > 0 for p in procs), [p.log_tail(800) for p in procs]
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "log.connection.close": False})
    for p, values in STREAM.items():
        for v in values:
            producer.produce(topic, value=v, partition=p)
    assert producer.flush(30) == 0
    for p in procs:
        assert p.wait(240) == 0, p.log_tail()
    if members > 1:  # every member scored a share of the stream
        assert all(p.count('"msg": "batch committed"') for p in procs), [p.log_tail(800) for p in procs]
    return _scores(kafka.bootstrap, f"det.{name}.ann")


STREAM = _exposure_stream()


def test_badamp_scores_do_not_depend_on_deployment(kafka):
    n = PARTITIONS * EXPOSURES * PER_BLOCK
    one = _run(kafka, "one", 1, max_alerts=40)
    two = _run(kafka, "two", 2, max_alerts=40)
    replay = _run(kafka, "replay", 1, max_alerts=7)
    assert len(one) == n and all(s is not None for s in one.values())
    assert one == two == replay
    assert max(one.values()) > 0.9  # the failing channel is found, so the context matters

    # Without whole runs the same alerts, cut into other batches, score differently.
    cut = _run(kafka, "cut", 1, max_alerts=7, quiet_s=0)
    assert len(cut) == n and sum(cut[a] != one[a] for a in one) > 10
