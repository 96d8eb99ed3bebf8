"""``alert-broker bench e2e``: alerts per second from the input topic to acknowledged outputs.

Real alerts (``../shared/data``, else the bundled samples) are looped into the embedded broker
and read back by, in one run on one machine:

* **ceiling**: a consumer with the pipeline's settings that only consumes and decodes, with
  ``decode_workers`` 1, 0 (in its own process) and 2, as the pipeline below (the fastest counts),
  each in a fresh process as the pipeline is (``broker/tools/bench_ceiling.py``), after one
  unmeasured read of the topic;
* **pipeline**: ``alert-broker run`` as deployed, every installed filter, default settings
  (``batch.decode_workers`` = 1), and again with ``decode_workers`` 0 (decoding in its own
  process) and 2: the fastest is the pipeline figure, and the runs below use its setting;
* **naive**: the same process with one alert per batch (``batch.max_alerts=1``, exposure runs
  off, decoding in the process: nothing overlapped): every alert decoded and scored alone,
  then produced, flushed and committed; run before the pipelines and after them, the faster
  counts (the machine's speed drifts within a run);
* **latency** from the input's produce timestamp to its annotation's, at offered rates of
  256 alerts/s, 80% of the measured pipeline rate, and 80% of the **live capacity** (the rate
  annotations come out at while alerts are offered faster, the broker taking them in on the
  same cores); and a burst: how long until drained;
* **two pipelines** in one consumer group (two partitions), and peak RSS and per-stage time;
* **CPU** (``broker/tools/bench_cpu.py``) of the ceiling, the pipeline and the embedded broker
  in the same windows as the rates, and the cores busy while load is offered: on a machine the
  broker shares, a rate is bound by the cores as much as by the code.

Rates count from the first message consumed to the last batch committed (the group join is
reported apart). Ratios from one run are the figures to quote: the machines are noisy.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from functools import lru_cache
from pathlib import Path

import numpy as np

from broker.annotations import decode_annotation
from broker.avro_records import engine_in_words
from broker.codec import Decoder
from broker.kafka_io import ensure_topics
from broker.schema_store import SchemaResolver
from broker.settings import KafkaSettings, Settings
from broker.tools.bench_ceiling import REPO, ceiling, child_env, warm_topic
from broker.tools.bench_cpu import CpuWatch
from broker.tools.bench_report import markdown, summarise
from broker.tools.replay import iter_payloads, messages_for, replay
from broker.tools.tail import read_topic

SHARED = REPO.parent / "shared" / "data"
SAMPLES = REPO / "tests" / "fixtures" / "alerts"
SOURCES = {"ztf": [SHARED / "ztf" / "alerts", SHARED / "ztf" / "fink-enriched"], "lsst": [SHARED / "lsst" / "alerts"]}
TARGETS = {"ztf": 50_000, "lsst": 20_000}
DECODE_WORKER_SETTINGS = (1, 0, 2)  # batch.decode_workers: the default, in process, two workers


def survey_paths(survey: str) -> list[str]:
    found = [str(p) for p in SOURCES[survey] if p.exists()]
    return found or [str(SAMPLES / survey)]


@lru_cache(maxsize=None)
def _decodable(paths: tuple[str, ...]) -> int:
    decoder = Decoder(SchemaResolver())
    return sum(len(messages_for(data, decoder)) for _, data in iter_payloads(list(paths)))


def loops_for(paths: list[str], n: int) -> int:
    """Replay loops over ``paths`` that send at least ``n`` single-alert messages."""
    return max(1, math.ceil(n / max(1, _decodable(tuple(paths)))))


def preload(bootstrap: str, topic: str, paths: list[str], n: int, partitions: int = 2) -> int:
    ensure_topics(KafkaSettings(bootstrap=bootstrap), [topic], partitions=partitions)
    return replay(paths, bootstrap, topic, Decoder(SchemaResolver()), loop=loops_for(paths, n), progress=False)


def load_producer(bootstrap: str):
    """The load's producer shares the cores with the pipeline: idempotence off, 50 ms batches
    (idempotent, 5 ms: 14.9 CPU-s per 49.5k ZTF alerts at 1,650/s, not 4.1). The linger counts
    in the latency: timestamps are taken at produce."""
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False,
                     "linger.ms": 50, "batch.size": 8_000_000, "message.max.bytes": 20_000_000,
                     "log.connection.close": False})


def offer_load(bootstrap: str, paths: list[str], topic: str, n: int, rate: float | None = None) -> int:
    """At least ``n`` alerts looped from ``paths`` into a running pipeline's ``topic`` by the load
    generator's producer, at ``rate`` per second (None: as fast as it can); how many were sent."""
    return replay(paths, bootstrap, topic, Decoder(SchemaResolver()), rate=rate, loop=loops_for(paths, n),
                  progress=False, producer=load_producer(bootstrap))


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
        self.topic, self.annotations = topic, f"{topic}.ann"
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


def joined_pipeline(bootstrap: str, tag: str, env: dict | None = None) -> PipelineRun:
    """A pipeline on a fresh two-partition topic, once the group has given it the partitions."""
    topic = f"bench.{tag}.{uuid.uuid4().hex[:6]}"
    ensure_topics(KafkaSettings(bootstrap=bootstrap), [topic], partitions=2)
    run = PipelineRun(bootstrap, topic, f"{topic}-g", env=env)
    if not run.assigned.wait(120):
        raise RuntimeError("pipeline never joined: " + "".join(run.log[-5:]))
    return run


def latency(bootstrap: str, paths: list[str], rate: float, seconds: float, tag: str, env: dict | None = None,
            broker_cpu: CpuWatch | None = None) -> dict:
    """Offered load at ``rate`` for ``seconds`` into a running pipeline; latency per alert from
    the input's Kafka timestamp to its annotation's (produced once its batch is scored). And
    the cores busy while the load was offered: the pipeline's, the broker's and the load
    generator's (this process: the producer and its librdkafka threads)."""
    run = joined_pipeline(bootstrap, tag, env)
    start, load_cpu = time.time(), time.process_time()
    offer_load(bootstrap, paths, run.topic, int(rate * seconds), rate)
    end, load_cpu = time.time(), time.process_time() - load_cpu
    summary = run.finish()
    offered = end - start
    cores = {"pipeline": run.cpu.between(start, end) / offered, "load_generator": load_cpu / offered,
             "broker": broker_cpu.between(start, end) / offered if broker_cpu else float("nan")}
    waits = []
    for m in read_topic(bootstrap, run.annotations):
        record = decode_annotation(m.value())
        if record.get("kafka_timestamp_ms"):
            waits.append((m.timestamp()[1] - record["kafka_timestamp_ms"]) / 1000)
    w = np.asarray(waits)
    drop_topics(bootstrap, run.topic)
    return {"offered_per_s": rate, "alerts": int(len(w)), "seconds": seconds,
            "p50_s": float(np.percentile(w, 50)), "p95_s": float(np.percentile(w, 95)),
            "p99_s": float(np.percentile(w, 99)), "max_s": float(w.max()), "peak_rss_mib": summary["peak_rss_mib"],
            "cores_busy": cores}


def live_capacity(bootstrap: str, paths: list[str], rate: float, seconds: float, tag: str,
                  env: dict | None = None) -> dict:
    """Alerts offered at ``rate`` (more than the machine sustains live) for ``seconds`` into a
    running pipeline: the rate its annotations came out at from a quarter of the way in (the
    join's backlog and start-up past) to the end of the offer. The load generator, the broker
    taking the alerts in and the pipeline share the cores, as they do in the latency rows."""
    run = joined_pipeline(bootstrap, tag, env)
    start = time.time()
    sent = offer_load(bootstrap, paths, run.topic, int(rate * seconds), rate)
    end = time.time()
    run.finish()
    out_at = np.asarray([m.timestamp()[1] / 1000 for m in read_topic(bootstrap, run.annotations)])
    drop_topics(bootstrap, run.topic)
    # The offer ends once every alert is produced, late if the generator could not keep pace.
    window = (start + 0.25 * (end - start), end)
    came_out = int(((out_at >= window[0]) & (out_at < window[1])).sum())
    return {"offered_per_s": rate, "offered_alerts": sent, "offer_seconds": end - start,
            "generator_alerts_per_s": sent / (end - start),
            "alerts_per_s": came_out / (window[1] - window[0])}


def burst(bootstrap: str, paths: list[str], n: int, tag: str, env: dict | None = None) -> dict:
    """``n`` alerts at once into a running pipeline: seconds from the first produce until the
    last annotation, and whether every alert came out (annotated or dead-lettered)."""
    run = joined_pipeline(bootstrap, tag, env)
    start = time.time()
    sent = offer_load(bootstrap, paths, run.topic, n)
    summary = run.finish()
    drop_topics(bootstrap, run.topic)
    return {"alerts": sent, "drained_s": round(summary["last_commit_at"] - start, 2),
            "out": summary["annotated"] + summary["dead_lettered"], "lost": sent - summary["consumed"]}


def survey_bench(bootstrap: str, survey: str, scale: float, latency_s: float, device: str | None = None,
                 broker_pid: int | None = None) -> dict:
    """``broker_pid``: the embedded broker's process, whose CPU the rows below count (its share
    of the machine's cores is the pipeline's ceiling as much as the code is)."""
    broker_cpu = CpuWatch(broker_pid, tree=False).start() if broker_pid else None
    try:
        return _survey_bench(bootstrap, survey, scale, latency_s, device, broker_cpu)
    finally:
        if broker_cpu:
            broker_cpu.stop()


def _survey_bench(bootstrap: str, survey: str, scale: float, latency_s: float, device: str | None,
                  broker_cpu: CpuWatch | None) -> dict:
    paths = survey_paths(survey)
    tag = f"{survey}.{uuid.uuid4().hex[:6]}"
    topic = f"bench.{tag}.in"
    total = preload(bootstrap, topic, paths, int(TARGETS[survey] * scale))
    print(f"[{survey}] {total} real alerts looped into {topic}", flush=True)
    # Consume + decode alone, then the whole pipeline, with each decode-worker setting (the
    # default 1 first): the fastest of each is the figure, and the runs below use the
    # pipeline's fastest setting.
    warm_topic(bootstrap, topic, total)  # the first reader of a fresh backlog is slower: none timed
    ceilings = {w: ceiling(bootstrap, topic, total, workers=w) for w in DECODE_WORKER_SETTINGS}
    for c in ceilings.values():
        c["broker_cpu_s"] = broker_cpu.between(c["first_at"], c["last_at"]) if broker_cpu else float("nan")
    out = {"alerts": total, "sources": paths, "ceiling_by_decode_workers": ceilings,
           "ceiling": max(ceilings.values(), key=lambda c: c["alerts_per_s"])}
    print(f"[{survey}] ceiling " + ", ".join(f"{c['alerts_per_s']:.0f} alerts/s with {w} decode workers"
                                             for w, c in ceilings.items()), flush=True)
    on_device = {"ALERT_BROKER__DEVICE": device} if device else {}

    def workers_env(workers: int) -> dict:
        return {"ALERT_BROKER__BATCH__DECODE_WORKERS": str(workers), **on_device}

    # The naive design runs twice, before the pipelines and after them, and the faster run
    # counts: one run of it measured 145 to 251 ZTF alerts/s in three whole runs of one morning.
    naive_topic = f"bench.{tag}.naive"
    naive_n = preload(bootstrap, naive_topic, paths, max(200, int(1000 * scale)))
    naive_env = {"ALERT_BROKER__BATCH__MAX_ALERTS": "1", "ALERT_BROKER__BATCH__EXPOSURE_QUIET_S": "0",
                 "ALERT_BROKER__BATCH__DECODE_WORKERS": "0", **on_device}
    naive_runs = [PipelineRun(bootstrap, naive_topic, f"{tag}-naive-before", env=naive_env).finish()]
    pipelines = {w: PipelineRun(bootstrap, topic, f"{tag}-pipeline{w}", env=workers_env(w), broker_cpu=broker_cpu).finish()
                 for w in DECODE_WORKER_SETTINGS}
    best = max(pipelines, key=lambda w: pipelines[w]["alerts_per_s"])
    out |= {"pipeline_by_decode_workers": pipelines, "pipeline": pipelines[best], "pipeline_decode_workers": best}
    env = workers_env(best)
    print(f"[{survey}] pipeline " + ", ".join(f"{r['alerts_per_s']:.0f} alerts/s with {w} decode workers"
                                              for w, r in pipelines.items()), flush=True)
    two = [PipelineRun(bootstrap, topic, f"{tag}-two", env=env) for _ in range(2)]
    runs = [r.finish() for r in two]
    span = max(r["last_commit_at"] for r in runs if r["last_commit_at"]) - \
        min(r["first_message_at"] for r in runs if r["first_message_at"])
    out["two_pipelines"] = {"alerts_per_s": sum(r["consumed"] for r in runs) / span, "per_process": runs}
    drop_topics(bootstrap, topic)
    naive_runs.append(PipelineRun(bootstrap, naive_topic, f"{tag}-naive-after", env=naive_env).finish())
    out["naive"] = max(naive_runs, key=lambda r: r["alerts_per_s"]) | {"alerts": naive_n}
    out["naive_runs_alerts_per_s"] = [r["alerts_per_s"] for r in naive_runs]
    drop_topics(bootstrap, naive_topic)
    print(f"[{survey}] naive " + " and ".join(f"{r['alerts_per_s']:.1f}" for r in naive_runs)
          + " alerts/s (before and after the pipelines)", flush=True)
    rate = out["pipeline"]["alerts_per_s"]
    out["latency"] = [latency(bootstrap, paths, r, latency_s, f"{tag}.lat{int(r)}", env, broker_cpu)
                      for r in (256.0, 0.8 * rate)]
    # The backlog rate above is measured with the alerts already in the broker. Offered live,
    # taking them in costs the broker that shares these cores as much again as serving them
    # (LSST, 136 KB alerts: ~700 us of its CPU per alert each way), and the load generator
    # runs too: the rate the machine sustains then is lower, and 80% of it is the row below.
    out["live_capacity"] = live_capacity(bootstrap, paths, rate, latency_s / 2, f"{tag}.cap", env)
    live80 = 0.8 * out["live_capacity"]["alerts_per_s"]
    print(f"[{survey}] live capacity {out['live_capacity']['alerts_per_s']:.0f} alerts/s (offered "
          f"{rate:.0f}/s, the generator reached {out['live_capacity']['generator_alerts_per_s']:.0f}/s)", flush=True)
    out["latency"].append(latency(bootstrap, paths, live80, latency_s, f"{tag}.live{int(live80)}", env, broker_cpu))
    out["burst"] = burst(bootstrap, paths, int(10_000 * min(1.0, scale * 2)), f"{tag}.burst", env)
    print(f"[{survey}] p99 latency " + ", ".join(f"{x['p99_s']:.2f} s at {x['offered_per_s']:.0f} alerts/s "
                                              f"({sum(x['cores_busy'].values()):.2f} cores busy)"
                                              for x in out["latency"])
          + f"; burst of {out['burst']['alerts']} drained in {out['burst']['drained_s']} s, {out['burst']['lost']} lost",
          flush=True)
    return out


def _device_in_words(resolved: str) -> str:
    if resolved != "cuda":
        return "cpu"
    import torch

    return f"cuda ({torch.cuda.get_device_name(0)}, torch {torch.__version__})"


def run_e2e(surveys: list[str], scale: float = 1.0, latency_s: float = 60.0, out: str | None = None,
            markdown_out: str | None = None, history_lengths=(10, 100, 1000, 10000), device: str | None = None) -> dict:
    """``device``: the filters' device in every pipeline and in the history-length rows (None:
    the settings' default, ``auto``, which takes a GPU when torch sees one)."""
    import platform

    from broker.tools.embedded import EmbeddedBroker

    resolved = Settings(device=device or "auto").resolved_device()

    def save() -> None:
        if out:
            Path(out).write_text(json.dumps(results, indent=1, default=float))

    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
               "cores": os.cpu_count(), "avro_records": engine_in_words(),
               "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "scale": scale,
               "device": _device_in_words(resolved), "surveys": {}}
    for s in surveys:
        # A fresh broker per survey: after the ZTF part (gigabytes written, then deleted) every
        # LSST ceiling on the same broker came out below its pipeline (2026-12-06, two runs).
        broker = EmbeddedBroker().start()
        try:
            results["surveys"][s] = survey_bench(broker.bootstrap, s, scale, latency_s, device, broker.proc.pid)
        finally:
            broker.stop()
        save()  # each survey's figures kept as soon as measured
    from broker.tools.bench import bench_history_length

    # The number of points at a fixed span (a year: an LSST alert's history), and one a night
    # (the span grows with the points): the periodogram's cost follows the span.
    results["history_length_one_year"] = bench_history_length(lengths=history_lengths, device=resolved, span_days=365.0)
    results["history_length"] = bench_history_length(lengths=history_lengths, device=resolved)
    results["summary"] = summarise(results)
    table = markdown(results)
    print(table)
    save()
    if markdown_out:
        Path(markdown_out).write_text(table)
    return results
