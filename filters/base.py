"""The filter interface and the plugin registry.

A filter is pure compute: it declares the detection columns it needs, loads its model once
in ``setup`` onto the context's device, and turns a whole batch into a :class:`FilterResult`
aligned with the batch. The runtime owns Kafka, timing, metrics and the error policy.
Third-party packages register filters under the ``alert_broker.filters`` entry-point group.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from broker.batch import AlertBatch

ENTRY_POINT_GROUP = "alert_broker.filters"


@dataclass
class FilterContext:
    device: str = "cpu"  # "cpu" or "cuda"
    options: dict[str, Any] = field(default_factory=dict)
    model_dir: Path | None = None  # overrides the filter's packaged artifacts
    # CPU threads the runtime allows a filter's own thread pools (XGBoost's nthread); None: the
    # filter's choice. torch, BLAS and numba pools the runtime caps itself.
    threads: int | None = None


@dataclass
class FilterResult:
    """Per-alert outputs: ``score`` NaN means null, and then ``reason`` says why."""

    score: np.ndarray
    reason: list[str | None]
    details: list[dict[str, float | str]] = field(default_factory=list)

    @classmethod
    def empty(cls, n: int) -> "FilterResult":
        return cls(np.full(n, np.nan), [None] * n, [{} for _ in range(n)])

    def set_null(self, mask: np.ndarray, reason: str) -> None:
        """Null the still-unset alerts in ``mask`` with ``reason`` (first reason wins)."""
        for i in np.flatnonzero(mask):
            if self.reason[i] is None:
                self.score[i] = np.nan
                self.reason[i] = reason

    def validate(self, n: int, name: str) -> None:
        if len(self.score) != n or len(self.reason) != n:
            raise ValueError(f"filter {name} returned {len(self.score)} scores for {n} alerts")
        if self.details and len(self.details) != n:
            raise ValueError(f"filter {name} returned {len(self.details)} details for {n} alerts")
        for i, s in enumerate(self.score):
            if math.isnan(s) and not self.reason[i]:
                raise ValueError(f"filter {name}: alert {i} has a null score without a reason")


class Filter(ABC):
    name: ClassVar[str]
    version: ClassVar[str]
    # Detection columns needed, per survey; checked against the known columns at start-up.
    fields: ClassVar[dict[str, tuple[str, ...]]] = {}
    max_batch: ClassVar[int | None] = None  # the runtime chunks larger batches
    # True when a score depends on the other alerts of the same exposure: the runtime then
    # holds an exposure's alerts until the run is complete (``broker/exposure_runs.py``) and
    # never chunks the batch (``max_batch`` must stay None).
    exposure_context: ClassVar[bool] = False
    # True when ``score`` reads stamps (``batch.cutout``). Without one such filter the decode
    # stage drops cutouts once their size is checked: they are most of an alert's bytes, and
    # the original bytes, stamps included, are what filtered topics forward anyway.
    cutouts: ClassVar[bool] = False
    # Optional commands: a module with ``train(argv) -> int`` and/or ``score(argv) -> int``
    # (``alert-broker train|score NAME ...``) and ``bench(device) -> dict`` (``alert-broker
    # bench``). The CLI finds them here, so it never imports a filter by name.
    commands: ClassVar[str | None] = None

    def setup(self, context: FilterContext) -> None:
        """Load models once; called before the first batch."""
        self.context = context

    @abstractmethod
    def score(self, batch: AlertBatch) -> FilterResult:
        """Score every alert of ``batch``; never raise for one bad alert, null it instead."""

    def null_unsupported(self, batch: AlertBatch, result: FilterResult) -> None:
        """Alerts of surveys this filter has no fields for get a null with a reason."""
        for survey in set(batch.survey):
            if survey not in self.fields:
                result.set_null(batch.survey == survey, f"unsupported_survey:{survey}")

    def null_missing(self, batch: AlertBatch, result: FilterResult) -> None:
        """Alerts lacking a needed column (older schema, null field) get ``missing:<field>``."""
        for survey, names in self.fields.items():
            rows = batch.survey == survey
            for col in names:
                result.set_null(rows & ~np.isfinite(batch.column(col)), f"missing:{col}")


def filter_commands(name: str, command: str):
    """The ``command`` hook (``train``, ``score``, ``bench``) of installed filter ``name``, or None."""
    import importlib

    cls = discover().get(name)
    if cls is None:
        raise LookupError(f"no installed filter {name!r}; installed: {sorted(discover())}")
    if not cls.commands:
        return None
    return getattr(importlib.import_module(cls.commands), command, None)


def print_rows(rows: list[dict], as_json: bool) -> None:
    """Offline scoring output: one JSON object or one tab-separated line per row."""
    import json

    for row in rows:
        print(json.dumps(row, default=float) if as_json else "\t".join(str(v) for v in row.values()))


def discover() -> dict[str, type[Filter]]:
    """Every installed filter class by name (built-ins are registered the same way)."""
    found: dict[str, type[Filter]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.load()
    return found
