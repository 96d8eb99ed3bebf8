"""``alert-broker bench``: speed measured in one run, reported as ratios (machines are noisy).

* decode: our cached-schema decoder against parsing every message with ``fastavro.reader``;
* filters: per-alert cost at several batch sizes, for every installed filter, on the bundled
  sample alerts (repeated to fill the batch); then each filter's own ``bench`` hook, where it
  has one (the transit CNN on its own, since its per-light-curve search does not batch);
* memory: peak resident set size of the process;
* history length: each filter's cost per alert for histories of 10 to 10,000 points
  (:func:`bench_history_length`, also part of ``bench e2e``).
"""
from __future__ import annotations

import io
import json
import resource
import time
from pathlib import Path

import numpy as np

from broker.batch import AlertBatch
from broker.codec import DecodeError, Decoder
from broker.schema_store import SchemaResolver
from broker.surveys import decode_alerts

SAMPLES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "alerts"


def _messages(paths: list[Path]) -> list[bytes]:
    return [p.read_bytes() for p in paths]


def bench_decode(messages: list[bytes], repeat: int = 5) -> dict:
    import fastavro

    ocf = [m for m in messages if m[:4] == b"Obj\x01"]
    decoder = Decoder(SchemaResolver())
    ok = []
    for m in ocf:
        try:
            decoder.decode(m)
            ok.append(m)
        except DecodeError:
            pass
    t0 = time.perf_counter()
    for _ in range(repeat):
        for m in ok:
            decoder.decode(m)
    ours = (time.perf_counter() - t0) / (repeat * len(ok))
    t0 = time.perf_counter()
    for _ in range(repeat):
        for m in ok:
            list(fastavro.reader(io.BytesIO(m)))
    naive = (time.perf_counter() - t0) / (repeat * len(ok))
    return {"messages": len(ok), "cached_us_per_alert": ours * 1e6, "naive_us_per_alert": naive * 1e6,
            "speedup": naive / ours, "schemas_parsed": decoder.cache.parses}


def _batch(messages: list[bytes], n: int) -> AlertBatch:
    alerts = decode_alerts(messages, Decoder(SchemaResolver()))
    reps = (alerts * (n // max(1, len(alerts)) + 1))[:n]
    return AlertBatch(reps)


def bench_filters(messages: list[bytes], sizes=(1, 16, 128, 512), device: str = "cpu") -> dict:
    from filters.base import FilterContext, discover

    out = {}
    for name, cls in sorted(discover().items()):
        impl = cls()
        impl.setup(FilterContext(device=device))
        rows = {}
        for n in sizes:
            batch = _batch(messages, n)
            impl.score(batch)  # warm-up
            fresh = batch.subset(np.arange(n))  # the warm-up's cached features not reused
            t0 = time.perf_counter()
            impl.score(fresh)
            rows[n] = (time.perf_counter() - t0) / n * 1e6
        out[name] = {"us_per_alert": rows, "ratio_smallest_to_largest": rows[sizes[0]] / rows[sizes[-1]]}
    return out


def bench_filter_hooks(device: str = "cpu") -> dict:
    """Each installed filter's own benchmark (its ``bench`` command hook), where it has one."""
    from filters.base import discover, filter_commands

    hooks = {name: filter_commands(name, "bench") for name in sorted(discover())}
    return {name: hook(device) for name, hook in hooks.items() if hook}


def run_bench(device: str = "cpu", out: str | None = None) -> dict:
    messages = _messages(sorted(SAMPLES.rglob("*.avro")))
    result = {"device": device, "decode": bench_decode(messages), "filters": bench_filters(messages, device=device),
              "filter_benchmarks": bench_filter_hooks(device=device),
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    text = json.dumps(result, indent=1, default=float)
    if out:
        Path(out).write_text(text)
    d = result["decode"]
    print(f"decode: {d['cached_us_per_alert']:.0f} us/alert cached vs {d['naive_us_per_alert']:.0f} naive "
          f"({d['speedup']:.1f}x; {d['schemas_parsed']} schemas parsed for {d['messages']} messages)")
    for name, r in result["filters"].items():
        cells = ", ".join(f"{n}: {v:.0f}" for n, v in r["us_per_alert"].items())
        print(f"{name}: us/alert by batch size {{{cells}}}; batch 1 costs {r['ratio_smallest_to_largest']:.1f}x the largest")
    for r in result["filter_benchmarks"].values():
        print(r.get("summary", ""))
    print(f"peak RSS: {result['peak_rss_mib']:.0f} MiB")
    return result


HISTORY_TEMPLATE = SAMPLES / "ztf" / "ztf-avro-alert" / "v2.0" / "472263571115095000.avro"


def history_alert(points: int, seed: int = 0, span_days: float | None = None) -> bytes:
    """A real ZTF alert whose history is stretched to ``points`` detections (its own detections
    repeated, magnitudes jittered), re-encoded with its own schema. The points are one night
    apart, or spread evenly over the ``span_days`` before the alert when given."""
    import fastavro

    reader = fastavro.reader(io.BytesIO(HISTORY_TEMPLATE.read_bytes()))
    schema, record = reader.writer_schema, next(reader)
    detections = [c for c in record["prv_candidates"] if c.get("magpsf") is not None]
    rng = np.random.default_rng(seed)
    step = 1.0 if span_days is None else span_days / points
    jd0 = record["candidate"]["jd"] - points * step
    history = []
    for k in range(points):
        c = dict(detections[k % len(detections)])
        c.update(jd=jd0 + (k + rng.uniform(0.1, 0.4)) * step, magpsf=c["magpsf"] + rng.normal(0, 0.05))
        history.append(c)
    buf = io.BytesIO()
    fastavro.writer(buf, schema, [dict(record, prv_candidates=history)])
    return buf.getvalue()


def bench_history_length(lengths=(10, 100, 1000, 10000), alerts: int = 8, device: str = "cpu",
                         span_days: float | None = None) -> dict:
    """Each filter's cost per alert against the length of the alert's history: one point a
    night, or the points spread over ``span_days`` (see :func:`history_alert`)."""
    from filters.base import FilterContext, discover

    batches = {n: AlertBatch(decode_alerts([history_alert(n, seed=i, span_days=span_days) for i in range(alerts)],
                                           Decoder(SchemaResolver()))) for n in lengths}
    out = {}
    for name, cls in sorted(discover().items()):
        impl = cls()
        impl.setup(FilterContext(device=device))
        # first-call costs (lazy tensors, thread pools) apart, on a history most filters score
        warm = min((n for n in lengths if n >= 100), default=lengths[0])
        impl.score(batches[warm].subset(np.arange(1)))
        rows = {}
        for n, batch in batches.items():
            runs = []
            for _ in range(2):  # the faster of two: one call is at the mercy of a noisy machine
                fresh = batch.subset(np.arange(batch.n))  # no features cached by an earlier filter
                t0 = time.perf_counter()
                impl.score(fresh)
                runs.append((time.perf_counter() - t0) / batch.n * 1e6)
            rows[n] = min(runs)
        a, b = sorted(rows)[-2:] if len(rows) > 1 else (None, None)
        slope = np.log(rows[b] / rows[a]) / np.log(b / a) if a else float("nan")
        out[name] = {"us_per_alert": rows, "growth_exponent_last_decade": float(slope)}
    return out
