"""The ``badamp`` filter: probability that an alert is bad data from a failing channel.

Score: the calibrated detection + channel view (quality fields and per-exposure, per-channel
context among the alerts of the same exposure run, ``batch.exposure_group``), for ZTF and LSST. Details: the object-history view (``object_artefact_prob``: SNAD
expert-label model on the r-band history, ZTF only, when the history has enough points) and,
for alerts above ``threshold``, the three features that pushed the score most (SHAP values from
XGBoost's ``pred_contribs``) as ``shap:<feature>``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from broker.batch import AlertBatch
from filters.badamp.features import REAL_BOGUS, detection_feature_names, detection_matrix
from filters.base import Filter, FilterContext, FilterResult
from filters.evaluation import DriftMonitor, apply_isotonic
from filters.lightcurve_features import history_features, snad_feature_names

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SURVEYS = ("ztf", "lsst")


class _Model:
    """XGBoost boosters (several when bagged over seeds: their probabilities are averaged) with
    their isotonic calibration and training reference, loaded once."""

    def __init__(self, directory: Path, stem: str, names: list[str], device: str, threads: int | None = None):
        import xgboost as xgb

        self.names = names
        files = sorted(directory.glob(f"{stem}_model*.ubj"))
        if not files:
            raise FileNotFoundError(f"no {stem}_model*.ubj in {directory}")
        self.boosters = []
        for f in files:
            booster = xgb.Booster()
            booster.load_model(f)
            booster.set_param({"device": "cuda" if device == "cuda" else "cpu", "nthread": threads or 2})
            self.boosters.append(booster)
        self.calibration = json.loads((directory / f"{stem}_calibration.json").read_text())
        self.drift = DriftMonitor(json.loads((directory / f"{stem}_reference.json").read_text()))

    def predict(self, X: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        data = xgb.DMatrix(X)
        raw = np.mean([b.predict(data) for b in self.boosters], axis=0)
        self.drift.add(X)
        return apply_isotonic(self.calibration, raw)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        # SHAP values are additive in the margin; their mean over a bag ranks the features
        # that drove the averaged score.
        return np.mean([shap_contributions(b, X) for b in self.boosters], axis=0)


def shap_contributions(booster, X: np.ndarray) -> np.ndarray:
    """Per-feature SHAP values (XGBoost ``pred_contribs``), without the bias column."""
    import xgboost as xgb

    return booster.predict(xgb.DMatrix(X), pred_contribs=True)[:, :-1]


class BadampFilter(Filter):
    name = "badamp"
    version = "1.2.0"
    fields = {"ztf": ("rb", "exposure_id", "channel_id"), "lsst": ("reliability", "exposure_id", "channel_id")}
    exposure_context = True  # channel context: the runtime hands over whole exposure runs
    commands = "filters.badamp.commands"

    def setup(self, context: FilterContext) -> None:
        super().setup(context)
        directory = Path(context.model_dir or context.options.get("model_dir") or ARTIFACTS)
        self.threshold = float(context.options.get("threshold", 0.5))
        self.channel = {s: _Model(directory, f"channel_{s}", detection_feature_names(s), context.device,
                                  context.threads) for s in SURVEYS}
        self.object = _Model(directory, "object", snad_feature_names(), context.device, context.threads)

    def score(self, batch: AlertBatch) -> FilterResult:
        result = FilterResult.empty(batch.n)
        self.null_unsupported(batch, result)
        for survey, col in REAL_BOGUS.items():  # the one field the detection view cannot do without
            result.set_null((batch.survey == survey) & ~np.isfinite(batch.column(col)), f"missing:{col}")
        for survey in SURVEYS:
            rows = np.flatnonzero((batch.survey == survey) & np.array([r is None for r in result.reason], bool))
            if not len(rows):
                continue
            model = self.channel[survey]
            X = detection_matrix(batch, survey, rows)
            p = model.predict(X)
            result.score[rows] = p
            self._explain(model, X, p, rows, result)
        self._object_view(batch, result)
        return result

    def _explain(self, model: _Model, X: np.ndarray, p: np.ndarray, rows: np.ndarray, result: FilterResult) -> None:
        hot = np.flatnonzero(p > self.threshold)
        if not len(hot):
            return
        contrib = model.contributions(X[hot])
        for k, i in enumerate(rows[hot]):
            for j in np.argsort(-contrib[k])[:3]:
                result.details[i][f"shap:{model.names[j]}"] = round(float(contrib[k, j]), 4)

    def _object_view(self, batch: AlertBatch, result: FilterResult) -> None:
        ztf = batch.survey == "ztf"
        h = history_features(batch)
        for i in np.flatnonzero(ztf):
            result.details[i]["object_points"] = float(h.points[i])
            if i in h.why_not:
                result.details[i]["object_view"] = h.why_not[i]
        keep = ztf[h.rows]
        if keep.any():
            prob = self.object.predict(h.X[keep])
            for i, v in zip(h.rows[keep], prob):
                result.details[i]["object_artefact_prob"] = round(float(v), 4)

    def drift(self) -> dict[str, float]:
        """PSI per feature of recent live inputs against each view's training set."""
        out = {}
        for view, model in [("object", self.object)] + [(f"channel_{s}", m) for s, m in self.channel.items()]:
            out.update({f"{view}:{k}": v for k, v in model.drift.psi().items()})
        return out


def score_snad_table(path: str, model_dir: Path | None = None) -> list[dict]:
    """Object-history model on a table in the SNAD feature format: [{"oid", "score"}]."""
    from filters.badamp.train_object import load_snad

    X, _, oid, _ = load_snad(path)
    model = _Model(Path(model_dir or ARTIFACTS), "object", snad_feature_names(), "cpu")
    p = model.predict(X)
    return [{"oid": _oid(o), "score": float(s)} for o, s in zip(oid, p)]


def _oid(o: str):
    return int(o) if str(o).isdigit() else o

