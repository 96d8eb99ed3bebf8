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
  same cores); and Rubin's cadence: visits of 10,000 alerts offered at once every 39 s, the
  first of them the burst (how long until drained);
* **two pipelines** in one consumer group (two partitions), and peak RSS and per-stage time;
* **CPU** (``broker/tools/bench_cpu.py``) of the ceiling, the pipeline and the embedded broker
  in the same windows as the rates, and the cores busy while load is offered: on a machine the
  broker shares, a rate is bound by the cores as much as by the code.

Rates count from the first message consumed to the last batch committed (the group join is
reported apart). Ratios from one run are the figures to quote: the machines are noisy.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from broker.avro_records import engine_in_words
from broker.settings import Settings
from broker.tools.bench_ceiling import ceiling, warm_topic
from broker.tools.bench_cpu import CpuWatch
from broker.tools.bench_harness import (PipelineRun, drop_topics, loops_for, payloads, preload,
                                        survey_paths)
from broker.tools.bench_offered import VISIT_ALERTS, VISIT_EVERY_S, VISITS, latency, live_capacity, visits
from broker.tools.bench_report import markdown, summarise

TARGETS = {"ztf": 50_000, "lsst": 20_000}
DECODE_WORKER_SETTINGS = (1, 0, 2)  # batch.decode_workers: the default, in process, two workers


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
    # Whole loops of the real alerts (10,656 ZTF, 10,048 LSST at scale 1), a visit every 39 s per
    # 10,000 of them (Rubin's mean 256 alerts/s); at small scale smaller visits, as often per alert.
    # LSST's visits are one exposure each, as Rubin's are; ZTF's alerts keep their own ids.
    per_visit = loops_for(paths, int(VISIT_ALERTS * min(1.0, scale * 2))) * len(payloads(tuple(paths)))
    out["visits"] = visits(bootstrap, paths, per_visit, VISIT_EVERY_S * per_visit / VISIT_ALERTS, VISITS,
                           f"{tag}.visits", env, one_exposure=survey == "lsst")
    print(f"[{survey}] p99 latency " + ", ".join(f"{x['p99_s']:.2f} s at {x['offered_per_s']:.0f} alerts/s "
                                              f"({sum(x['cores_busy'].values()):.2f} cores busy)"
                                              for x in out["latency"])
          + f"; visits of {per_visit}: last annotation after "
          + ", ".join(f"{v['last_out_s']} s" for v in out["visits"]["visits"]) + f", {out['visits']['lost']} lost",
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
