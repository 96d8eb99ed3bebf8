"""Operations against the embedded broker: metrics agree with the topics, SIGTERM loses
nothing, and a consumer group rebalancing mid-stream annotates every alert."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter

import pytest

from broker.annotations import decode_annotation
from broker.codec import Decoder
from broker.tools.embedded import free_port
from broker.kafka_io import ensure_topics
from broker.tools.replay import replay
from broker.schema_store import SchemaResolver
from broker.settings import KafkaSettings, Settings
from tests.conftest import FIXTURES, SHARED
from tests.integration.conftest import read_topic

pytestmark = pytest.mark.integration


def _metric(text: str, name: str, labels: str = "") -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#") and labels in line:
            m = re.match(rf"{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
            if m:
                total += float(m.group(2))
    return total


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _run_cmd(bootstrap, topic, group, ann, dlq, *extra):
    return [sys.executable, "-m", "broker.tools.cli", "run", "--bootstrap", bootstrap, "--input-topic", topic,
            "--group", group, "--annotations-topic", ann, "--dlq-topic", dlq, "--filters", "quality", *extra]


ENV = dict(os.environ, ALERT_BROKER__KAFKA__SESSION_TIMEOUT_MS="6000",
           ALERT_BROKER__BATCH__MAX_ALERTS="40", ALERT_BROKER__BATCH__MAX_WAIT_MS="100")


def test_metrics_and_health_agree_with_the_topics(kafka):
    from broker.http import HealthServer
    from broker.pipeline import Pipeline

    topic, ann, dlq = "ops.m.in", "ops.m.ann", "ops.m.dlq"
    sent = replay([str(FIXTURES)], kafka.bootstrap, topic, Decoder(SchemaResolver()), progress=False)
    settings = Settings.load(None, kafka={"bootstrap": kafka.bootstrap, "session_timeout_ms": 6000},
                             input_topics=[topic], group_id="ops-m", annotations_topic=ann, dlq_topic=dlq,
                             filters=["quality"], exit_when_idle_s=3.0, batch={"max_alerts": 20, "max_wait_ms": 100})
    pipeline = Pipeline(settings)
    server = HealthServer(pipeline, free_port(), host="127.0.0.1").start()
    base = f"http://127.0.0.1:{server.port}"
    before = _get(base + "/metrics")[1]
    assert _get(base + "/readyz")[0] == 503  # no partitions yet
    thread = threading.Thread(target=pipeline.run)
    thread.start()
    seen_ready = during = None
    while thread.is_alive():
        code, _ = _get(base + "/readyz")
        if code == 200:
            seen_ready = True
            during = _get(base + "/metrics")[1]
        time.sleep(0.2)
    thread.join()
    after = _get(base + "/metrics")[1]
    assert _get(base + "/healthz")[0] == 200 and seen_ready and during
    server.stop()

    def delta(name, labels=""):
        return _metric(after, name, labels) - _metric(before, name, labels)

    annotations = read_topic(kafka.bootstrap, ann)
    dead = read_topic(kafka.bootstrap, dlq)
    assert delta("alert_broker_messages_consumed_total", f'topic="{topic}"') == sent
    assert delta("alert_broker_alerts_annotated_total") == len(annotations) == pipeline.summary.annotated
    assert delta("alert_broker_dead_letters_total") == len(dead) == 4
    assert delta("alert_broker_dead_letters_total", 'reason="invalid_schema"') == 2
    assert delta("alert_broker_filter_scored_total", 'filter="quality"') + \
        delta("alert_broker_filter_null_total", 'filter="quality"') == len(annotations)
    assert delta("alert_broker_batches_total") == pipeline.summary.batches > 1
    assert delta("alert_broker_stage_seconds_count", 'stage="filter:quality"') >= 1
    assert _metric(after, "alert_broker_committed_offset", f'topic="{topic}"') > 0
    assert re.search(r'alert_broker_filter_info\{[^}]*filter="quality"', after)


def _ids(bootstrap, topic) -> Counter:
    return Counter(decode_annotation(m.value())["alert_id"] for m in read_topic(bootstrap, topic))


def _input(kafka, topic: str, partitions: int, rate: float | None = None) -> int:
    if not SHARED.exists():
        pytest.skip("../shared/data is not beside the checkout")
    ensure_topics(KafkaSettings(bootstrap=kafka.bootstrap), [topic], partitions=partitions)
    return replay([str(SHARED / "ztf" / "alerts" / "fink-alert-simulator"), str(SHARED / "lsst" / "alerts")],
                  kafka.bootstrap, topic, Decoder(SchemaResolver()), rate=rate, progress=False)


def test_sigterm_mid_stream_commits_and_loses_nothing(kafka):
    topic, ann, dlq = "ops.s.in", "ops.s.ann", "ops.s.dlq"
    sent = _input(kafka, topic, 2)
    cmd = _run_cmd(kafka.bootstrap, topic, "ops-s", ann, dlq, "--exit-when-idle", "3")
    first = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=ENV)
    batches = 0
    for line in first.stderr:
        batches += '"batch committed"' in line
        if batches == 3:
            first.send_signal(signal.SIGTERM)
            break
    t0 = time.monotonic()
    rest = first.communicate(timeout=60)[1]
    assert first.returncode == 0 and time.monotonic() - t0 < 30, rest[-2000:]
    assert '"stop requested"' in rest
    after_first = _ids(kafka.bootstrap, ann)
    assert 0 < sum(after_first.values()) < sent  # stopped mid-stream

    second = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120)
    assert second.returncode == 0, second.stderr[-2000:]
    ids = _ids(kafka.bootstrap, ann)
    assert len(ids) == sent  # every alert annotated (all inputs here decode)
    # Offsets were committed at the stop: the restart did not start over.
    duplicates = sum(ids.values()) - len(ids)
    assert duplicates <= 40, duplicates


def test_rebalance_with_a_third_consumer_mid_stream(kafka):
    topic, ann, dlq = "ops.r.in", "ops.r.ann", "ops.r.dlq"
    ensure_topics(KafkaSettings(bootstrap=kafka.bootstrap), [topic], partitions=6)
    cmd = _run_cmd(kafka.bootstrap, topic, "ops-r", ann, dlq, "--exit-when-idle", "8")
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=ENV) for _ in range(2)]
    outputs: list[list[str]] = [[], []]
    drained = [threading.Thread(target=lambda p=p, o=o: o.append(p.stderr.read()), daemon=True)
               for p, o in zip(procs, outputs)]
    for t in drained:
        t.start()
    time.sleep(6)  # let the two join before the stream starts
    # About five seconds of stream: the third consumer joins while it flows.
    feeder = threading.Thread(target=lambda: sent.append(_input(kafka, topic, 6, rate=130)))
    sent: list[int] = []
    feeder.start()
    time.sleep(1.0)
    third = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=ENV)
    procs.append(third)
    feeder.join()
    logs = third.communicate(timeout=180)[1]
    for p, t in zip(procs[:2], drained):
        p.wait(timeout=180)
        t.join(10)
    for p, out in zip(procs, outputs + [[logs]]):
        assert p.returncode == 0, "".join(out)[-3000:]
    assigned = [line for line in logs.splitlines() if '"partitions assigned"' in line]
    assert any(topic in line for line in assigned), assigned  # the newcomer got a share
    ids = _ids(kafka.bootstrap, ann)
    assert len(ids) == sent[0]  # every alert annotated at least once across the rebalance


def test_an_output_kafka_refuses_becomes_a_dead_letter(kafka, tmp_path):
    """Forwarded alerts larger than the producer accepts (message.max.bytes 50 kB here) are
    refused for themselves: each becomes a dead letter of its input, the batch commits, and
    the process does not exit into a restart loop."""
    topic, ann, dlq, good = "ops.big.in", "ops.big.ann", "ops.big.dlq", "ops.big.good"
    files = sorted((FIXTURES / "ztf" / "fink-broker_local").glob("*.avro"))
    sizes = [f.stat().st_size for f in files]
    assert min(sizes) > 50_000
    ensure_topics(KafkaSettings(bootstrap=kafka.bootstrap), [topic])
    replay([str(f) for f in files], kafka.bootstrap, topic, Decoder(SchemaResolver()), progress=False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"routes: [{{topic: {good}, condition: \"survey == 'ztf'\"}}]\n"
                   "limits: {max_dead_letter_bytes: 10000}\nkafka: {producer_extra: {message.max.bytes: 50000}}\n")
    run = subprocess.run(_run_cmd(kafka.bootstrap, topic, "ops-big", ann, dlq, "--exit-when-idle", "3",
                                  "--config", str(cfg)), capture_output=True, text=True, env=ENV, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(read_topic(kafka.bootstrap, ann)) == len(files)
    dead = read_topic(kafka.bootstrap, dlq)
    assert len(dead) == len(files) and not read_topic(kafka.bootstrap, good, idle_s=1)
    for m in dead:
        h = dict(m.headers())
        assert h["alert-broker.dlq.reason"] == b"output_refused" and b"ops.big.good" in h["alert-broker.dlq.error"]
        assert len(m.value()) == 10000 and int(h["alert-broker.dlq.original_bytes"]) in sizes


def test_idle_is_not_caught_up_until_the_backlog_is_read(kafka):
    """``--exit-when-idle`` asks lag.unread before stopping: a partition whose fetch has not
    started counts from the committed (here: earliest) offset, and nothing is left once read."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    from broker.lag import unread

    topic = "ops.unread"
    ensure_topics(KafkaSettings(bootstrap=kafka.bootstrap), [topic], partitions=2)
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    for i in range(3):  # one record batch each: Tansu's high watermark is the last batch's base offset + 1
        producer.produce(topic, value=b"x%d" % i, partition=0)
        assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "ops.unread-group",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        assigned = {(topic, 0), (topic, 1)}
        assert unread(consumer, assigned) == {(topic, 0): 3}
        got, deadline = [], time.monotonic() + 30
        while len(got) < 3 and time.monotonic() < deadline:
            got += [m for m in consumer.consume(10, 1.0) if m.error() is None]
        assert len(got) == 3
        assert unread(consumer, assigned) == {}
    finally:
        consumer.close()
