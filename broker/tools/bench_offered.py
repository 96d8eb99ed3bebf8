"""The rows of ``bench e2e`` with alerts offered into a running pipeline by the load generator,
which shares the cores with it and with the broker: latency at a steady rate, the live capacity,
and Rubin's cadence of visits."""
from __future__ import annotations

import time

import numpy as np

from broker.annotations import decode_annotation
from broker.tools.bench_cpu import CpuWatch
from broker.tools.bench_harness import (as_one_visit, drop_topics, joined_pipeline, offer_load, payloads,
                                        wait_committed)
from broker.tools.tail import read_topic


def annotation_times(bootstrap: str, topic: str) -> tuple[np.ndarray, np.ndarray]:
    """For each annotation on ``topic``: its input's Kafka timestamp and its own, in epoch seconds."""
    made, came_out = [], []
    for m in read_topic(bootstrap, topic):
        made_ms = decode_annotation(m.value()).get("kafka_timestamp_ms")
        if made_ms:
            made.append(made_ms / 1000)
            came_out.append(m.timestamp()[1] / 1000)
    return np.asarray(made), np.asarray(came_out)


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
    made, came_out = annotation_times(bootstrap, run.annotations)
    w = came_out - made
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


# Rubin's cadence: ~10,000 alerts per visit, a visit every ~39 s (256 alerts/s on average).
VISIT_ALERTS, VISIT_EVERY_S, VISITS = 10_000, 39.0, 3
FIRST_VISIT_ID = 2026120700001  # Rubin-style (day and sequence number), none of the samples'


def visits(bootstrap: str, paths: list[str], per_visit: int, every_s: float, count: int, tag: str,
           env: dict | None = None, one_exposure: bool = False) -> dict:
    """``count`` visits of ``per_visit`` alerts, each offered at once, ``every_s`` apart (from one
    visit's start to the next's), into one running pipeline. Per visit: seconds from its first
    produce to its last annotation, the p99 of its alerts' latency, and whether its last
    annotation was out before the next visit began. The first visit is the burst: an idle
    pipeline handed ``per_visit`` alerts at once. ``one_exposure`` (LSST): each visit's alerts
    carry one visit id, as a Rubin visit's do, so each partition holds its share as one
    exposure run until the partition goes quiet."""
    values = [as_one_visit(payloads(tuple(paths)), FIRST_VISIT_ID + v) if one_exposure else None
              for v in range(count)]  # re-encoded before the clock starts
    run = joined_pipeline(bootstrap, tag, env, idle_s=every_s + 6.0)  # idle between visits, not done
    starts, sent = [], []
    for v in range(count):
        if starts:  # a visit that took longer to offer than every_s delays the next
            time.sleep(max(0.0, starts[0] + v * every_s - time.time()))
        starts.append(time.time())
        sent.append(offer_load(bootstrap, paths, run.topic, per_visit, values=values[v]))
    # The last visit drained, the pipeline is stopped rather than left to go idle for every_s.
    if wait_committed(bootstrap, run, sum(sent), timeout_s=600):
        run.proc.terminate()
    summary = run.finish()
    made, came_out = annotation_times(bootstrap, run.annotations)
    drop_topics(bootstrap, run.topic)
    # Kafka timestamps are whole milliseconds: a visit's first alert may read up to 1 ms early.
    visit_of = np.searchsorted(np.asarray(starts) - 0.001, made, side="right") - 1
    rows = []
    for v, (start, n) in enumerate(zip(starts, sent)):
        mine = visit_of == v
        last = float(came_out[mine].max()) if mine.any() else float("nan")
        rows.append({"alerts": n, "annotated": int(mine.sum()), "last_out_s": round(last - start, 2),
                     "p99_s": float(np.percentile(came_out[mine] - made[mine], 99)) if mine.any() else float("nan"),
                     "out_before_next": bool(last < starts[v + 1]) if v + 1 < count else None})
    return {"per_visit": per_visit, "every_s": every_s, "one_exposure": one_exposure, "visits": rows, "alerts": sum(sent),
            "out": summary["annotated"] + summary["dead_lettered"], "lost": sum(sent) - summary["consumed"]}
