"""Loads the enabled filters once and runs them on each batch with the runtime's policies.

Policies that belong to the runtime, not to a filter: start-up checks of declared fields,
chunking for a filter's ``max_batch``, timing, metrics, and turning an exception into
null scores with reason ``error`` (the batch goes on, the pipeline does not stop).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from broker import metrics
from broker.batch import AlertBatch
from broker.surveys.columns import known_columns
from filters.base import Filter, FilterContext, FilterResult, discover

log = logging.getLogger(__name__)


DRIFT_EVERY_S = 30.0  # PSI over a sliding window is cheap but not free: refresh twice a minute


@dataclass
class LoadedFilter:
    name: str
    version: str
    impl: Filter
    consecutive_failures_since: float | None = None
    drift_at: float = 0.0


class FilterRunner:
    def __init__(self, names: list[str], device: str = "cpu",
                 options: dict[str, dict] | None = None):
        available = discover()
        unknown = [n for n in names if n not in available]
        if unknown:
            raise ValueError(f"unknown filters {unknown}; installed: {sorted(available)}")
        self.filters: list[LoadedFilter] = []
        for name in names:
            impl = available[name]()
            check_fields(impl)
            impl.setup(FilterContext(device=device, options=(options or {}).get(name, {})))
            metrics.FILTER_INFO.labels(filter=name).info({"version": impl.version, "device": device})
            self.filters.append(LoadedFilter(name, impl.version, impl))
            log.info("filter loaded", extra={"filter": name, "version": impl.version, "device": device})

    def run(self, batch: AlertBatch) -> dict[str, FilterResult]:
        results: dict[str, FilterResult] = {}
        for f in self.filters:
            start = time.perf_counter()
            try:
                result = self._score_chunked(f.impl, batch)
                result.validate(batch.n, f.name)
                f.consecutive_failures_since = None
            except Exception:
                log.exception("filter failed on a batch", extra={"filter": f.name, "alerts": batch.n})
                metrics.FILTER_ERRORS.labels(filter=f.name).inc()
                if f.consecutive_failures_since is None:
                    f.consecutive_failures_since = time.monotonic()
                result = FilterResult.empty(batch.n)
                result.set_null(np.ones(batch.n, bool), "error")
            metrics.STAGE_SECONDS.labels(stage=f"filter:{f.name}").observe(time.perf_counter() - start)
            _count(f.name, result)
            self._export_drift(f)
            results[f.name] = result
        return results

    @staticmethod
    def _export_drift(f: LoadedFilter) -> None:
        """Filters with a ``drift()`` method report PSI per feature against their training set."""
        drift = getattr(f.impl, "drift", None)
        if drift is None or time.monotonic() - f.drift_at < DRIFT_EVERY_S:
            return
        f.drift_at = time.monotonic()
        for feature, value in drift().items():
            metrics.FILTER_DRIFT.labels(filter=f.name, feature=feature).set(value)

    @staticmethod
    def _score_chunked(impl: Filter, batch: AlertBatch) -> FilterResult:
        size = impl.max_batch
        if not size or batch.n <= size:
            return impl.score(batch)
        parts = [impl.score(batch.subset(np.arange(s, min(s + size, batch.n))))
                 for s in range(0, batch.n, size)]
        return FilterResult(
            np.concatenate([p.score for p in parts]),
            [r for p in parts for r in p.reason],
            [d for p in parts for d in (p.details or [{}] * len(p.score))],
        )

    def failing_for(self) -> float:
        """Seconds the longest-failing filter has failed every batch (0 if none fails)."""
        now = time.monotonic()
        since = [f.consecutive_failures_since for f in self.filters if f.consecutive_failures_since]
        return max((now - s for s in since), default=0.0)


def check_fields(impl: Filter) -> None:
    """Fail fast at start-up when a filter asks for a column no survey schema provides."""
    for survey, names in impl.fields.items():
        missing = [n for n in names if n not in known_columns(survey)]
        if missing:
            raise ValueError(f"filter {impl.name} needs {missing}, unknown for survey {survey}")


def _count(name: str, result: FilterResult) -> None:
    scored = np.isfinite(result.score)
    metrics.FILTER_SCORED.labels(filter=name).inc(int(scored.sum()))
    for s in result.score[scored]:
        metrics.FILTER_SCORE.labels(filter=name).observe(float(s))
    for r in result.reason:
        if r is not None:
            metrics.FILTER_NULL.labels(filter=name, reason=metrics.reason_label(r)).inc()
