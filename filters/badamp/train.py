"""``alert-broker train badamp``: both views, representativeness, and the model card."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from filters import plots
from filters.badamp.features import MIN_POINTS, snad_features, total_mag_light_curve
from filters.badamp.filter import shap_contributions
from filters.badamp.train_channel import real_alert_batch, train_channel_model
from filters.badamp.train_object import train_object_model
from filters.evaluation import psi

AUC_GOAL = 0.955
DEFAULT_SNAD = "../shared/data/labelled/snad_akb/akb_obj_features_snad4.csv"
DEFAULT_ALERTS = ["../shared/data/ztf/alerts", "../shared/data/ztf/fink-enriched", "../shared/data/lsst/alerts"]


def stream_representativeness(batch, reference: dict) -> dict:
    """How the alert-stream histories compare with the SNAD data-release light curves."""
    ztf = np.flatnonzero(batch.survey == "ztf")
    curves = [total_mag_light_curve(batch, i) for i in ztf]
    points = np.array([len(t) for t, _, _ in curves])
    feats = []
    for t, m, e in curves:
        if len(t) >= MIN_POINTS:
            try:
                feats.append(snad_features(t, m, e))
            except ValueError:
                pass
    X = np.vstack(feats) if feats else np.empty((0, len(reference)))
    per_feature = {name: psi(reference[name], X[:, j]) for j, name in enumerate(reference)} if len(X) else {}
    return {
        "ztf_alerts": int(len(ztf)),
        "r_band_points_percentiles_10_50_90_99": np.percentile(points, [10, 50, 90, 99]).tolist() if len(points) else [],
        "alerts_with_enough_history": int((points >= MIN_POINTS).sum()),
        "min_points": MIN_POINTS,
        "psi": dict(sorted(per_feature.items(), key=lambda kv: -kv[1])),
    }


def _shap_importance(model, X) -> np.ndarray:
    return np.abs(shap_contributions(model.get_booster(), X)).mean(axis=0)


def train_badamp(out_dir: str, snad_csv: str = DEFAULT_SNAD, alerts: list[str] | None = None,
                 max_evals: int = 60, n_exposures: int = 400, seed: int = 2026, log=print,
                 reuse_search: bool = False) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    obj = train_object_model(snad_csv, out, max_evals=max_evals, seed=seed, log=log, reuse_search=reuse_search)
    batch = real_alert_batch(alerts or DEFAULT_ALERTS)
    channel = {s: train_channel_model(batch, s, out, n_exposures=n_exposures, seed=seed, log=log)
               for s in ("ztf", "lsst")}
    reference = json.loads((out / "object_reference.json").read_text())
    rep = stream_representativeness(batch, reference)
    (out / "representativeness.json").write_text(json.dumps(rep, indent=1))

    figs: dict[str, list[str]] = {}
    ev = obj["evaluation"]
    figs["object"] = plots.roc_pr(ev["y"], {"tuned": ev["raw"], "untuned": ev["baseline"]}, out, "object")
    figs["object"].append(plots.calibration(ev["y"], ev["raw"], ev["calibrated"], out, "object"))
    figs["object"].append(plots.confusion(ev["y"], (ev["calibrated"] > ev["threshold"]).astype(int), out, "object",
                                          labels=("real", "artefact")))
    figs["object"].append(plots.importance(ev["names"], _shap_importance(ev["model"], ev["X"]), out, "object"))
    for s, res in channel.items():
        ev = res["evaluation"]
        figs[s] = plots.roc_pr(ev["y"], {"badamp": ev["raw"], "no channel context": ev["ablation"],
                                         "rule cut": ev["cut"]}, out, f"channel_{s}")
        figs[s].append(plots.calibration(ev["y"], ev["raw"], ev["calibrated"], out, f"channel_{s}"))
        figs[s].append(plots.confusion(ev["y"], (ev["calibrated"] > ev["threshold"]).astype(int), out,
                                       f"channel_{s}", labels=("normal", "failing")))
        figs[s].append(plots.importance(ev["names"], _shap_importance(ev["model"], ev["X"]), out, f"channel_{s}"))
    card = model_card(obj["metrics"], {s: r["metrics"] for s, r in channel.items()}, rep, figs, snad_csv)
    (out / "MODEL_CARD.md").write_text(card)
    log(f"model card: {out / 'MODEL_CARD.md'}")
    return {"object": obj["metrics"], "channel": {s: r["metrics"] for s, r in channel.items()}, "representativeness": rep}


def _img(names: list[str]) -> str:
    return "\n".join(f"![{n}]({n})" for n in names)


def model_card(om: dict, cm: dict, rep: dict, figs: dict, snad_csv: str) -> str:
    lo, hi = om["test_auc_ci95"]
    top_psi = list(rep["psi"].items())[:8]
    lines = [
        "# Model card: `badamp` 1.0.0",
        "",
        "Bad-data and failing-amplifier detector for ZTF and Rubin/LSST alerts. Two views, both",
        "XGBoost, both calibrated with isotonic regression. Written by `alert-broker train badamp`.",
        "",
        "## Object-history view (SNAD expert labels)",
        "",
        f"* **Data**: `{Path(snad_csv).name}`, {om['n_train'] + om['n_test']} ZTF data-release objects "
        "labelled by SNAD experts as artefact (ghost, bright star, spike, frame edge, column, defocusing, "
        f"track, ...) or real; {om['n_features']} `light-curve` features (r band).",
        f"* **Split**: {om['n_test']} objects held out (stratified, grouped by object id, seed {om['seed']}), "
        "never used for tuning or calibration.",
        f"* **Tuning**: hyperopt TPE, {om['search_evals']} evaluations, objective = mean ROC AUC of "
        "5-fold cross-validation on the training objects (folds stratified and grouped by object).",
        "",
        "| | ROC AUC |",
        "|---|---|",
        f"| untuned XGBoost, cross-validated on train | {om['baseline_cv_auc']:.4f} |",
        f"| tuned, cross-validated on train | {om['tuned_cv_auc']:.4f} |",
        f"| untuned, held-out test | {om['baseline_test_auc']:.4f} |",
        f"| **tuned, held-out test** | **{om['test_auc']:.4f}** (95% bootstrap CI {lo:.4f}-{hi:.4f}) |",
        "",
        f"**Goal**: held-out ROC AUC >= {AUC_GOAL} (issue #3). "
        + ("Met." if om["test_auc"] >= AUC_GOAL else
           f"**Not met**: {om['test_auc']:.4f}. Tuning gains {om['tuned_cv_auc'] - om['baseline_cv_auc']:+.4f} in "
           f"cross-validation and {om['test_auc'] - om['baseline_test_auc']:+.4f} on the held-out objects; "
           "multi-class training on the artefact subtypes, down-weighting `uncertain` tags, random and "
           "extra-trees forests and their average with XGBoost were tried and also stayed near 0.944 in "
           "cross-validation, as did XGBoost with 4-5 features per split (colsample_bynode 0.1 or "
           "colsample_bylevel 0.07, 0.943). The split was fixed before any result was seen and was not changed. "
           "For scale: the labels' own authors report 5-fold ROC AUC 0.93 +- 0.01 for a tuned XGBoost and "
           "0.95 +- 0.01 for CatBoost on this same table (snad-space/ztf_real_bogus_clf, comparison_ac.ipynb)."),
        "",
        f"PR-AUC (average precision) on the held-out test: {om['test_pr_auc']:.4f}. Brier score "
        f"{om['test_brier_raw']:.4f} raw, {om['test_brier_calibrated']:.4f} calibrated. "
        f"Hyper-parameters: `{json.dumps(om['params'])}`.",
        "",
        _img(figs["object"]),
        "",
        "## Detection + channel view (injected failing channels)",
        "",
        "No public label set of bad amplifiers exists, so this view is trained and measured on",
        "injections (`filters/badamp/inject.py` documents every assumption): real alert detections",
        "rearranged into exposures with uneven channel rates and crowded channels of real detections,",
        "half of them with one failing channel emitting a burst of degraded detections, 40% of which",
        "are barely degraded. Test exposures use other objects and another seed. Features: the",
        "detection's quality fields plus per exposure and channel: count, count over the exposure's",
        "median channel count, share of the exposure, median real/bogus, fraction negative, fraction",
        "with real/bogus < 0.5.",
        "",
        "| survey | test AUC | recall at 1% FPR | rule cut recall at 1% FPR | rule cut's own point (recall / FPR) | without channel context, recall at 1% FPR |",
        "|---|---|---|---|---|---|",
    ]
    for s, m in cm.items():
        op = m["rule_cut_operating_point"]
        lines.append(f"| {s} | {m['test_auc']:.4f} | **{m['recall_at_1pct_fpr']:.3f}** | {m['rule_cut_recall_at_1pct_fpr']:.3f} | "
                     f"{op['recall']:.3f} / {op['fpr']:.3f} | {m['no_context_recall_at_1pct_fpr']:.3f} |")
    lines += [
        "",
        "The rule cut is ZTF's recommended pure cut (`rb >= 0.65, nbad == 0, fwhm <= 5, elong <= 1.2, "
        "|magdiff| <= 0.1`) and, for LSST, `reliability >= 0.5` with no bad-pixel flags; as a binary "
        "cut its recall at 1% FPR is read off its two-point ROC. These numbers measure the injection "
        "model as much as the detector: they say the detector finds bursts like those injected, not "
        "how often real amplifiers fail.",
        "",
    ]
    for s in cm:
        lines += [f"### {s}", "", _img(figs[s]), ""]
    pts = rep["r_band_points_percentiles_10_50_90_99"]
    lines += [
        "## Representativeness: does the training data look like the stream?",
        "",
        f"The SNAD features come from long data-release light curves; an alert carries a short history. "
        f"Of {rep['ztf_alerts']} ZTF sample alerts, the r-band detections in the history have percentiles "
        f"10/50/90/99 = {', '.join(f'{p:.0f}' for p in pts)}; {rep['alerts_with_enough_history']} alerts "
        f"reach the {rep['min_points']} points the filter requires before it reports "
        "`object_artefact_prob` (others get `object_view: short_history`).",
        "",
        "Population stability index of alert-history features against the training set (> 0.25 means the",
        "model sees data unlike what it learned); the largest:",
        "",
        "| feature | PSI |",
        "|---|---|",
    ] + [f"| {k} | {v:.2f} |" for k, v in top_psi] + [
        "",
        "So the object-history probability on alerts is an extrapolation and is reported as a detail,",
        "not as the score; the live PSI per feature is exported as `alert_broker_filter_feature_psi`.",
        "",
        "## Use",
        "",
        "`badamp.score` is the calibrated probability that the detection comes from a failing channel",
        "or is bad data; alerts above 0.5 carry their top three SHAP contributions as `shap:<feature>`.",
        "`alert-broker score badamp --snad-features FILE.csv --json` scores a SNAD feature table with",
        "the object-history model.",
    ]
    return "\n".join(lines) + "\n"
