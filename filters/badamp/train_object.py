"""Object-history view: XGBoost on SNAD's 54 light-curve features and expert labels.

Protocol (nothing from the held-out split is seen before the final evaluation):
1. Split objects 80/20, stratified by label, grouped by object id: *development* and *held-out*.
2. Nested, repeated cross-validation on the development part judges every candidate
   (:data:`CANDIDATES`: XGBoost defaults, a standard regularised configuration, that
   configuration and a slower, deeper one bagged over seeds, and a tuned one). The outer folds only judge; the tuned
   candidate searches (hyperopt TPE, slow learning rates with early stopping) inside each outer
   training part, on inner folds. Repeats average the noise of a 2,600-row table.
3. The shipped configuration is the cheapest candidate (fewest tree levels to walk per alert)
   whose mean outer-fold ROC AUC is within one standard error of the best candidate's (the
   one-standard-error rule): a difference the folds cannot tell from noise buys no extra cost on
   every alert of the stream.
4. Held-out check: that configuration fitted on the development part, scored once on the
   held-out objects (ROC AUC with a bootstrap interval, PR-AUC, Brier, confusion).
5. Shipped model: the same configuration refitted on every labelled object (more data for the
   objects nobody has labelled yet), with isotonic calibration fitted on out-of-fold predictions.
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from filters.lightcurve_features import snad_feature_names
from filters.evaluation import apply_isotonic, fit_isotonic, psi_reference, roc_auc_ci

STANDARD = {"n_estimators": 600, "learning_rate": 0.03, "max_depth": 5, "subsample": 0.8, "colsample_bytree": 0.5}
SLOW = {"n_estimators": 1500, "learning_rate": 0.01, "max_depth": 6, "subsample": 0.7, "colsample_bytree": 0.4}
BAG_SEEDS = 5
MAX_TREES = 3000  # the tuned candidate stops early well before this
CANDIDATES = ("default", "standard", "standard_bagged", "slow_bagged", "tuned")


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


class Ensemble:
    """Boosters whose probabilities are averaged (one booster unless bagged)."""

    def __init__(self, models: list):
        self.models = models

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.mean([m.predict_proba(X)[:, 1] for m in self.models], axis=0)

    def boosters(self) -> list:
        return [m.get_booster() for m in self.models]


def fit_config(config: dict, X: np.ndarray, y: np.ndarray, seed: int) -> Ensemble:
    """``config``: {"params": xgboost parameters, "seeds": how many seeds to average}."""
    return Ensemble([_xgb(config["params"], seed + k).fit(X, y) for k in range(config.get("seeds", 1))])


def _space():
    from hyperopt import hp
    from hyperopt.pyll import scope

    return {
        "learning_rate": hp.loguniform("learning_rate", np.log(0.005), np.log(0.3)),
        "max_depth": scope.int(hp.quniform("max_depth", 2, 8, 1)),
        "min_child_weight": hp.loguniform("min_child_weight", np.log(0.5), np.log(20)),
        "subsample": hp.uniform("subsample", 0.5, 1.0),
        "colsample_bytree": hp.uniform("colsample_bytree", 0.2, 1.0),
        "gamma": hp.uniform("gamma", 0.0, 5.0),
        "reg_lambda": hp.loguniform("reg_lambda", np.log(0.1), np.log(50)),
        "reg_alpha": hp.loguniform("reg_alpha", np.log(1e-3), np.log(10)),
    }


def search(X: np.ndarray, y: np.ndarray, max_evals: int, folds: int, seed: int) -> tuple[dict, float]:
    """Hyperopt TPE on ``folds``-fold CV of (X, y), trees by early stopping: (params, CV AUC)."""
    from hyperopt import STATUS_OK, Trials, fmin, space_eval, tpe
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y))

    def objective(params):
        aucs, trees = [], []
        for tr, va in splits:
            m = _xgb({**params, "n_estimators": MAX_TREES, "early_stopping_rounds": 100}, seed)
            m.fit(X[tr], y[tr], eval_set=[(X[va], y[va])], verbose=False)
            aucs.append(roc_auc_score(y[va], m.predict_proba(X[va], iteration_range=(0, m.best_iteration + 1))[:, 1]))
            trees.append(m.best_iteration + 1)
        return {"loss": -float(np.mean(aucs)), "status": STATUS_OK, "trees": int(np.mean(trees))}

    trials = Trials()
    space = _space()
    best = fmin(objective, space, algo=tpe.suggest, max_evals=max_evals, trials=trials,
                rstate=np.random.default_rng(seed), show_progressbar=False)
    params = space_eval(space, best)
    params["n_estimators"] = trials.best_trial["result"]["trees"]
    clean = {k: (float(v) if isinstance(v, float) else int(v)) for k, v in params.items()}
    return clean, -min(trials.losses())


def candidate_config(name: str, X: np.ndarray, y: np.ndarray, max_evals: int, seed: int) -> dict:
    """The configuration a candidate fits on (X, y); only ``tuned`` looks at the data."""
    if name == "default":
        return {"params": {}, "seeds": 1}
    if name == "standard":
        return {"params": dict(STANDARD), "seeds": 1}
    if name == "standard_bagged":
        return {"params": dict(STANDARD), "seeds": BAG_SEEDS}
    if name == "slow_bagged":
        return {"params": dict(SLOW), "seeds": BAG_SEEDS}
    if name == "tuned":
        params, _ = search(X, y, max_evals, folds=3, seed=seed)
        return {"params": params, "seeds": 1}
    raise ValueError(name)


def nested_cv(X: np.ndarray, y: np.ndarray, candidates=CANDIDATES, folds: int = 5, repeats: int = 2,
              max_evals: int = 20, seed: int = 2026, log=print) -> dict:
    """Outer-fold ROC AUC of every candidate, and their out-of-fold predictions (first repeat)."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import RepeatedStratifiedKFold

    outer = list(RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed).split(X, y))
    result = {}
    for name in candidates:
        t0 = time.time()
        aucs, oof, chosen = [], np.full(len(y), np.nan), []
        for k, (tr, te) in enumerate(outer):
            config = candidate_config(name, X[tr], y[tr], max_evals, seed + k)
            p = fit_config(config, X[tr], y[tr], seed + k).predict(X[te])
            aucs.append(float(roc_auc_score(y[te], p)))
            if k < folds:
                oof[te] = p
            if name == "tuned":
                chosen.append(config["params"])
        result[name] = {"outer_auc_mean": float(np.mean(aucs)), "outer_auc_std": float(np.std(aucs)),
                        "outer_aucs": aucs, "oof": oof, "seconds": round(time.time() - t0, 1)}
        if chosen:
            result[name]["params_per_fold"] = chosen
        log(f"{name}: outer-fold AUC {np.mean(aucs):.4f} +- {np.std(aucs):.4f} "
            f"({len(aucs)} folds, {time.time() - t0:.0f} s)")
    return result


def tree_cost(name: str, verdict: dict) -> float:
    """Tree levels walked per prediction (trees x depth, summed over a bag): the candidate's
    cost on every alert. XGBoost's defaults are 100 trees of depth 6."""
    if name == "tuned":
        per_fold = verdict.get("params_per_fold") or [{"n_estimators": MAX_TREES, "max_depth": 6}]
        return float(np.mean([p["n_estimators"] * p.get("max_depth", 6) for p in per_fold]))
    config = candidate_config(name, np.empty((0, 0)), np.empty(0), 0, 0)
    params = config["params"]
    return float(params.get("n_estimators", 100) * params.get("max_depth", 6) * config["seeds"])


def select_candidate(judged: dict) -> str:
    """The one-standard-error rule: of the candidates whose mean outer-fold AUC is within one
    standard error (sd / sqrt(folds)) of the best mean, the one with the smallest tree cost."""
    best = max(judged, key=lambda c: judged[c]["outer_auc_mean"])
    se = judged[best]["outer_auc_std"] / np.sqrt(len(judged[best]["outer_aucs"]))
    near = [c for c in judged if judged[c]["outer_auc_mean"] >= judged[best]["outer_auc_mean"] - se]
    return min(near, key=lambda c: (tree_cost(c, judged[c]), -judged[c]["outer_auc_mean"]))


def _first_repeat_oof(config_of, X, y, folds: int, repeats: int, seed: int) -> np.ndarray:
    """Out-of-fold predictions over the first repeat of the outer folds (for calibration)."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    outer = list(RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed).split(X, y))[:folds]
    oof = np.full(len(y), np.nan)
    for k, (tr, te) in enumerate(outer):
        oof[te] = fit_config(config_of(X[tr], y[tr], seed + k), X[tr], y[tr], seed + k).predict(X[te])
    return oof


def train_object_model(csv_path: str | Path, out_dir: str | Path, max_evals: int = 20,
                       folds: int = 5, repeats: int = 2, seed: int = 2026, log=print,
                       candidates=CANDIDATES, reuse_judgement: bool = False) -> dict:
    """``reuse_judgement``: take the candidates' outer-fold verdicts from an earlier run in
    ``out_dir`` instead of judging again (the slow part); everything after is recomputed."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    X, y, oid, names = load_snad(csv_path)
    dev, te = next(StratifiedGroupKFold(5, shuffle=True, random_state=seed).split(X, y, oid))
    log(f"objects: {len(y)} ({y.sum()} artefacts); development {len(dev)}, held-out {len(te)}")
    t0 = time.time()

    reused = reuse_judgement and (out / "object_metrics.json").exists()
    if reused:  # the verdicts of an earlier run (same data, folds and seed); the chosen
        # candidate's out-of-fold predictions are recomputed below
        earlier = json.loads((out / "object_metrics.json").read_text())
        judged = {c: dict(r) for c, r in earlier["candidates"].items()}
        log(f"reusing the outer-fold verdicts in {out / 'object_metrics.json'}")
        candidates = tuple(judged)
    else:
        judged = nested_cv(X[dev], y[dev], candidates, folds, repeats, max_evals, seed, log)
    chosen = select_candidate(judged)
    if reused and chosen == "tuned" and earlier["selected"] != "tuned":
        raise ValueError("the tuned candidate's final configuration was never searched: judge again")
    config = (earlier["config"] if reused and chosen == "tuned"
              else candidate_config(chosen, X[dev], y[dev], max_evals, seed))
    if "oof" not in judged[chosen]:
        judged[chosen]["oof"] = _first_repeat_oof(
            lambda Xf, yf, s: config if chosen == "tuned" else candidate_config(chosen, Xf, yf, 0, s),
            X[dev], y[dev], folds, repeats, seed)
    best = max(judged, key=lambda c: judged[c]["outer_auc_mean"])
    log(f"selected by the outer folds (one-standard-error rule; best mean: {best}): {chosen} {json.dumps(config)}")

    dev_model = fit_config(config, X[dev], y[dev], seed)
    dev_calibration = fit_isotonic(judged[chosen]["oof"], y[dev])
    raw = dev_model.predict(X[te])
    cal = apply_isotonic(dev_calibration, raw)
    baselines = {c: fit_config(candidate_config(c, X[dev], y[dev], max_evals, seed), X[dev], y[dev], seed).predict(X[te])
                 for c in candidates if c not in (chosen, "tuned")}
    auc, lo, hi = roc_auc_ci(y[te], raw, seed=seed)
    log(f"held-out: {chosen} AUC {auc:.4f} [{lo:.4f}, {hi:.4f}]; "
        + ", ".join(f"{c} {roc_auc_score(y[te], p):.4f}" for c, p in baselines.items()))

    # Shipped: the chosen configuration on every labelled object, calibrated out of fold.
    oof_all = np.zeros(len(y))
    for k, (a, b) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y)):
        oof_all[b] = fit_config(config, X[a], y[a], seed + k).predict(X[b])
    calibration = fit_isotonic(oof_all, y)
    shipped = fit_config(config, X, y, seed)
    for f in out.glob("object_model*.ubj"):
        f.unlink()
    for k, booster in enumerate(shipped.boosters()):
        booster.save_model(out / f"object_model_{k}.ubj")

    threshold = 0.5
    metrics = {
        "n_labelled": int(len(y)), "n_development": int(len(dev)), "n_test": int(len(te)),
        "n_features": len(names), "outer_folds": folds, "outer_repeats": repeats, "search_evals": max_evals,
        "candidates": {c: {k: v for k, v in r.items() if k != "oof"} for c, r in judged.items()},
        "selected": chosen, "config": config, "selection_rule": "one standard error",
        "best_outer_mean": best, "tree_cost": {c: tree_cost(c, r) for c, r in judged.items()},
        "test_auc": auc, "test_auc_ci95": [lo, hi],
        "test_auc_calibrated": float(roc_auc_score(y[te], cal)),
        "test_auc_other_candidates": {c: float(roc_auc_score(y[te], p)) for c, p in baselines.items()},
        "test_pr_auc": float(average_precision_score(y[te], cal)),
        "test_brier_raw": float(brier_score_loss(y[te], raw)),
        "test_brier_calibrated": float(brier_score_loss(y[te], cal)),
        "shipped_oof_auc_all_labelled": float(roc_auc_score(y, oof_all)),
        "threshold": threshold, "seed": seed, "train_seconds": round(time.time() - t0, 1),
    }
    (out / "object_calibration.json").write_text(json.dumps(calibration))
    (out / "object_reference.json").write_text(json.dumps(psi_reference(X, names)))
    (out / "object_metrics.json").write_text(json.dumps(metrics, indent=1))
    evaluation = {"y": y[te], "raw": raw, "calibrated": cal, "baselines": baselines, "X": X[te],
                  "names": names, "model": dev_model, "threshold": threshold}
    return {"metrics": metrics, "evaluation": evaluation}
