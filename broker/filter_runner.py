"""Loads the enabled filters once and runs them on each batch with the runtime's policies.

Policies that belong to the runtime, not to a filter: start-up checks of declared fields,
chunking for a filter's ``max_batch``, timing, metrics, and isolation of faults. A filter
that raises on a batch is called again on halves of it, down to single alerts, so one bad
alert nulls only itself (reason ``error:<exception>``); a call that runs past its deadline
nulls its alerts (``timeout``) and the filter is skipped until that call returns; scores
that are not finite, nulls without a reason and wrong-length outputs become nulls with
reason ``invalid_output``. The batch goes on; the pipeline does not stop.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import numpy as np

from broker import metrics
from broker.batch import AlertBatch
from broker.surveys.columns import known_columns
from filters.base import Filter, FilterContext, FilterResult, discover

log = logging.getLogger(__name__)


DRIFT_EVERY_S = 30.0  # PSI over a sliding window is cheap but not free: refresh twice a minute
# Isolating bad alerts by halving costs about 2k*log2(n/k) calls for k bad alerts in n; one
# batch may cost at most this many calls, or as many as it has alerts if that is more.
MIN_CALLS_PER_BATCH = 64


class FilterTimeout(Exception):
    pass


class InvalidOutput(ValueError):
    pass


@dataclass
class LoadedFilter:
    name: str
    version: str
    impl: Filter
    consecutive_failures_since: float | None = None
    drift_at: float = 0.0
    executor: ThreadPoolExecutor | None = None
    hung: Future | None = None  # a call that ran past its deadline and has not returned
    calls_left: int = field(default=0, repr=False)
    last_reason: str = "error"


def limit_compute_threads(threads: int) -> None:
    """Caps the thread pools of the numeric libraries loaded (torch's, OpenMP's, BLAS's, numba's)
    at ``threads`` for work started from the calling thread (OpenMP's and numba's counts are
    per thread): idle pool threads spin-wait, and where the other cores decode they take CPU
    the decoding needs."""
    import sys

    from threadpoolctl import threadpool_limits

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    threadpool_limits(threads)  # OpenBLAS and libgomp (XGBoost, torch), as loaded now
    if "numba" in sys.modules:
        numba = sys.modules["numba"]
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


class FilterRunner:
    def __init__(self, names: list[str], device: str = "cpu",
                 options: dict[str, dict] | None = None, deadline_s: float = 60.0, threads: int | None = None):
        available = discover()
        unknown = [n for n in names if n not in available]
        if unknown:
            raise ValueError(f"unknown filters {unknown}; installed: {sorted(available)}")
        self.deadline_s = deadline_s
        self.filters: list[LoadedFilter] = []
        for name in names:
            impl = available[name]()
            check_fields(impl)
            impl.setup(FilterContext(device=device, options=(options or {}).get(name, {}), threads=threads))
            metrics.FILTER_INFO.labels(filter=name).info({"version": impl.version, "device": device})
            # OpenMP's thread count is per calling thread: the filter's own thread sets its cap.
            executor = ThreadPoolExecutor(1, thread_name_prefix=f"filter-{name}",
                                          initializer=limit_compute_threads if threads else None,
                                          initargs=(threads,) if threads else ())
            self.filters.append(LoadedFilter(name, impl.version, impl, executor=executor))
            log.info("filter loaded", extra={"filter": name, "version": impl.version, "device": device})

        if threads is not None:
            limit_compute_threads(threads)
            log.info("compute threads", extra={"threads": threads})

    def run(self, batch: AlertBatch, heartbeat=lambda: None) -> dict[str, FilterResult]:
        """Every filter's result; ``heartbeat`` is called after each filter (liveness)."""
        results: dict[str, FilterResult] = {}
        for f in self.filters:
            heartbeat()
            start = time.perf_counter()
            result = self._isolated(f, batch)
            failed = sum(1 for r in result.reason if r and r.split(":", 1)[0] in ("error", "timeout"))
            if batch.n and failed == batch.n:
                if f.consecutive_failures_since is None:
                    f.consecutive_failures_since = time.monotonic()
            else:
                f.consecutive_failures_since = None
            metrics.STAGE_SECONDS.labels(stage=f"filter:{f.name}").observe(time.perf_counter() - start)
            _count(f.name, result)
            self._export_drift(f)
            results[f.name] = result
        return results

    def _isolated(self, f: LoadedFilter, batch: AlertBatch) -> FilterResult:
        result = FilterResult.empty(batch.n)
        f.calls_left = max(MIN_CALLS_PER_BATCH, batch.n)
        self._score_into(f, batch, np.arange(batch.n), result)
        return result

    def _score_into(self, f: LoadedFilter, batch: AlertBatch, idx: np.ndarray, out: FilterResult) -> None:
        """Score ``idx`` into ``out``; on an exception, halve and try again (bounded)."""
        if f.calls_left <= 0:  # the budget of this batch is spent: as the last failure
            _null(out, idx, f.last_reason)
            return
        try:
            f.calls_left -= 1
            part = self._call(f, batch if len(idx) == batch.n else batch.subset(idx))
        except FilterTimeout as exc:
            metrics.FILTER_ERRORS.labels(filter=f.name).inc()
            log.error("filter call past its deadline", extra={"filter": f.name, "alerts": len(idx), "error": str(exc)})
            _null(out, idx, "timeout")
            return
        except Exception as exc:
            metrics.FILTER_ERRORS.labels(filter=f.name).inc()
            f.last_reason = "invalid_output" if isinstance(exc, InvalidOutput) else f"error:{type(exc).__name__}"
            if len(idx) > 1 and f.calls_left > 0:
                half = len(idx) // 2
                self._score_into(f, batch, idx[:half], out)
                self._score_into(f, batch, idx[half:], out)
                return
            log.warning("filter failed", extra={"filter": f.name, "alerts": len(idx), "error": f"{type(exc).__name__}: {exc}"[:300],
                                                "alert_ids": [int(a) for a in batch.alert_id[idx[:10]]]})
            _null(out, idx, f.last_reason)
            return
        out.score[idx] = part.score
        if len(idx) == len(out.reason):  # the whole batch at once: take its lists as they are
            out.reason[:], out.details[:] = part.reason, part.details
            return
        for j, i in enumerate(idx):
            out.reason[i] = part.reason[j]
            out.details[i] = part.details[j]

    def _call(self, f: LoadedFilter, batch: AlertBatch) -> FilterResult:
        """One guarded call: on the filter's own thread, within the deadline, output checked."""
        if f.hung is not None:
            if not f.hung.done():
                raise FilterTimeout("an earlier call has not returned")
            f.hung = None
        future = f.executor.submit(_score_chunked, f.impl, batch)
        try:
            result = future.result(timeout=self.deadline_s)
        except FutureTimeout:
            f.hung = future
            raise FilterTimeout(f"no result within {self.deadline_s}s") from None
        return sanitise(result, batch.n, f.name)

    @staticmethod
    def _export_drift(f: LoadedFilter) -> None:
        """Filters with a ``drift()`` method report PSI per feature against their training set."""
        drift = getattr(f.impl, "drift", None)
        if drift is None or time.monotonic() - f.drift_at < DRIFT_EVERY_S:
            return
        f.drift_at = time.monotonic()
        try:
            values = drift()
        except Exception:
            log.exception("filter drift report failed", extra={"filter": f.name})
            return
        for feature, value in values.items():
            metrics.FILTER_DRIFT.labels(filter=f.name, feature=feature).set(value)

    def failing_for(self) -> float:
        """Seconds the longest-failing filter has failed every batch (0 if none fails)."""
        now = time.monotonic()
        since = [f.consecutive_failures_since for f in self.filters if f.consecutive_failures_since]
        return max((now - s for s in since), default=0.0)


def _score_chunked(impl: Filter, batch: AlertBatch) -> FilterResult:
    size = impl.max_batch
    if not size or batch.n <= size:
        return impl.score(batch)
    parts = [impl.score(batch.subset(np.arange(s, min(s + size, batch.n))))
             for s in range(0, batch.n, size)]
    for p in parts:
        if not isinstance(p, FilterResult):
            raise InvalidOutput(f"score() returned {type(p).__name__}, not FilterResult")
    return FilterResult(
        np.concatenate([np.asarray(p.score, dtype=np.float64) for p in parts]),
        [r for p in parts for r in p.reason],
        [d for p in parts for d in (p.details or [{}] * len(p.score))],
    )


def sanitise(result: FilterResult, n: int, name: str) -> FilterResult:
    """A filter's output as the annotation may carry it, or :class:`InvalidOutput` when its
    shape is wrong. Per alert: a non-finite score, or a null without a reason, is null with
    ``invalid_output``."""
    if not isinstance(result, FilterResult):
        raise InvalidOutput(f"filter {name} returned {type(result).__name__}, not FilterResult")
    try:
        score = np.asarray(result.score, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InvalidOutput(f"filter {name}: scores are not numbers: {exc}") from None
    reason = list(result.reason)
    details = list(result.details) if result.details else [{} for _ in range(n)]
    if len(score) != n or len(reason) != n or len(details) != n:
        raise InvalidOutput(f"filter {name} returned {len(score)} scores, {len(reason)} reasons, "
                            f"{len(details)} details for {n} alerts")
    bad = ~np.isfinite(score)
    for i in np.flatnonzero(bad).tolist():
        if not (np.isnan(score[i]) and isinstance(reason[i], str) and reason[i]):
            reason[i] = "invalid_output"
    score[bad] = np.nan
    if not bad.all():  # a scored alert carries no reason
        reason = [r if b else None for r, b in zip(reason, bad.tolist())]
    return FilterResult(score, reason, [d if isinstance(d, dict) else {} for d in details])


def _null(out: FilterResult, idx: np.ndarray, reason: str) -> None:
    for i in idx:
        out.score[i] = np.nan
        out.reason[i] = reason
        out.details[i] = {}


def check_fields(impl: Filter) -> None:
    """Fail fast at start-up when a filter asks for a column no survey schema provides."""
    for survey, names in impl.fields.items():
        missing = [n for n in names if n not in known_columns(survey)]
        if missing:
            raise ValueError(f"filter {impl.name} needs {missing}, unknown for survey {survey}")


def _count(name: str, result: FilterResult) -> None:
    scored = np.isfinite(result.score)
    metrics.FILTER_SCORED.labels(filter=name).inc(int(scored.sum()))
    metrics.observe_many(metrics.FILTER_SCORE.labels(filter=name), result.score[scored])
    for label, count in Counter(metrics.reason_label(r) for r in result.reason if r is not None).items():
        metrics.FILTER_NULL.labels(filter=name, reason=label).inc(count)
