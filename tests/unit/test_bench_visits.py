"""Rubin's cadence row of `bench e2e` offers LSST visits as one exposure each: the bundled real
alerts re-encoded with one visit id, every other field as it was, in both framings the samples
come in (Confluent wire format and container files)."""
from __future__ import annotations

import numpy as np

from broker.codec import Decoder
from broker.schema_store import SchemaResolver
from broker.surveys import decode_alerts
from broker.tools.bench_harness import SAMPLES, as_one_visit, payloads


def test_as_one_visit_changes_the_visit_id_only():
    values = payloads((str(SAMPLES / "lsst"),))
    decoder = Decoder(SchemaResolver())
    assert {decoder.decode(v).framing for v in values} == {"confluent", "ocf"}
    before = decode_alerts(values, decoder)
    after = decode_alerts(as_one_visit(values, 2026120700001), decoder)
    assert len(after) == len(before) == len(values)
    assert len({a.columns["exposure_id"] for a in before}) > 1
    assert {a.columns["exposure_id"] for a in after} == {2026120700001.0}
    for a, b in zip(before, after):
        assert (a.object_id, a.alert_id, a.schema_version) == (b.object_id, b.alert_id, b.schema_version)
        assert a.lc_time == b.lc_time and a.lc_flux == b.lc_flux and a.cutouts == b.cutouts
        same = {k for k in a.columns if np.array_equal(a.columns[k], b.columns[k], equal_nan=True)}
        assert set(a.columns) - same <= {"exposure_id", "visit"}
