"""metrics.observe_many fills a histogram exactly as one observe() per value does."""
from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from broker.metrics import observe_many


def _samples(h):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in h.collect() for s in m.samples
            if not s.name.endswith("_created")}


def test_observe_many_matches_observe():
    rng = np.random.default_rng(3)
    bounds = (0.0005, 0.001, 0.01, 0.1, 0.5, 1, 2.5, 60)
    values = np.concatenate([rng.exponential(0.5, 2000), bounds, [0.0, 1e9, -1.0]])
    one, many = (Histogram("h", "h", ["f"], buckets=bounds, registry=CollectorRegistry()) for _ in range(2))
    for v in values.tolist():
        one.labels(f="x").observe(v)
    observe_many(many.labels(f="x"), values[:1000])
    observe_many(many.labels(f="x"), values[1000:])
    observe_many(many.labels(f="x"), [])
    a, b = _samples(one), _samples(many)
    assert a.keys() == b.keys()
    for k in a:
        assert np.isclose(a[k], b[k], rtol=1e-12), k
