"""Filters that misbehave on purpose, for the fault suite. They are registered as a real
third-party plugin would be (an entry point in a ``.dist-info`` folder on ``sys.path``, see
:func:`plugin_path`), so the pipeline runs them exactly as it runs any filter.

Which alerts they misbehave on is decided by the alert id (``alert_id % 7 == 3``), so a
test knows in advance which alerts must come out null and which scored.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from broker.batch import AlertBatch
from filters.base import Filter, FilterResult


def poisoned(alert_ids) -> np.ndarray:
    return np.asarray(alert_ids, dtype=np.int64) % 7 == 3


class _Base(Filter):
    version = "0.0.1"
    fields = {"ztf": (), "lsst": ()}

    def _scores(self, batch: AlertBatch) -> np.ndarray:
        return (np.asarray(batch.alert_id, dtype=np.int64) % 100) / 100.0


class RaisesOnSome(_Base):
    """Raises for the whole batch whenever a poisoned alert is in it."""
    name = "raises"

    def score(self, batch):
        if poisoned(batch.alert_id).any():
            raise RuntimeError("cannot score this alert")
        return FilterResult(self._scores(batch), [None] * batch.n)


class HangsOnSome(_Base):
    """Sleeps far past the runtime's deadline whenever a poisoned alert is in the batch."""
    name = "hangs"

    def score(self, batch):
        if poisoned(batch.alert_id).any():
            time.sleep(float(self.context.options.get("hang_s", 5.0)))
        return FilterResult(self._scores(batch), [None] * batch.n)


class BadValues(_Base):
    """NaN without a reason and inf for poisoned alerts."""
    name = "badvalues"

    def score(self, batch):
        s = self._scores(batch)
        bad = np.flatnonzero(poisoned(batch.alert_id))
        s[bad[::2]] = np.nan
        s[bad[1::2]] = np.inf
        return FilterResult(s, [None] * batch.n, [{"x": np.float32(1.5), "y": float("inf")}] * batch.n)


class WrongLength(_Base):
    """One score too many whenever a poisoned alert is in the batch."""
    name = "wronglength"

    def score(self, batch):
        s = self._scores(batch)
        if poisoned(batch.alert_id).any():
            s = np.append(s, 0.5)
        return FilterResult(s, [None] * len(s))


CLASSES = [RaisesOnSome, HangsOnSome, BadValues, WrongLength]


def plugin_path(tmp: Path) -> Path:
    """A folder that, on ``sys.path``/``PYTHONPATH``, registers these filters by entry point."""
    info = tmp / "faulty_filters-0.0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: faulty-filters\nVersion: 0.0.1\n")
    lines = [f"{c.name} = tests.faults.faulty_filters:{c.__name__}" for c in CLASSES]
    (info / "entry_points.txt").write_text("[alert_broker.filters]\n" + "\n".join(lines) + "\n")
    return tmp
