from __future__ import annotations

import gzip
import math

import numpy as np

from broker.batch import DETECTION, FORCED, UPPER_LIMIT, mag_to_njy
from broker.surveys import normalise
from tests.conftest import FIXTURES


def _one(decoder, *parts):
    msg = decoder.decode(FIXTURES.joinpath(*parts).read_bytes())
    return [normalise(r, msg) for r in msg.records], msg


def test_ztf_units_and_history(decoder):
    (alert,), msg = _one(decoder, "ztf", "ztf-avro-alert", "v3.3", "472263571115115000.avro")
    cand = msg.records[0]["candidate"]
    assert alert.survey == "ztf" and alert.object_id == "ZTF17aaajnnn"
    assert alert.alert_id == 472263571115115000 and alert.schema_version == "3.3"
    assert alert.columns["mjd"] == cand["jd"] - 2400000.5
    sign = 1 if cand["isdiffpos"] in ("t", "1") else -1
    assert math.isclose(alert.columns["flux"], sign * 10 ** (-0.4 * (cand["magpsf"] - 31.4)))
    assert alert.columns["channel_id"] == cand["rcid"] and alert.band == {1: "g", 2: "r", 3: "i"}[cand["fid"]]
    # prv_candidates plus the detection itself; limits have NaN flux and a finite error.
    assert len(alert.lc_time) == len(msg.records[0]["prv_candidates"]) + 1
    kinds = np.array(alert.lc_kind)
    fluxes = np.array(alert.lc_flux)
    assert np.all(np.isnan(fluxes[kinds == UPPER_LIMIT])) and np.all(np.isfinite(fluxes[kinds == DETECTION]))


def test_ztf_history_loop_matches_the_per_point_rules():
    """ztf._add_history inlines _point_flux, _ref_flux and add_point for speed: on the odd
    values real packets carry (sentinel magnitudes, upper limits, negative or missing errors,
    spelled-out signs, far or absent reference sources, missing times) it gives the same points,
    bit for bit, as those rules applied one point at a time."""
    from broker.batch import NormalisedAlert
    from broker.surveys import ztf

    points = [
        {"jd": 2459000.5, "magpsf": 18.2, "sigmapsf": 0.05, "isdiffpos": "t", "fid": 1, "magnr": 16.0, "distnr": 0.4},
        {"jd": 2459001.5, "magpsf": 19.0, "sigmapsf": 0.1, "isdiffpos": "0", "fid": 2, "magnr": 16.0, "distnr": 2.0},
        {"jd": 2459002.5, "magpsf": None, "diffmaglim": 20.5, "fid": 3},
        {"jd": 2459003.5, "magpsf": None, "diffmaglim": None, "fid": 4},
        {"jd": 2459004.5, "magpsf": 99.0, "sigmapsf": 0.1, "isdiffpos": "TRUE", "fid": 1},
        {"jd": 2459005.5, "magpsf": 17.0, "sigmapsf": -1.0, "isdiffpos": None, "fid": None, "magnr": -99.0, "distnr": 0.1},
        {"jd": 2459006.5, "magpsf": 17.0, "sigmapsf": None, "isdiffpos": "f", "fid": 2, "magnr": None, "distnr": 0.1},
        {"jd": float("inf"), "magpsf": 17.0}, {"jd": None, "magpsf": 17.0}, {"magpsf": 17.0},
        {"jd": 2459007, "magpsf": float("nan"), "sigmapsf": 0.1, "isdiffpos": "1", "fid": 1},
    ]
    fast = NormalisedAlert("ztf", "o", 1, "3.3", {}, "g")
    ztf._add_history(fast, points)
    slow = NormalisedAlert("ztf", "o", 1, "3.3", {}, "g")
    for p in points:
        if p.get("jd") is not None:
            flux, err, kind = ztf._point_flux(p)
            slow.add_point(p["jd"] - ztf.JD_TO_MJD, flux, err, ztf.FID_BAND.get(p.get("fid")), kind, ztf._ref_flux(p))
    assert len(fast.lc_time) == 8
    for name in ("lc_time", "lc_flux", "lc_flux_err", "lc_band", "lc_kind", "lc_ref_flux"):
        a, b = getattr(fast, name), getattr(slow, name)
        assert [type(v) for v in a] == [type(v) for v in b], name
        assert np.array_equal(np.array(a, float), np.array(b, float), equal_nan=True), name


def test_ztf_cutouts_stay_compressed_until_asked(decoder, sample_batch):
    (alert,), _ = _one(decoder, "ztf", "ztf-avro-alert", "v3.3", "472263571115115000.avro")
    assert alert.cutouts["Science"][:2] == b"\x1f\x8b"
    i = int(np.flatnonzero(sample_batch.alert_id == 472263571115115000)[0])
    fits = sample_batch.cutout(i, "Science")
    assert fits[:6] == b"SIMPLE" and fits == gzip.decompress(alert.cutouts["Science"])


def test_ztf_forced_photometry_v402(decoder):
    path = next((FIXTURES / "ztf" / "alerce_v4.02").glob("*.avro"))
    (alert,), msg = _one(decoder, "ztf", "alerce_v4.02", path.name)
    assert alert.schema_version == "4.02"
    assert FORCED in alert.lc_kind


def test_lsst_units(decoder):
    path = next((FIXTURES / "lsst" / "alerce_lsstcam_v9.0").glob("*.avro"))
    (alert,), msg = _one(decoder, "lsst", "alerce_lsstcam_v9.0", path.name)
    ds = msg.records[0]["diaSource"]
    assert alert.survey == "lsst" and alert.schema_version == "9.0"
    assert alert.alert_id == msg.records[0]["diaSourceId"]
    assert alert.object_id == str(ds["diaObjectId"])
    assert alert.columns["flux"] == ds["psfFlux"] and alert.columns["mjd"] == ds["midpointMjdTai"]
    assert alert.columns["exposure_id"] == ds["visit"] and alert.columns["channel_id"] == ds["detector"]
    assert alert.cutouts["Science"][:6] == b"SIMPLE"


def test_broker_rewrites_keep_their_version(decoder):
    files = sorted((FIXTURES / "lsst" / "fink_lsstcam_v9.0").glob("*.avro"))
    (alert,), msg = _one(decoder, "lsst", "fink_lsstcam_v9.0", files[0].name)
    assert msg.schema_name == "topLevelRecord" and alert.schema_version == "9.0"
    alerts, msg = _one(decoder, "ztf", "alerce_snappy", sorted((FIXTURES / "ztf" / "alerce_snappy").iterdir())[0].name)
    assert alerts[0].alert_id == msg.records[0]["candidate"]["candid"]  # no top-level candid


def test_batch_is_columnar_and_padded(sample_batch):
    b = sample_batch
    assert b.n == len(b.alert_id) == len(b.survey) == b.lc.time.shape[0]
    assert b.lc.time.shape[1] == b.lc.length.max()
    for i in range(b.n):
        m = b.lc.length[i]
        assert np.all(np.isnan(b.lc.time[i, m:])) and np.all(np.diff(b.lc.time[i, :m]) >= 0)
    assert np.isnan(b.column("no_such_column")).all()
    sub = b.subset(np.array([3, 1]))
    assert list(sub.alert_id) == [b.alert_id[3], b.alert_id[1]]


def test_absurd_magnitudes_become_nan():
    assert math.isnan(mag_to_njy(1e6)) and math.isnan(mag_to_njy(None))
    assert math.isclose(mag_to_njy(31.4), 1.0)


def test_lsst_version_recovered_from_the_field_set(decoder):
    path = sorted((FIXTURES / "lsst" / "fink_unverified_v7.4").glob("*.avro"))[0]
    (alert,), msg = _one(decoder, "lsst", "fink_unverified_v7.4", path.name)
    assert msg.schema_name == "topLevelRecord" and "lsst_schema_version" not in msg.records[0]
    assert alert.schema_version == "7.4"


def test_batch_columns_and_histories_are_each_alerts_own(decoder):
    """ZTF and LSST alerts of several schema versions in one batch: every column value is
    that alert's (NaN where its schema lacks the field), every history its own, time-sorted."""
    from broker.batch import AlertBatch
    from broker.surveys import decode_alerts

    alerts = decode_alerts((p.read_bytes() for p in sorted(FIXTURES.rglob("*.avro"))), decoder)
    b = AlertBatch(alerts)
    assert len({tuple(a.columns) for a in alerts}) > 2 and set(b.survey) == {"ztf", "lsst"}
    for i, a in enumerate(alerts):
        for k, col in b.columns.items():
            assert np.array_equal(col[i], float(a.columns.get(k, np.nan)), equal_nan=True), (i, k)
        order = np.argsort(a.lc_time, kind="stable")
        m = len(order)
        assert b.lc.length[i] == m
        assert np.array_equal(b.lc.time[i, :m], np.asarray(a.lc_time, float)[order], equal_nan=True)
        assert np.array_equal(b.lc.flux[i, :m], np.asarray(a.lc_flux, float)[order], equal_nan=True)
        assert np.array_equal(b.lc.band[i, :m], np.asarray(a.lc_band)[order])
        assert np.array_equal(b.lc.ref_flux[i, :m], np.asarray(a.lc_ref_flux, float)[order], equal_nan=True)
