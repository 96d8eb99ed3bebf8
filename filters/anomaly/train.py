"""``alert-broker train anomaly``: reference populations, the ensemble per survey, its
held-out evaluation against an isolation-forest reference, and the model card.

Everything judged here is held out: the ordinary test population and the injected anomalies
use seeds the model never saw, and the SNAD objects (real ZTF light curves, expert-labelled)
never enter the reference.
"""
from __future__ import annotations

import csv
import json
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from filters.anomaly.forest import IsolationForestArrays
from filters.anomaly.model import SurveyModel, fit_scale, robust_scale
from filters.anomaly.simulate import ANOMALIES, ORDINARY, population
from filters.lightcurve_features import snad_feature_names, snad_features

DEFAULT_SNAD = "../shared/data/labelled/snad_akb/akb_obj_features_snad4.csv"
DEFAULT_ALERTS = ["../shared/data/ztf/alerts", "../shared/data/ztf/fink-enriched", "../shared/data/lsst/alerts"]
# Calibration and test are large so the rarest rate (0.1%) is measured on ~100 objects each.
SIZES = {"reference": 10_000, "calibration": 100_000, "test": 100_000, "anomaly": 1_000}
RATES = (0.9, 0.99, 0.999)


def _features(item):
    _kind, t, mag, err = item
    try:
        return snad_features(t, mag, err)
    except ValueError:
        return None


def simulated(seed: int, kinds: tuple[str, ...], n: int, survey: str) -> np.ndarray:
    """Features of ``n`` simulated light curves (rows light-curve rejects are dropped)."""
    with Pool(2) as pool:
        rows = pool.map(_features, population(seed, kinds, n, survey), chunksize=256)
    return np.vstack([r for r in rows if r is not None])


def load_snad(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(object ids, features, label 1 = artefact) of the SNAD table."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if rows[0][2:] != snad_feature_names():
        raise ValueError(f"{path}: columns are not the SNAD r-band features")
    body = rows[1:]
    return (np.array([r[0] for r in body]), np.array([[float(v) for v in r[2:]] for r in body]),
            np.array([int(r[1]) for r in body]))


def fit_survey(survey: str, seed: int, sizes: dict, log=print) -> tuple[SurveyModel, dict, np.ndarray]:
    """The survey's model, its held-out populations (ordinary test, injected classes) and its
    scaled calibration population (kept for re-calibrating after feedback)."""
    log(f"[{survey}] simulating the ordinary reference and calibration populations")
    ref = simulated(seed, ORDINARY, sizes["reference"], survey)
    median, scale = fit_scale(ref)
    Z = robust_scale(ref, median, scale).astype(np.float16).astype(np.float32)  # as stored
    forest = IsolationForestArrays.fit(Z, trees=300, subsample=256, seed=seed)
    empty = np.empty((0, Z.shape[1]), np.float32)
    model = SurveyModel(snad_feature_names(), median, scale, Z, forest, empty, empty)
    calibration = calibrate(model, survey, seed, sizes)
    log(f"[{survey}] simulating held-out populations (other seeds)")
    held = {"ordinary": simulated(seed + 2, ORDINARY, sizes["test"], survey)}
    for j, kind in enumerate(ANOMALIES):
        held[kind] = simulated(seed + 100 + j, (kind,), sizes["anomaly"], survey)
    return model, held, calibration


def calibrate(model: SurveyModel, survey: str, seed: int, sizes: dict) -> np.ndarray:
    """(Re)calibrate on the survey's ordinary calibration population (seed + 1, deterministic);
    returns that population, scaled."""
    cal = model.scaled(simulated(seed + 1, ORDINARY, sizes["calibration"], survey))
    model.calibrate(cal)
    return cal


def evaluate(model: SurveyModel, held: dict, log=print) -> dict:
    """Rates above the thresholds on held-out ordinary objects; ROC AUC per injected class and
    overall, for the ensemble and for coniferest's isolation forest on the same features."""
    from coniferest.isoforest import IsolationForest
    from sklearn.metrics import roc_auc_score

    reference = IsolationForest(n_trees=300, n_subsamples=256, random_seed=7).fit(model.reference)
    scaled = {k: model.scaled(X) for k, X in held.items()}
    ours = {k: model.score(Z) for k, Z in scaled.items()}
    theirs = {k: -reference.score_samples(Z) for k, Z in scaled.items()}
    base = ours["ordinary"]
    rates = {f">={q}": {"expected": round(1 - q, 4), "observed": round(float((base >= q).mean()), 5)} for q in RATES}
    auc = {}
    classes = [k for k in held if k != "ordinary"]
    for name, s in (("ensemble", ours), ("isolation_forest", theirs)):
        per = {}
        for k in classes:
            y = np.r_[np.zeros(len(s["ordinary"])), np.ones(len(s[k]))]
            per[k] = round(float(roc_auc_score(y, np.r_[s["ordinary"], s[k]])), 4)
        every = np.concatenate([s[k] for k in classes])
        y = np.r_[np.zeros(len(s["ordinary"])), np.ones(len(every))]
        per["overall"] = round(float(roc_auc_score(y, np.r_[s["ordinary"], every])), 4)
        auc[name] = per
    log(f"  rates {rates}\n  AUC {auc}")
    return {"n_ordinary_test": int(len(base)), "n_per_class": {k: int(len(held[k])) for k in classes},
            "rates": rates, "roc_auc": auc, "scores": ours, "reference_scores": theirs}


def feedback_experiment(model: SurveyModel, calibration: np.ndarray, snad_X, snad_y, n_labels: int = 50,
                        seed: int = 0) -> dict:
    """Artefacts among the top 100 SNAD objects before and after ``n_labels`` artefacts are
    marked not interesting; counted on the objects not used as feedback."""
    import copy

    rng = np.random.default_rng(seed)
    labelled = rng.choice(np.flatnonzero(snad_y == 1), n_labels, replace=False)
    rest = np.setdiff1d(np.arange(len(snad_y)), labelled)
    Z = model.scaled(snad_X)

    def top_share(m) -> tuple[float, list]:
        top = rest[np.argsort(-m.raw(Z[rest]), kind="stable")[:100]]
        return float(snad_y[top].mean()), top

    before, _ = top_share(model)
    taught = copy.copy(model)
    taught.boring = Z[labelled]
    taught.calibrate(calibration)
    after, _ = top_share(taught)
    return {"labels": n_labels, "artefact_share_top100_before": round(before, 3),
            "artefact_share_top100_after": round(after, 3), "evaluated_objects": int(len(rest))}


def real_alert_check(models: dict, alerts: list[str]) -> dict:
    """Scores of the real alerts under ``alerts`` that have enough r-band history."""
    from filters.evaluation import real_alert_batch
    from filters.lightcurve_features import history_features

    batch = real_alert_batch([p for p in alerts if Path(p).exists()])
    h = history_features(batch)
    out = {}
    for survey, model in models.items():
        in_survey = batch.survey == survey
        keep = in_survey[h.rows]
        row = {"alerts": int(in_survey.sum()), "with_enough_history": int(keep.sum())}
        if keep.any():
            s = model.score(model.scaled(h.X[keep]))
            row |= {f"above_{q}": int((s >= q).sum()) for q in RATES}
            row["top"] = [{"object": str(batch.object_id[i]), "score": round(float(v), 4)}
                          for i, v in sorted(zip(h.rows[keep], s), key=lambda iv: -iv[1])[:5]]
        out[survey] = row
    return out


def top_list(model: SurveyModel, ids, X, y, n: int = 20) -> list[dict]:
    """The ``n`` most unusual SNAD objects with their label and the three features that drove them."""
    Z = model.scaled(X)
    raw, contrib = model.raw(Z, explain=True)
    score = model.score(Z)
    out = []
    for i in np.argsort(-raw, kind="stable")[:n]:
        why = [f"{model.names[j]}={X[i, j]:.3g}" for j in np.argsort(-contrib[i])[:3]]
        out.append({"oid": str(ids[i]), "label": "artefact" if y[i] else "real", "score": round(float(score[i]), 4),
                    "why": why})
    return out


def train_anomaly(out_dir: str, snad_csv: str = DEFAULT_SNAD, alerts: list[str] | None = None,
                  sizes: dict | None = None, seed: int = 2026, log=print) -> dict:
    from filters.anomaly.card import write_card

    sizes = sizes or SIZES
    out = Path(out_dir)
    folder = out / "v1"
    folder.mkdir(parents=True, exist_ok=True)
    snad_ids, snad_X, snad_y = load_snad(snad_csv)
    models, metrics, scores, seeds, calibration = {}, {}, {}, {}, {}
    for k, survey in enumerate(("ztf", "lsst")):
        seeds[survey] = seed + 1000 * k
        model, held, calibration[survey] = fit_survey(survey, seeds[survey], sizes, log)
        if survey == "ztf":  # SNAD artefacts: real ZTF light curves, never in the reference
            held["snad_artefact"] = snad_X[snad_y == 1]
        result = evaluate(model, held, log)
        scores[survey] = (result.pop("scores"), result.pop("reference_scores"))
        model.save(folder / f"{survey}.npz")
        models[survey], metrics[survey] = model, result
    log("feedback: 50 SNAD artefacts marked not interesting, 5 draws")
    feedback = [feedback_experiment(models["ztf"], calibration["ztf"], snad_X, snad_y, seed=s) for s in range(5)]
    meta = {"version": "v1", "parent": None, "surveys": ["ztf", "lsst"], "sizes": sizes, "seeds": seeds,
            "metrics": metrics, "feedback_experiment": feedback,
            "real_alerts": real_alert_check(models, alerts or DEFAULT_ALERTS),
            "top20_snad": top_list(models["ztf"], snad_ids, snad_X, snad_y)}
    (folder / "model.json").write_text(json.dumps(meta, indent=1))
    write_card(out, meta, scores)
    log(f"wrote {folder} and {out / 'MODEL_CARD.md'}")
    return meta


def apply_feedback(model_dir: str, labels_csv: str, features_csv: str | None, from_version: str | None,
                   out_dir: str | None = None, log=print) -> str:
    """A new model version beside the old: the ZTF model with the labelled objects as
    feedback (``oid,interesting`` with yes/no; features from the labels file itself when it
    has the SNAD columns, else from ``features_csv`` by object id). Returns the version."""
    from filters.anomaly.model import load_version, versions

    source = Path(model_dir)
    version, models, meta = load_version(source, from_version, "cpu")
    with open(labels_csv, newline="") as fh:
        labels = {r["oid"]: str(r["interesting"]).strip().lower() in ("yes", "1", "true", "y")
                  for r in csv.DictReader(fh)}
    ids, X, _ = load_snad(features_csv) if features_csv else _labels_with_features(labels_csv)
    index = {str(o): i for i, o in enumerate(ids)}
    missing = [o for o in labels if o not in index]
    if missing:
        raise ValueError(f"{len(missing)} labelled objects have no features, e.g. {missing[:3]}")
    model = models["ztf"]
    for flag, name in ((False, "boring"), (True, "interesting")):
        rows = [index[o] for o, v in labels.items() if v is flag]
        if rows:
            Z = model.scaled(X[rows])
            setattr(model, name, np.vstack([getattr(model, name), Z]))
    calibrate(model, "ztf", meta["seeds"]["ztf"], meta["sizes"])
    target = Path(out_dir or model_dir)
    new = f"v{int(versions(target)[-1][1:]) + 1}" if versions(target) else "v1"
    folder = target / new
    folder.mkdir(parents=True)
    for survey, m in models.items():
        m.save(folder / f"{survey}.npz")
    meta = {k: meta[k] for k in ("surveys", "sizes", "seeds")} | {
        "version": new, "parent": version, "feedback": {"file": str(labels_csv), "not_interesting":
                                                        int(len(model.boring)), "interesting": int(len(model.interesting))}}
    (folder / "model.json").write_text(json.dumps(meta, indent=1))
    log(f"wrote {folder} (from {version}: {meta['feedback']}); pin it with filters.anomaly.model_version")
    return new


def _labels_with_features(path: str):
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = snad_feature_names()
    if not rows or any(n not in rows[0] for n in names):
        raise ValueError(f"{path} has no SNAD feature columns: pass --features")
    return (np.array([r["oid"] for r in rows]), np.array([[float(r[n]) for n in names] for r in rows]), None)
