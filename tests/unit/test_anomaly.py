"""anomaly: the device-agnostic forest, rate calibration, explanations, feedback versions,
and features shared with badamp (computed once per batch)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from filters.anomaly.forest import IsolationForestArrays
from filters.anomaly.model import load_version, versions
from filters.anomaly.simulate import ANOMALIES, ORDINARY, population
from filters.base import FilterContext
from tests.conftest import shared_or_skip

SNAD = ("labelled", "snad_akb", "akb_obj_features_snad4.csv")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny model trained by the real training code on small populations (v1 + card)."""
    from filters.anomaly.train import train_anomaly

    out = tmp_path_factory.mktemp("anomaly")
    sizes = {"reference": 400, "calibration": 1500, "test": 1500, "anomaly": 60}
    meta = train_anomaly(str(out), str(shared_or_skip(*SNAD)), alerts=[], sizes=sizes, log=lambda *_: None)
    return out, meta


def test_forest_isolates_outliers():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 4)).astype(np.float32)
    forest = IsolationForestArrays.fit(X, trees=100, subsample=256, seed=1)
    inside, outside = forest.score(X[:200]), forest.score(np.full((5, 4), 6.0, np.float32))
    assert outside.min() > np.quantile(inside, 0.99) and 0 < inside.min() and outside.max() < 1


def test_simulated_classes_are_distinct_seeds():
    a = population(1, ORDINARY, 5, "ztf")
    b = population(2, ORDINARY, 5, "ztf")
    assert not np.array_equal(a[0][2][:5], b[0][2][:5])
    assert {k for k, *_ in population(3, ANOMALIES, 40, "lsst")} == set(ANOMALIES)


def test_training_writes_a_version_with_held_out_metrics(tiny):
    out, meta = tiny
    assert versions(out) == ["v1"] and (out / "MODEL_CARD.md").exists()
    for survey in ("ztf", "lsst"):
        m = meta["metrics"][survey]
        assert m["n_ordinary_test"] > 1000
        assert 0.05 < m["rates"][">=0.9"]["observed"] < 0.15  # calibrated to a rate on unseen objects
        assert m["roc_auc"]["ensemble"]["overall"] > 0.9
    assert "snad_artefact" in meta["metrics"]["ztf"]["roc_auc"]["ensemble"]
    assert len(meta["top20_snad"]) == 20 and len(meta["top20_snad"][0]["why"]) == 3


def test_feedback_writes_a_new_version_and_the_old_one_stays_pinnable(tiny, tmp_path):
    from filters.anomaly.train import load_snad

    out, _ = tiny
    ids, X, y = load_snad(str(shared_or_skip(*SNAD)))
    artefacts = np.flatnonzero(y == 1)[:30]
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["oid", "interesting"])
        w.writerows([ids[i], "no"] for i in artefacts)
    subprocess.run([sys.executable, "-m", "broker.tools.cli", "train", "anomaly", "--out", str(out), "--feedback",
                    str(labels), "--features", str(shared_or_skip(*SNAD))], check=True, capture_output=True)
    assert versions(out) == ["v1", "v2"]
    assert json.loads((out / "v2" / "model.json").read_text())["parent"] == "v1"
    _, old, _ = load_version(out, "v1", "cpu")
    _, new, _ = load_version(out, None, "cpu")
    m_old, m_new = old["ztf"], new["ztf"]
    Z = m_old.scaled(X[artefacts])
    assert (m_new.score(Z) < m_old.score(Z)).mean() > 0.8  # the labelled neighbourhood is pulled down
    out_json = subprocess.run([sys.executable, "-m", "broker.tools.cli", "score", "anomaly", "--snad-features",
                               str(shared_or_skip(*SNAD)), "--model-dir", str(out), "--model-version", "v1", "--json"],
                              capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(out_json) == len(ids) and json.loads(out_json[0])["model_version"] == "v1"


def test_filter_scores_long_histories_and_explains(tiny, sample_batch):
    from filters.anomaly.filter import AnomalyFilter

    out, _ = tiny
    f = AnomalyFilter()
    f.setup(FilterContext(model_dir=out, options={"model_version": "v1"}))
    res = f.score(sample_batch)
    res.validate(sample_batch.n, "anomaly")
    scored = np.flatnonzero(np.isfinite(res.score))
    assert len(scored) and ((res.score[scored] >= 0) & (res.score[scored] <= 1)).all()
    for i in scored:
        assert sum(k.startswith("why:") for k in res.details[i]) == 3 and res.details[i]["model_version"] == "v1"
    for i in np.flatnonzero(~np.isfinite(res.score)):
        assert res.reason[i].startswith(("short_history", "features_failed", "unsupported_survey"))


def test_badamp_and_anomaly_share_one_feature_computation(sample_batch, monkeypatch):
    import filters.lightcurve_features as lf
    from broker.filter_runner import FilterRunner

    calls = []
    real = lf.snad_features
    monkeypatch.setattr(lf, "snad_features", lambda *a: calls.append(1) or real(*a))
    runner = FilterRunner(["badamp", "anomaly"])
    batch = sample_batch.subset(np.arange(sample_batch.n))  # nothing cached by earlier tests
    results = runner.run(batch)
    with_history = int(np.isfinite(results["anomaly"].score).sum())
    assert with_history and len(calls) == with_history  # once per alert, not once per filter
