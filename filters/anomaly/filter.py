"""The ``anomaly`` filter: how unusual an alert's r-band history is, as a rate.

Score: the fraction of ordinary objects (the survey's calibration population) that score
lower, so ``score >= 0.999`` flags about one ordinary alert in a thousand. Features: the 54
SNAD light-curve features shared with ``badamp`` (computed once per batch). Details: the three
features that made the alert most unusual (``why:<feature>`` = the alert's value) and the model
version. Alerts with fewer than 8 usable r-band detections get a null with the reason.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from broker.batch import AlertBatch
from filters.anomaly.model import load_version
from filters.base import Filter, FilterContext, FilterResult
from filters.lightcurve_features import history_features

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


class AnomalyFilter(Filter):
    name = "anomaly"
    version = "1.0.0"
    fields = {"ztf": (), "lsst": ()}  # the light curve only
    commands = "filters.anomaly.commands"

    def setup(self, context: FilterContext) -> None:
        super().setup(context)
        directory = Path(context.model_dir or context.options.get("model_dir") or ARTIFACTS)
        pinned = context.options.get("model_version")  # e.g. "v1": roll back a feedback update
        self.model_version, self.models, _ = load_version(directory, pinned, context.device)

    def score(self, batch: AlertBatch) -> FilterResult:
        result = FilterResult.empty(batch.n)
        self.null_unsupported(batch, result)
        h = history_features(batch)
        for i, why in h.why_not.items():
            if result.reason[i] is None:
                result.reason[i] = why
        for survey, model in self.models.items():
            keep = batch.survey[h.rows] == survey
            if not keep.any():
                continue
            rows, X = h.rows[keep], h.X[keep]
            score, contrib = model.score(model.scaled(X), explain=True)
            result.score[rows] = score
            for k, i in enumerate(rows):
                details = result.details[i]
                details["model_version"] = self.model_version
                for j in np.argsort(-contrib[k])[:3]:
                    details[f"why:{model.names[j]}"] = round(float(X[k, j]), 4)
        return result
