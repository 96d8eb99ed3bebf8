"""The benchmark's ceiling: consume + decode only, in a process of its own.

Run as ``python -m broker.tools.bench_ceiling BOOTSTRAP TOPIC TOTAL WORKERS``; prints one JSON
line. A fresh process for each measurement, as the pipeline gets (``alert-broker run`` in a
subprocess), and the same garbage-collection treatment (start-up objects frozen): measured
inside the benchmark's own process, after the ZTF part had run, the LSST ceiling came out
below the pipeline it should bound (2,111 against 2,309 alerts/s, 2026-12-06).

:func:`warm_topic` reads a topic once, unmeasured, before anything is timed on it: on a fresh
embedded broker the first reader of a backlog was ~15% slower than the next (LSST, 20,096
alerts, in-process consume + decode: 2,657 then 3,136-3,231 alerts/s), and that reader used
to be the first ceiling.
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from broker.tools.bench_cpu import CpuWatch

REPO = Path(__file__).resolve().parents[2]


def measure(bootstrap: str, topic: str, total: int, workers: int, timeout_s: float = 900) -> dict:
    """Consume + decode only, with the pipeline's consumer settings and batch size, decoding
    as the pipeline does (``batch.decode_workers`` processes, the next batch decoding while
    this one is read back; stamps dropped unless a filter reads them) or, with ``workers``
    = 0, in the consumer's own process."""
    from broker.decode_pool import DecodePool
    from broker.kafka_io import make_consumer
    from broker.settings import Settings
    from filters.base import discover

    settings = Settings.load(None, kafka={"bootstrap": bootstrap}, input_topics=[topic])
    consumer = make_consumer(settings.kafka, f"bench-ceiling-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    found = discover()
    pool = DecodePool(settings, workers,
                      keep_cutouts=any(found[name].cutouts for name in settings.enabled_filters()))
    gc.collect()
    gc.freeze()  # as the pipeline does once started (broker/pipeline.py)
    n, first, last, pending, first_at = 0, None, None, None, None
    end = time.monotonic() + timeout_s
    try:
        while (n < total or pending) and time.monotonic() < end:
            wait_s = 0.0 if pending else settings.batch.max_wait_ms / 1000
            got = [m for m in consumer.consume(settings.batch.max_alerts, wait_s) if m.error() is None]
            incoming = pool.submit(got) if got else None
            if got and first is None:
                first, first_at = time.perf_counter(), time.time()
            n += len(got)
            if pending:
                pool.result(pending)
                last = time.perf_counter()
            pending = incoming
    finally:
        consumer.close()
        pool.close()
    seconds = (last - first) if first and last else float("nan")
    return {"messages": n, "seconds": round(seconds, 3), "alerts_per_s": n / seconds if seconds else 0.0,
            "first_at": first_at, "last_at": first_at + seconds if first_at else None}  # epoch s: the CPU's window


def child_env(extra: dict | None = None) -> dict:
    """The environment of a measured subprocess: this checkout first on its path (the caller's
    path after it), plus ``extra``."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, **(extra or {}), PYTHONPATH=path)


def ceiling(bootstrap: str, topic: str, total: int, workers: int, timeout_s: float = 900) -> dict:
    """:func:`measure` in a fresh process, with the CPU it and its decode workers spent while
    reading (``cpu_s``)."""
    proc = subprocess.Popen([sys.executable, "-m", "broker.tools.bench_ceiling", bootstrap, topic, str(total),
                             str(workers), str(timeout_s)], env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    watch = CpuWatch(proc.pid).start()
    try:
        out, err = proc.communicate(timeout=timeout_s + 120)
    finally:
        proc.kill()
        watch.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"ceiling exited {proc.returncode}: {err[-2000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    return result | {"cpu_s": watch.between(result["first_at"], result["last_at"])}


def warm_topic(bootstrap: str, topic: str, total: int, timeout_s: float = 300) -> None:
    """Read ``topic`` to its end once, consume only, nothing measured."""
    from broker.kafka_io import make_consumer
    from broker.settings import Settings

    settings = Settings.load(None, kafka={"bootstrap": bootstrap}, input_topics=[topic])
    consumer = make_consumer(settings.kafka, f"bench-warm-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    n, end = 0, time.monotonic() + timeout_s
    try:
        while n < total and time.monotonic() < end:
            n += sum(1 for m in consumer.consume(settings.batch.max_alerts, 1.0) if m.error() is None)
    finally:
        consumer.close()


if __name__ == "__main__":
    boot, name, count, decode_workers, limit_s = sys.argv[1:6]
    print(json.dumps(measure(boot, name, int(count), int(decode_workers), float(limit_s))), flush=True)
