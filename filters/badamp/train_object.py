"""Object-history view: XGBoost on SNAD's 54 light-curve features and expert labels.

Protocol (nothing from the test split is seen before the final evaluation):
1. Split objects 80/20, stratified by label, grouped by object id.
2. Untuned baseline: XGBoost defaults, cross-validated on the training part.
3. Bayesian search (hyperopt TPE) maximising the mean cross-validated ROC AUC on the
   training part, folds stratified and grouped by object.
4. Refit on the whole training part; isotonic calibration fitted on out-of-fold training
   predictions of the tuned model.
5. Held-out test: ROC AUC with a bootstrap interval, PR-AUC, calibration, confusion.
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from filters.evaluation import apply_isotonic, fit_isotonic, psi_reference, roc_auc_ci
from filters.badamp.features import snad_feature_names


def load_snad(path: str | Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, list[str]]:
    """(X, labels or None, oids, names) from a table in ``akb_obj_features_snad4.csv`` format."""
    names = snad_feature_names()
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    missing = [n for n in names if rows and n not in rows[0]]
    if missing:
        raise ValueError(f"{path}: missing feature columns {missing[:5]}")
    X = np.array([[float(r[n]) if r[n] not in ("", "nan") else np.nan for n in names] for r in rows])
    y = np.array([int(float(r["label"])) for r in rows]) if rows and "label" in rows[0] else None
    oid = np.array([r.get("oid", str(i)) for i, r in enumerate(rows)])
    return X, y, oid, names


def _xgb(params: dict, seed: int):
    import xgboost as xgb

    return xgb.XGBClassifier(tree_method="hist", n_jobs=2, random_state=seed, eval_metric="auc", **params)


def _oof(params: dict, X, y, groups, folds: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedGroupKFold

    p = np.zeros(len(y))
    for tr, va in StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(X, y, groups):
        p[va] = _xgb(params, seed).fit(X[tr], y[tr]).predict_proba(X[va])[:, 1]
    return p




def _space():
    from hyperopt import hp
    from hyperopt.pyll import scope

    return {
        "n_estimators": scope.int(hp.quniform("n_estimators", 100, 1500, 50)),
        "learning_rate": hp.loguniform("learning_rate", np.log(0.005), np.log(0.3)),
        "max_depth": scope.int(hp.quniform("max_depth", 2, 9, 1)),
        "min_child_weight": hp.loguniform("min_child_weight", np.log(0.5), np.log(20)),
        "subsample": hp.uniform("subsample", 0.5, 1.0),
        "colsample_bytree": hp.uniform("colsample_bytree", 0.2, 1.0),
        "gamma": hp.uniform("gamma", 0.0, 5.0),
        "reg_lambda": hp.loguniform("reg_lambda", np.log(0.1), np.log(50)),
        "reg_alpha": hp.loguniform("reg_alpha", np.log(1e-3), np.log(10)),
    }


def train_object_model(csv_path: str | Path, out_dir: str | Path, max_evals: int = 60,
                       folds: int = 5, seed: int = 2026, log=print, reuse_search: bool = False) -> dict:
    """``reuse_search``: take the hyper-parameters found by an earlier search in ``out_dir``
    (``object_metrics.json``) instead of searching again; everything else is recomputed."""
    from hyperopt import STATUS_OK, Trials, fmin, space_eval, tpe
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    X, y, oid, names = load_snad(csv_path)
    tr, te = next(StratifiedGroupKFold(5, shuffle=True, random_state=seed).split(X, y, oid))
    Xtr, ytr, gtr = X[tr], y[tr], oid[tr]
    log(f"objects: {len(y)} ({y.sum()} artefacts); train {len(tr)}, held-out test {len(te)}")

    t0 = time.time()
    base_cv = roc_auc_score(ytr, _oof({}, Xtr, ytr, gtr, folds, seed))
    log(f"untuned XGBoost: CV AUC {base_cv:.4f}")

    def objective(params):
        auc = roc_auc_score(ytr, _oof(params, Xtr, ytr, gtr, folds, seed))
        return {"loss": -auc, "status": STATUS_OK}

    previous = out / "object_metrics.json"
    if reuse_search and previous.exists():
        old = json.loads(previous.read_text())
        params, tuned_cv, max_evals = old["params"], old["tuned_cv_auc"], old["search_evals"]
        log(f"reusing the earlier search ({max_evals} evaluations): CV AUC {tuned_cv:.4f}")
    else:
        trials = Trials()
        space = _space()
        best = fmin(objective, space, algo=tpe.suggest, max_evals=max_evals, trials=trials,
                    rstate=np.random.default_rng(seed), show_progressbar=False)
        params = space_eval(space, best)
        tuned_cv = -min(trials.losses())
        log(f"hyperopt ({max_evals} evaluations): CV AUC {tuned_cv:.4f} with {params}")

    oof = _oof(params, Xtr, ytr, gtr, folds, seed)
    calibration = fit_isotonic(oof, ytr)
    model = _xgb(params, seed).fit(Xtr, ytr)
    baseline = _xgb({}, seed).fit(Xtr, ytr)
    raw = model.predict_proba(X[te])[:, 1]
    cal = apply_isotonic(calibration, raw)
    base_raw = baseline.predict_proba(X[te])[:, 1]
    auc, lo, hi = roc_auc_ci(y[te], raw, seed=seed)
    threshold = 0.5
    metrics = {
        "n_train": int(len(tr)), "n_test": int(len(te)), "n_features": len(names),
        "baseline_cv_auc": float(base_cv), "tuned_cv_auc": float(tuned_cv),
        "test_auc": auc, "test_auc_ci95": [lo, hi],
        "test_auc_calibrated": float(roc_auc_score(y[te], cal)),
        "baseline_test_auc": float(roc_auc_score(y[te], base_raw)),
        "test_pr_auc": float(average_precision_score(y[te], cal)),
        "test_brier_raw": float(brier_score_loss(y[te], raw)),
        "test_brier_calibrated": float(brier_score_loss(y[te], cal)),
        "threshold": threshold,
        "params": {k: (float(v) if isinstance(v, float) else int(v)) for k, v in params.items()},
        "search_evals": max_evals, "seed": seed, "train_seconds": round(time.time() - t0, 1),
    }
    log(f"held-out: AUC {auc:.4f} [{lo:.4f}, {hi:.4f}], PR-AUC {metrics['test_pr_auc']:.4f}, "
        f"untuned {metrics['baseline_test_auc']:.4f}")

    model.get_booster().save_model(out / "object_model.ubj")
    (out / "object_calibration.json").write_text(json.dumps(calibration))
    (out / "object_reference.json").write_text(json.dumps(psi_reference(Xtr, names)))
    (out / "object_metrics.json").write_text(json.dumps(metrics, indent=1))
    evaluation = {"y": y[te], "raw": raw, "calibrated": cal, "baseline": base_raw, "X": X[te],
                  "names": names, "model": model, "threshold": threshold}
    return {"metrics": metrics, "evaluation": evaluation}
