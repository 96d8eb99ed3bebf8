"""The history-length rows of `bench e2e` build their alerts from a real ZTF alert: the history
has the points asked for, one a night or spread over a fixed span."""
from __future__ import annotations

import numpy as np
import pytest

from broker.batch import AlertBatch
from broker.codec import Decoder
from broker.schema_store import SchemaResolver
from broker.surveys import decode_alerts
from broker.tools.bench import history_alert


def _history_times(payload: bytes) -> np.ndarray:
    batch = AlertBatch(decode_alerts([payload], Decoder(SchemaResolver())))
    t = batch.lc.time[0]
    return np.sort(t[np.isfinite(t)])


@pytest.mark.parametrize("points", [10, 1000])
def test_history_spans_one_night_per_point_or_the_span_asked_for(points):
    nightly = _history_times(history_alert(points))
    yearly = _history_times(history_alert(points, span_days=365.0))
    # the history's points plus the alert's own detection
    assert nightly.size == yearly.size == points + 1
    assert nightly[-2] - nightly[0] == pytest.approx(points - 1, abs=0.5)
    assert yearly[-2] - yearly[0] == pytest.approx(365.0 * (points - 1) / points, abs=0.5 * 365.0 / points)
    assert yearly[-1] - yearly[0] <= 365.0 + 1e-6
