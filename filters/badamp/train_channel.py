"""Detection + channel view: XGBoost on quality fields and per-channel context, trained on
injected failing-channel exposures (see inject.py), calibrated, and compared on held-out
exposures (other objects, other seed) with the survey's rule-based cut and with itself
without channel context (an ablation that shows what the stream context adds).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from broker.batch import AlertBatch
from filters.badamp.features import CONTEXT_FEATURES, detection_feature_names, detection_features
from filters.badamp.inject import make_exposures, pool_from_batch, split_by_object
from filters.evaluation import apply_isotonic, fit_isotonic, psi_reference, recall_at_fpr, roc_auc_ci

PARAMS = {"n_estimators": 300, "max_depth": 5, "learning_rate": 0.05, "subsample": 0.8,
          "colsample_bytree": 0.8, "min_child_weight": 2}


def features_of(exposures: dict[str, np.ndarray], survey: str, partitions: int = 1, seed: int = 0) -> np.ndarray:
    """Feature rows as the live filter computes them: each exposure run one group. With
    ``partitions`` > 1 each exposure's detections are dealt at random over that many input
    partitions, and each partition's share is a run of its own (what a consumer of a topic that
    is not keyed by exposure sees)."""
    n = len(exposures["label"])
    out = np.empty((n, len(detection_feature_names(survey))))
    ids = exposures["exposure_id"]
    part = np.random.default_rng(seed).integers(0, partitions, n)
    for e in np.unique(ids):
        rows = np.flatnonzero(ids == e)
        cols = {k: v[rows] for k, v in exposures.items()}
        out[rows] = detection_features(lambda k: cols.get(k, np.full(len(rows), np.nan)), rows, survey, part[rows])
    return out


def rule_cut_fails(exposures: dict[str, np.ndarray], survey: str) -> np.ndarray:
    """1 where the survey's rule-based cut rejects the detection (ZTF's "pure" cut)."""
    c = lambda k: exposures.get(k, np.full(len(exposures["label"]), np.nan))  # noqa: E731
    with np.errstate(invalid="ignore"):
        if survey == "ztf":
            ok = (c("rb") >= 0.65) & (c("nbad") == 0) & (c("fwhm") <= 5) & (c("elong") <= 1.2) & (np.abs(c("magdiff")) <= 0.1)
        else:
            flags = [k for k in exposures if k.startswith("pixelFlags_")]
            ok = (c("reliability") >= 0.5) & ~np.any([np.nan_to_num(c(f)) > 0 for f in flags], axis=0)
    return (~ok).astype(float)


def _fit(X, y, seed):
    import xgboost as xgb

    return xgb.XGBClassifier(tree_method="hist", n_jobs=2, random_state=seed, **PARAMS).fit(X, y)


def train_channel_model(batch: AlertBatch, survey: str, out_dir: str | Path, n_exposures: int = 400,
                        seed: int = 2026, log=print) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pool = pool_from_batch(batch, survey)
    train_pool, test_pool = split_by_object(pool, 0.3, seed)
    log(f"{survey}: {len(pool)} real detections, {len(set(pool.object_id))} objects; "
        f"train pool {len(train_pool)}, test pool {len(test_pool)}")
    train = make_exposures(train_pool, n_exposures, seed)
    valid = make_exposures(train_pool, n_exposures // 4, seed + 1, first_exposure=10**6)
    test = make_exposures(test_pool, n_exposures // 2, seed + 2, first_exposure=2 * 10**6)
    names = detection_feature_names(survey)
    Xtr, Xva, Xte = (features_of(d, survey) for d in (train, valid, test))
    ytr, yva, yte = train["label"], valid["label"], test["label"]
    n_det = len(names) - len(CONTEXT_FEATURES)  # the last columns are channel context

    model = _fit(Xtr, ytr, seed)
    calibration = fit_isotonic(model.predict_proba(Xva)[:, 1], yva)
    raw = model.predict_proba(Xte)[:, 1]
    p = apply_isotonic(calibration, raw)
    ablation = _fit(Xtr[:, :n_det], ytr, seed).predict_proba(Xte[:, :n_det])[:, 1]
    cut = rule_cut_fails(test, survey)

    auc, lo, hi = roc_auc_ci(yte, raw, seed=seed)
    recall, thr = recall_at_fpr(yte, raw, 0.01)
    cut_recall, _ = recall_at_fpr(yte, cut, 0.01)
    neg = yte == 0
    subtle = test["subtle"] == 1
    metrics = {
        "survey": survey, "n_train_detections": int(len(ytr)), "n_test_detections": int(len(yte)),
        "n_test_injected": int(yte.sum()), "test_auc": auc, "test_auc_ci95": [lo, hi],
        "recall_at_1pct_fpr": recall, "threshold_raw_at_1pct_fpr": thr,
        "rule_cut_recall_at_1pct_fpr": cut_recall,
        "rule_cut_operating_point": {"recall": float(cut[yte == 1].mean()), "fpr": float(cut[neg].mean())},
        "model_recall_at_rule_cut_fpr": recall_at_fpr(yte, raw, float(cut[neg].mean()))[0],
        "no_context_recall_at_1pct_fpr": recall_at_fpr(yte, ablation, 0.01)[0],
        "partitioned_recall_at_1pct_fpr": {
            str(k): recall_at_fpr(yte, model.predict_proba(features_of(test, survey, k, seed))[:, 1], 0.01)[0]
            for k in (2, 4, 16)},
        "recall_subtle_at_1pct_fpr": float((raw[subtle] > thr).mean()) if subtle.any() else None,
        "rule_cut_recall_subtle": float(cut[subtle].mean()) if subtle.any() else None,
        "params": PARAMS, "seed": seed, "n_exposures": n_exposures,
    }
    log(f"{survey}: AUC {auc:.4f}; recall@1%FPR {recall:.3f} vs rule cut {cut_recall:.3f} "
        f"(cut's own point: recall {metrics['rule_cut_operating_point']['recall']:.3f} at FPR "
        f"{metrics['rule_cut_operating_point']['fpr']:.3f}); without context {metrics['no_context_recall_at_1pct_fpr']:.3f}")
    model.get_booster().save_model(out / f"channel_{survey}_model.ubj")
    (out / f"channel_{survey}_calibration.json").write_text(json.dumps(calibration))
    (out / f"channel_{survey}_reference.json").write_text(json.dumps(psi_reference(Xtr, names)))
    (out / f"channel_{survey}_metrics.json").write_text(json.dumps(metrics, indent=1))
    evaluation = {"y": yte, "raw": raw, "calibrated": p, "cut": cut, "ablation": ablation,
                  "X": Xte, "names": names, "model": model, "threshold": 0.5}
    return {"metrics": metrics, "evaluation": evaluation}
