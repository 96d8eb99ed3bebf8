from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from broker.batch import FORCED, AlertBatch, NormalisedAlert
from filters.transit.bls import bls, period_grid
from filters.transit.lightcurve import LightCurve, detrend, prepare, robust_std
from filters.transit.readers import load
from filters.transit.search import find_candidates
from filters.transit.simulate import simulate
from filters.transit.train import period_matches
from tests.conftest import shared_or_skip

K2_3 = ("lightcurves", "k2_tls", "EPIC201367065.csv")
K2_3_PLANETS = (10.05, 24.65, 44.56)


@pytest.fixture(scope="module")
def k2_3():
    return load(shared_or_skip(*K2_3))


def test_torch_bls_matches_astropy(k2_3):
    from astropy.timeseries import BoxLeastSquares

    lc = detrend(k2_3)
    periods = period_grid(lc.time.max() - lc.time.min())
    ours = bls(lc.time, lc.flux, lc.flux_err, periods)
    res = BoxLeastSquares(lc.time, lc.flux, lc.flux_err).power(periods, [0.05, 0.08, 0.12, 0.16, 0.2])
    theirs = res.period[np.argmax(res.power)]
    assert abs(ours.period - theirs) / theirs < 0.002
    assert ours.depth == pytest.approx(res.depth[np.argmax(res.power)], rel=0.25)


def test_torch_bls_on_a_simulated_transit():
    sims = [s for s in simulate(40, seed=5) if s.label == 1 and s.cadence == "k2" and s.snr > 30]
    assert sims
    for s in sims[:3]:
        lc = detrend(s.lc)
        c = find_candidates(lc, max_candidates=1)[0]
        assert period_matches(c.period, s.period), (c.period, s.period)


def test_k2_3_planets_are_recovered_after_masking(k2_3):
    cands = find_candidates(detrend(k2_3))
    found = [c.period for c in cands]
    assert any(abs(p - 10.05) / 10.05 < 0.01 for p in found)
    assert any(abs(p - 24.65) / 24.65 < 0.01 for p in found)
    best = cands[0]
    assert best.n_transits >= 3 and best.odd_even_sigma < 3 and best.snr > 50


def test_simulation_is_deterministic_and_labelled():
    a, b = simulate(20, seed=11), simulate(20, seed=11)
    assert [x.kind for x in a] == [x.kind for x in b]
    assert np.array_equal(a[0].lc.flux, b[0].lc.flux)
    assert {x.label for x in a} == {0, 1}
    assert all(np.isfinite(x.snr) for x in a if x.label)


def test_detrending_a_survey_cadence_keeps_noise_and_dips():
    """Several visits a night: the running median must span many points, not a few, or it
    follows each point, shrinks the scatter and fills in the dips."""
    rng = np.random.default_rng(3)
    nights = np.sort(rng.choice(200, 450, replace=True)).astype(float)
    t = nights + rng.uniform(-0.1, 0.1, len(nights))
    sigma = 0.005
    flux = 1 + rng.normal(0, sigma, len(t))
    in_transit = np.abs(np.remainder(t - 1.0 + 3.5, 7.0) - 3.5) < 0.08
    flux[in_transit] -= 0.02
    lc = detrend(LightCurve(t, flux, np.full(len(t), sigma)))
    rel = lc.flux - 1
    out = ~np.isin(lc.time, t[in_transit])
    assert 1.4826 * np.median(np.abs(rel[out] - np.median(rel[out]))) == pytest.approx(sigma, rel=0.15)
    assert (~out).sum() >= 10 and np.mean(rel[~out]) == pytest.approx(-0.02, abs=0.004)


def _nightly(seed: int, n: int = 300):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.choice(240, n, replace=True)).astype(float) + rng.uniform(-0.1, 0.1, n)
    return rng, t


def test_prewhitening_removes_undersampled_rotation_and_keeps_the_dips():
    """A 4.3-day rotation sampled once a night survives any running median holding enough
    points; the Lomb-Scargle term removes it, and the transit points do not pull the fit."""
    rng, t = _nightly(4)
    sigma = 0.004
    flux = 1 + 3 * sigma * np.sin(2 * np.pi * t / 4.3) + rng.normal(0, sigma, len(t))
    in_transit = np.abs(np.remainder(t - 0.5 + 2.9, 5.8) - 2.9) < 0.1
    flux[in_transit] -= 0.03
    raw = LightCurve(t, flux, np.full(len(t), sigma))
    assert robust_std(detrend(raw).flux - 1) > 1.5 * sigma
    clean = prepare(raw)
    assert robust_std(clean.flux - 1) == pytest.approx(sigma, rel=0.2)
    dips = np.isin(clean.time, t[in_transit])
    assert dips.sum() >= 5 and np.mean(clean.flux[dips] - 1) == pytest.approx(-0.03, abs=0.006)
    rng, t = _nightly(5)
    quiet = LightCurve(t, 1 + rng.normal(0, sigma, len(t)), np.full(len(t), sigma))
    assert np.array_equal(prepare(quiet).flux, detrend(quiet).flux)  # nothing significant: untouched


def test_single_event_share_tells_one_outlier_from_a_periodic_dip():
    rng, t = _nightly(6, 400)
    sigma = 0.003
    planet = 1 + rng.normal(0, sigma, len(t))
    planet[np.abs(np.remainder(t - 0.3 + 1.6, 3.2) - 1.6) < 0.07] -= 0.02
    one_off = 1 + rng.normal(0, sigma, len(t))
    one_off[[40, 41]] -= 0.05
    one_off[np.abs(np.remainder(t - 0.3 + 1.6, 3.2) - 1.6) < 0.07] -= 0.002
    shares = []
    for flux in (planet, one_off):
        c = find_candidates(detrend(LightCurve(t, flux, np.full(len(t), sigma))), max_candidates=1)[0]
        shares.append(c.max_single_event_share)
    assert shares[0] < 0.3 < 0.6 < shares[1]


def test_harmonics_count_as_recovered_periods():
    assert period_matches(19.536 / 4, 19.536) and period_matches(3 * 5.0, 5.0)
    assert not period_matches(19.536 / 4.5, 19.536) and not period_matches(1.5 * 5.0, 5.0)


def _alert_from(lc: LightCurve) -> AlertBatch:
    alert = NormalisedAlert("lsst", "k2-3", 1, "9.0", {"mjd": float(lc.time[-1])}, "r")
    for t, f, e in zip(lc.time, lc.flux * 1e5, lc.flux_err * 1e5 if np.isfinite(lc.flux_err).any() else np.full(len(lc), 10.0)):
        alert.add_point(t, f, e, "r", FORCED)
    short = NormalisedAlert("ztf", "ZTFx", 2, "3.3", {"mjd": 1.0}, "g")
    for t in range(5):
        short.add_point(float(t), 100.0, 1.0, "g", FORCED)
    return AlertBatch([alert, short])


def test_filter_scores_a_long_history_and_nulls_a_short_one(k2_3):
    from filters.base import FilterContext
    from filters.transit import TransitFilter

    f = TransitFilter()
    f.setup(FilterContext())
    res = f.score(_alert_from(k2_3))
    res.validate(2, "transit")
    assert np.isfinite(res.score[0]) and any(period_matches(res.details[0]["period_days"], p) for p in K2_3_PLANETS)
    assert np.isnan(res.score[1]) and res.reason[1].startswith("too_few_points")


def test_score_command_csv_fits_combine_and_plot(k2_3, tmp_path):
    from astropy.io import fits

    path = shared_or_skip(*K2_3)
    cols = [fits.Column("TIME", "D", array=k2_3.time), fits.Column("PDCSAP_FLUX", "E", array=k2_3.flux),
            fits.Column("PDCSAP_FLUX_ERR", "E", array=np.full(len(k2_3), 1e-4)),
            fits.Column("QUALITY", "J", array=np.zeros(len(k2_3), int))]
    fpath = tmp_path / "k2_3.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="LIGHTCURVE")]).writeto(fpath)
    half = len(k2_3) // 2
    parts = []
    for i, sl in enumerate((slice(0, half), slice(half, None))):
        p = tmp_path / f"part{i}.csv"
        p.write_text("time,flux\n" + "\n".join(f"{t},{f * (1.1 if i else 1.0)}" for t, f in zip(k2_3.time[sl], k2_3.flux[sl])))
        parts.append(str(p))
    run = lambda *a: subprocess.run([sys.executable, "-m", "broker.tools.cli", "score", "transit", *a, "--json"],  # noqa: E731
                                    capture_output=True, text=True, check=True).stdout.splitlines()
    bad = tmp_path / "notes.bin"
    bad.write_bytes(b"\x00\xff\x10 not a light curve")
    rows = [json.loads(x) for x in run(str(bad), str(path), str(fpath), "--plot", str(tmp_path / "plots"))]
    assert rows[0]["score"] is None and rows[0]["reason"].startswith("unreadable: notes.bin")
    rows = rows[1:]
    assert len(rows) == 2 and all(period_matches(r["period_days"], 10.05) for r in rows)
    assert {"file", "score", "period_days", "epoch", "depth", "duration_hours", "vetting", "snr"} <= set(rows[0])
    assert (tmp_path / "plots" / "EPIC201367065.png").exists()
    combined = [json.loads(x) for x in run(*parts, "--combine")]
    assert len(combined) == 1 and period_matches(combined[0]["period_days"], 10.05)


def test_tiny_training_writes_weights_metrics_and_card(tmp_path):
    from filters.transit.train import train_transit

    m = train_transit(str(tmp_path), n_train=40, n_test=40, epochs=1, members=2, log=lambda *_: None, real_check="",
                      devset=False)
    for name in ("transit_cnn.pt", "transit_calibration.json", "transit_metrics.json", "MODEL_CARD.md",
                 "transit_roc.png", "transit_recall_vs_snr.png"):
        assert (tmp_path / name).exists(), name
    from filters.transit.filter import TransitScorer

    scorer = TransitScorer(model_dir=tmp_path)  # the ensemble's size is read from the weights
    assert len(scorer.model.members) == 2 and m["members"] == 2
    assert 0 <= m["auc"] <= 1 and m["test_seed"] != m["seed"] and m["n"] > 0
    # Reported again on freshly searched light curves (as after a search change): the weights
    # stay, calibration, metrics and card are rewritten, the training setup is kept.
    from filters.transit.train import reevaluate_transit

    weights = (tmp_path / "transit_cnn.pt").read_bytes()
    (tmp_path / "MODEL_CARD.md").unlink()
    again = reevaluate_transit(str(tmp_path), n_test=40, log=lambda *_: None, real_check="", devset=False)
    assert (tmp_path / "transit_cnn.pt").read_bytes() == weights and (tmp_path / "MODEL_CARD.md").exists()
    assert again["auc"] == pytest.approx(m["auc"]) and again["n_train"] == m["n_train"] and again["members"] == 2


def test_training_cache_builds_once_and_reuses(tmp_path, monkeypatch):
    from filters.transit import train

    calls = []

    def fake_build(n, seed, workers=2, cadence_weights=(0.6, 0.2, 0.2)):
        calls.append((n, seed, cadence_weights))
        return {"label": np.arange(n), "seed": seed}

    monkeypatch.setattr(train, "build_dataset", fake_build)
    first = train.cached_dataset(str(tmp_path), 5, 7, (0.5, 0.5, 0.0))
    again = train.cached_dataset(str(tmp_path), 5, 7, (0.5, 0.5, 0.0))
    other = train.cached_dataset(str(tmp_path), 5, 8, (0.5, 0.5, 0.0))  # another seed: built anew
    assert calls == [(5, 7, (0.5, 0.5, 0.0)), (5, 8, (0.5, 0.5, 0.0))]
    assert np.array_equal(first["label"], again["label"]) and other["seed"] == 8
    assert train.cached_dataset(None, 3, 1)["seed"] == 1 and len(calls) == 3  # no folder: no cache
