from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from broker.batch import AlertBatch
from filters.badamp.features import channel_context, detection_feature_names
from filters.lightcurve_features import snad_feature_names
from filters.badamp.filter import BadampFilter
from filters.badamp.inject import make_exposures, pool_from_batch
from filters.base import FilterContext
from filters.evaluation import fit_isotonic, psi, psi_reference, recall_at_fpr
from tests.conftest import shared_or_skip

SNAD = ("labelled", "snad_akb", "akb_obj_features_snad4.csv")


@pytest.fixture(scope="module")
def badamp():
    f = BadampFilter()
    f.setup(FilterContext())
    return f


def test_snad_extractor_matches_the_labelled_table():
    with shared_or_skip(*SNAD).open() as fh:
        header = next(csv.reader(fh))
    assert snad_feature_names() == header[2:] and len(header[2:]) == 54


def test_every_sample_alert_scored_or_null_with_reason(badamp, sample_batch):
    res = badamp.score(sample_batch)
    res.validate(sample_batch.n, "badamp")
    scored = np.isfinite(res.score)
    assert scored[sample_batch.survey == "ztf"].all() and scored[sample_batch.survey == "lsst"].all()
    for i in np.flatnonzero(res.score > badamp.threshold):
        assert sum(k.startswith("shap:") for k in res.details[i]) == 3
    views = [d for d in res.details if "object_artefact_prob" in d]
    shorts = [d for d in res.details if str(d.get("object_view", "")).startswith("short_history")]
    assert views and shorts and all(0 <= d["object_artefact_prob"] <= 1 for d in views)


def test_channel_context_is_per_group_and_counts_duplicates_once():
    ids = np.r_[np.arange(30), np.arange(5)]  # five alerts delivered twice
    channel = np.r_[np.full(20, 5.0), np.arange(10.0, 20.0), np.full(5, 5.0)]
    rb = np.r_[np.full(20, 0.1), np.full(10, 0.9), np.full(5, 0.1)]
    group = np.zeros(35, dtype=np.int64)
    f = channel_context(group, channel, ids, rb, np.zeros(35, bool))
    assert f[0, 0] == 20 and f[20, 0] == 1 and f[0, 1] > 10 and f[0, 3] == pytest.approx(0.1)
    assert f[20, 2] == pytest.approx(1 / 30)
    # The same alerts split into two groups see only their own group; small groups are NaN.
    split = np.where(np.arange(35) < 25, 0, 1)
    g = channel_context(split, channel, ids, rb, np.zeros(35, bool))
    assert g[0, 0] == 20 and np.isnan(g[30]).all()
    assert np.isnan(channel_context(np.full(35, -1), channel, ids, rb, np.zeros(35, bool))).all()


def test_channel_context_matches_its_definition_channel_by_channel():
    """The vectorised statistics equal np.median / np.mean taken channel by channel, with NaN
    scores, channels without a finite score, duplicates and several groups."""
    rng = np.random.default_rng(7)
    n = 600
    group = rng.integers(-1, 4, n)
    channel = rng.integers(0, 40, n).astype(float)
    channel[rng.random(n) < 0.03] = np.nan
    channel[group == 3] = 99.0  # one channel with every score NaN
    ids = np.arange(n)
    dup = rng.choice(n, 60, replace=False)  # a producer's duplicates: same alert, same channel
    ids[dup[:30]] = ids[dup[30:]]
    channel[dup[:30]] = channel[dup[30:]]
    group[dup[:30]] = group[dup[30:]]
    ids[dup[:3]] = ids[dup[3:6]] = 10_000 + np.arange(3)  # and three claiming another channel
    rb = rng.random(n)
    rb[(rng.random(n) < 0.2) | (group == 3)] = np.nan
    negative = rng.random(n) < 0.3
    got = channel_context(group, channel, ids, rb, negative)
    for g in range(4):
        rows = np.flatnonzero((group == g) & np.isfinite(channel))
        _, first = np.unique(ids[rows], return_index=True)
        uniq = rows[np.sort(first)]
        counts = {c: int((channel[uniq] == c).sum()) for c in np.unique(channel[uniq])}
        median = np.median(list(counts.values()))
        for i in rows:
            if channel[i] not in counts:  # a duplicate id on another channel than its first copy
                assert np.isnan(got[i]).all()
                continue
            members = uniq[channel[uniq] == channel[i]]
            r = rb[members][np.isfinite(rb[members])]
            want = [counts[channel[i]], counts[channel[i]] / median, counts[channel[i]] / len(uniq),
                    np.median(r) if len(r) else np.nan, np.mean(negative[members]),
                    np.mean(r < 0.5) if len(r) else np.nan]
            np.testing.assert_array_equal(got[i], want)
    assert np.isnan(got[(group < 0) | ~np.isfinite(channel)]).all()
    assert np.isnan(got[group == 3, 3]).all() and np.isfinite(got[group == 3, 0]).all()


def test_injector_labels_bursts_in_one_channel(sample_batch):
    pool = pool_from_batch(sample_batch, "ztf")
    ex = make_exposures(pool, 30, seed=1)
    bad = ex["label"] == 1
    assert 0 < bad.mean() < 0.5
    for e in np.unique(ex["exposure_id"][bad]):
        assert len(np.unique(ex["channel_id"][bad & (ex["exposure_id"] == e)])) == 1
    assert 0.2 < ex["subtle"][bad].mean() < 0.6
    assert np.nanmedian(ex["rb"][bad & (ex["subtle"] == 0)]) < np.nanmedian(ex["rb"][~bad])


def test_failing_channel_scores_above_its_exposure(badamp, sample_batch):
    """Real ZTF detections in one exposure, plus a burst of degraded copies on one channel."""
    from broker.batch import NormalisedAlert

    rows = np.flatnonzero(sample_batch.survey == "ztf")[:200]
    rng = np.random.default_rng(3)
    alerts = []
    for k, i in enumerate(rows):
        cols = {name: float(v[i]) for name, v in sample_batch.columns.items()}
        cols.update(exposure_id=9e9, channel_id=float(rng.integers(0, 64)))
        alerts.append(NormalisedAlert("ztf", "o", 10**12 + k, "3.3", cols, "r"))
    for k in range(60):
        cols = {name: float(v[rows[k]]) for name, v in sample_batch.columns.items()}
        cols.update(exposure_id=9e9, channel_id=13.0, rb=0.15, drb=0.02, elong=1.9, nbad=3.0, isdiffpos=0.0)
        alerts.append(NormalisedAlert("ztf", "o", 2 * 10**12 + k, "3.3", cols, "r"))
    res = badamp.score(AlertBatch(alerts))
    normal, burst = res.score[:len(rows)], res.score[len(rows):]
    assert len(rows) > 50 and len(burst) == 60
    assert np.median(burst) > 0.9 and np.median(normal) < 0.1


def test_tiny_object_training_and_score_command(tmp_path):
    from filters.badamp.train_object import select_candidate, train_object_model

    src = shared_or_skip(*SNAD)
    rows = list(csv.DictReader(src.open()))
    rng = np.random.default_rng(0)
    pick = rng.choice(len(rows), 500, replace=False)
    small = tmp_path / "snad_small.csv"
    with small.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows[i] for i in pick)
    result = train_object_model(small, tmp_path, max_evals=2, folds=3, repeats=1, log=lambda *_: None,
                                candidates=("default", "standard_bagged"))
    m = result["metrics"]
    assert m["test_auc"] > 0.8 and m["test_auc_ci95"][0] < m["test_auc"] < m["test_auc_ci95"][1]
    assert set(m["candidates"]) == {"default", "standard_bagged"} and len(m["candidates"]["default"]["outer_aucs"]) == 3
    assert m["selected"] == select_candidate(m["candidates"])
    for name in ("object_model_0.ubj", "object_calibration.json", "object_reference.json"):
        assert (tmp_path / name).exists()
    out = subprocess.run([sys.executable, "-m", "broker.tools.cli", "score", "badamp", "--snad-features", str(small),
                          "--json", "--model-dir", str(tmp_path)], capture_output=True, text=True, check=True)
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(lines) == 500 and {"oid", "score"} == set(lines[0])
    assert lines[0]["oid"] == int(rows[pick[0]]["oid"]) and 0 <= lines[0]["score"] <= 1


def test_psi_and_recall_helpers():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5000, 1))
    ref = psi_reference(a, ["x"])
    assert psi(ref["x"], rng.normal(size=5000)) < 0.02
    assert psi(ref["x"], rng.normal(1.5, 1, size=5000)) > 0.25
    y = np.r_[np.zeros(1000), np.ones(100)]
    assert recall_at_fpr(y, np.r_[np.zeros(1000), np.ones(100)], 0.01)[0] == 1.0
    cal = fit_isotonic(np.linspace(0, 1, 100), (np.linspace(0, 1, 100) > 0.5).astype(float))
    assert cal["y"][0] == 0.0 and cal["y"][-1] == 1.0


def test_feature_name_lists():
    assert len(detection_feature_names("ztf")) >= 12 + 6 and len(detection_feature_names("lsst")) >= 12 + 6


def test_real_lsstcam_alerts_of_v9_and_v10_scored_with_figures(badamp, tmp_path):
    pytest.importorskip("pyarrow")
    from filters.badamp.lsst_check import REAL_LSSTCAM, lsst_channel_check, real_lsstcam_batch

    shared_or_skip(REAL_LSSTCAM[0].replace("../shared/data/", ""))
    batch = real_lsstcam_batch()
    assert {"9.0", "10.0"} <= set(batch.schema_version) and (batch.survey == "lsst").all()
    r = lsst_channel_check(badamp, batch, tmp_path)
    assert r["scored"] == r["alerts"] == batch.n
    assert sum(v["alerts"] for v in r["per_detector"].values()) == batch.n
    assert all((tmp_path / f).stat().st_size > 1000 for f in r["figures"])


def test_one_standard_error_rule_takes_the_cheapest_candidate_within_reach():
    from filters.badamp.train_object import select_candidate, tree_cost

    def verdict(mean, sd=0.008, folds=10):
        return {"outer_auc_mean": mean, "outer_auc_std": sd, "outer_aucs": [mean] * folds}

    # sd 0.008 over 10 folds: one standard error is 0.00253
    judged = {"default": verdict(0.9377), "standard": verdict(0.9418), "standard_bagged": verdict(0.9426),
              "slow_bagged": verdict(0.9437)}
    assert tree_cost("standard", {}) < tree_cost("standard_bagged", {}) < tree_cost("slow_bagged", {})
    assert select_candidate(judged) == "standard"
    judged["standard"] = verdict(0.9410)  # just outside: the cheapest within reach is now the 5-seed bag
    assert select_candidate(judged) == "standard_bagged"
    assert select_candidate({"slow_bagged": verdict(0.95, sd=0.0)} | {"standard": verdict(0.9499, sd=0.0)}) == "slow_bagged"
