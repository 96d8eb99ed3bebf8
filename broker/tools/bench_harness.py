"""The pieces ``bench e2e`` runs its rows with: the real alerts it loops (read once), a backlog
written before a pipeline starts, load offered into a running one by a producer that shares the
cores, and ``alert-broker run`` in a subprocess with the measurements of its closing log line."""
from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import threading
import time
import uuid
from functools import lru_cache

import fastavro

from broker.codec import Decoder, encode_confluent, encode_container
from broker.kafka_io import ensure_topics
from broker.schema_store import SchemaResolver
from broker.settings import KafkaSettings
from broker.tools.bench_ceiling import REPO, child_env
from broker.tools.bench_cpu import CpuWatch
from broker.tools.replay import replay, split_payloads

SHARED = REPO.parent / "shared" / "data"
SAMPLES = REPO / "tests" / "fixtures" / "alerts"
SOURCES = {"ztf": [SHARED / "ztf" / "alerts", SHARED / "ztf" / "fink-enriched"], "lsst": [SHARED / "lsst" / "alerts"]}


def survey_paths(survey: str) -> list[str]:
    found = [str(p) for p in SOURCES[survey] if p.exists()]
    return found or [str(SAMPLES / survey)]


@lru_cache(maxsize=None)
def payloads(paths: tuple[str, ...]) -> list[bytes]:
    """The single-alert messages of ``paths``, read and split once: reading the ZTF files took
    ~1 s, which a burst's time used to include."""
    return split_payloads(list(paths), Decoder(SchemaResolver()))


def as_one_visit(values: list[bytes], visit: int) -> list[bytes]:
    """LSST alerts re-encoded, each in its own framing (Confluent or container), as detections of
    one visit: a Rubin visit's ~10,000 alerts share its id, where the bundled samples come from
    11 visits. Exposure runs (broker/exposure_runs.py) then hold each partition's share of the
    visit as one run."""
    decoder = Decoder(SchemaResolver())
    out = []
    for value in values:
        msg = decoder.decode(value)
        record = dict(msg.records[0])
        source = dict(record["diaSource"])
        for key in ("visit", "ccdVisitId"):  # the field by schema version, as the adapter reads it
            if key in source:
                source[key] = visit
        record["diaSource"] = source
        if msg.framing == "confluent":
            out.append(encode_confluent(int.from_bytes(value[1:5], "big"), msg.schema, record))
        else:  # a container file: some of the samples are framed so
            body = io.BytesIO()
            fastavro.schemaless_writer(body, msg.schema, record)
            out.append(encode_container(msg.schema_text, [body.getvalue()]))
    return out


def loops_for(paths: list[str], n: int) -> int:
    """Replay loops over ``paths`` that send at least ``n`` single-alert messages."""
    return max(1, math.ceil(n / max(1, len(payloads(tuple(paths))))))


def preload(bootstrap: str, topic: str, paths: list[str], n: int, partitions: int = 2) -> int:
    ensure_topics(KafkaSettings(bootstrap=bootstrap), [topic], partitions=partitions)
    return replay(paths, bootstrap, topic, Decoder(SchemaResolver()), loop=loops_for(paths, n), progress=False,
                  payloads=payloads(tuple(paths)))


def load_producer(bootstrap: str):
    """The load's producer shares the cores with the pipeline: idempotence off, 50 ms batches
    (idempotent, 5 ms: 14.9 CPU-s per 49.5k ZTF alerts at 1,650/s, not 4.1). The linger counts
    in the latency: timestamps are taken at produce."""
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False,
                     "linger.ms": 50, "batch.size": 8_000_000, "message.max.bytes": 20_000_000,
                     "log.connection.close": False})


def offer_load(bootstrap: str, paths: list[str], topic: str, n: int, rate: float | None = None,
               values: list[bytes] | None = None) -> int:
    """At least ``n`` alerts looped from ``paths`` (or ``values``, made from them) into a running
    pipeline's ``topic`` by the load generator's producer, at ``rate`` per second (None: as fast
    as it can); how many were sent."""
    return replay(paths, bootstrap, topic, Decoder(SchemaResolver()), rate=rate, loop=loops_for(paths, n),
                  progress=False, producer=load_producer(bootstrap), payloads=values or payloads(tuple(paths)))


def drop_topics(bootstrap: str, topic: str) -> None:
    """Delete an input topic and its pipelines' outputs once measured: the embedded broker
    keeps every message in memory (a scale-1 run once grew it past 22 GB and the kernel
    killed it during the latency rows)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics([topic, f"{topic}.ann", f"{topic}.dlq"], operation_timeout=30).values():
        try:
            future.result(30)
        except Exception:  # a topic no run wrote to: nothing to free
            pass


class PipelineRun:
    """``alert-broker run`` in a subprocess; its closing log line carries the measurements, and
    ``cpu`` the CPU it and its decode workers spend (``broker_cpu``: the embedded broker's)."""

    def __init__(self, bootstrap: str, topic: str, group: str, env: dict | None = None, idle_s: float = 6.0,
                 broker_cpu: CpuWatch | None = None):
        self.topic, self.group, self.annotations = topic, group, f"{topic}.ann"
        cmd = [sys.executable, "-m", "broker.tools.cli", "run", "--bootstrap", bootstrap, "--input-topic", topic,
               "--group", group, "--annotations-topic", self.annotations, "--dlq-topic", f"{topic}.dlq",
               "--exit-when-idle", str(idle_s)]
        self.log: list[str] = []
        self.assigned = threading.Event()
        self.proc = subprocess.Popen(cmd, env=child_env(env),
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.cpu, self.broker_cpu = CpuWatch(self.proc.pid).start(), broker_cpu
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.log.append(line)
            if '"partitions assigned"' in line:
                self.assigned.set()

    def finish(self, timeout_s: float = 1800) -> dict:
        rc = self.proc.wait(timeout_s)
        self.reader.join(5)
        self.cpu.stop()
        stopped = [json.loads(x) for x in self.log if '"stopped"' in x]
        if rc != 0 or not stopped:
            raise RuntimeError(f"pipeline exited {rc}: {''.join(self.log[-5:])}")
        s = stopped[-1]
        busy = (s["last_commit_at"] - s["first_message_at"]) if s.get("last_commit_at") else float("nan")
        s["busy_seconds"] = busy
        s["alerts_per_s"] = (s["annotated"] + s["dead_lettered"]) / busy if busy else 0.0
        # The same without the time spent waiting, input drained, for the last exposure runs
        # to go quiet (batch.exposure_quiet_s): a fixed delay at a stream's end, not a rate.
        worked = busy - s["holding_seconds"]
        s["sustained_alerts_per_s"] = (s["annotated"] + s["dead_lettered"]) / worked if worked > 0 else 0.0
        # CPU from the first message to the last commit: start-up (imports, models) is not in it
        s["cpu_s"] = self.cpu.between(s["first_message_at"], s.get("last_commit_at"))
        if self.broker_cpu is not None:
            s["broker_cpu_s"] = self.broker_cpu.between(s["first_message_at"], s.get("last_commit_at"))
        return s


def joined_pipeline(bootstrap: str, tag: str, env: dict | None = None, idle_s: float = 6.0) -> PipelineRun:
    """A pipeline on a fresh two-partition topic, once the group has given it the partitions;
    it stops once its input has been idle for ``idle_s``."""
    topic = f"bench.{tag}.{uuid.uuid4().hex[:6]}"
    ensure_topics(KafkaSettings(bootstrap=bootstrap), [topic], partitions=2)
    run = PipelineRun(bootstrap, topic, f"{topic}-g", env=env, idle_s=idle_s)
    if not run.assigned.wait(120):
        raise RuntimeError("pipeline never joined: " + "".join(run.log[-5:]))
    return run


def wait_committed(bootstrap: str, run: PipelineRun, count: int, timeout_s: float) -> bool:
    """Whether ``run``'s group committed the first ``count`` messages of its fresh input topic
    within ``timeout_s``: each scored (none held in an open exposure run) and its outputs
    acknowledged. Counted from the committed offsets, which start at 0 on a fresh topic: the
    embedded broker's high watermark can lag (1 for a partition holding 59, 2026-12-08)."""
    from confluent_kafka import Consumer, TopicPartition

    # Not subscribed: it reads the group's offsets without joining the group.
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": run.group, "enable.auto.commit": False,
                       "log.connection.close": False})
    try:
        parts = [TopicPartition(run.topic, p) for p in reader.list_topics(run.topic, timeout=10).topics[run.topic].partitions]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sum(max(0, tp.offset) for tp in reader.committed(parts, timeout=10)) >= count:
                return True
            time.sleep(0.5)
        return False
    finally:
        reader.close()
