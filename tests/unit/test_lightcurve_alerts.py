"""Real K2 light curves replayed as LSST-format alert histories (the demo's long histories), and
the LSST total flux (``scienceFlux``) that transit searches need."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from broker.batch import FORCED, AlertBatch
from broker.codec import Decoder
from broker.schema_store import SchemaResolver
from broker.surveys import decode_alerts
from broker.tools.lightcurve_alerts import kepler_csv_alerts, read_two_column_csv

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TEMPLATE = FIXTURES / "alerts" / "lsst" / "alerce_lsstcam_v9.0" / "sample_v9.avro"


def test_a_k2_light_curve_becomes_an_alert_history_in_total_flux():
    paths = sorted((FIXTURES / "lightcurves").glob("*.csv"))
    made = kepler_csv_alerts(TEMPLATE.read_bytes(), paths)
    batch = AlertBatch(decode_alerts([m[3] for m in made], Decoder(SchemaResolver())))
    assert batch.n == len(paths) == 2 and list(batch.alert_id) == [m[0] for m in made]
    for i, path in enumerate(paths):
        _, rel = read_two_column_csv(path)
        n = batch.lc.length[i]
        forced = batch.lc.kind[i, :n] == FORCED
        assert forced.sum() == len(rel)
        total = (batch.lc.flux[i, :n] + batch.lc.ref_flux[i, :n])[forced]
        assert np.allclose(np.sort(total), np.sort(rel * 20_000.0), rtol=1e-5)
        assert np.allclose(np.sort(batch.lc.flux[i, :n][forced]), np.sort((rel - 1) * 20_000.0), atol=0.05)


def test_a_real_lsstcam_alert_carries_its_total_flux():
    """sample_v9: psfFlux -60413.03 nJy (difference), scienceFlux 1872392.1 nJy (total)."""
    batch = AlertBatch(decode_alerts([TEMPLATE.read_bytes()], Decoder(SchemaResolver())))
    flux, ref = batch.lc.flux[0, 0], batch.lc.ref_flux[0, 0]
    assert flux == np.float64(np.float32(-60413.03125)) and abs(flux + ref - 1872392.125) < 1e-3


def test_transit_says_which_flux_its_light_curve_is():
    from filters.base import FilterContext
    from filters.transit.filter import TransitFilter

    made = kepler_csv_alerts(TEMPLATE.read_bytes(), sorted((FIXTURES / "lightcurves").glob("EPIC2013*.csv")))
    batch = AlertBatch(decode_alerts([m[3] for m in made] + [TEMPLATE.read_bytes()], Decoder(SchemaResolver())))
    f = TransitFilter()
    f.setup(FilterContext())
    r = f.score(batch)
    assert r.details[0]["flux"] == "total" and abs(r.details[0]["period_days"] - 10.05) < 0.05
    assert r.details[1]["flux"] == "total" and r.reason[1].startswith("too_few_points")
