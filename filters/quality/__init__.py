"""Rule-based quality cut, the baseline every learned filter is compared with.

ZTF: the survey's recommended "pure" cut ``rb >= 0.65 and nbad == 0 and fwhm <= 5 and
elong <= 1.2 and abs(magdiff) <= 0.1``. LSST: ``reliability`` above a threshold and none of
the pixel flags that mark a detection on bad, saturated, cosmic-ray, streak or edge pixels.
Score 1.0 passes, 0.0 fails; ``details.failed`` names the cuts that failed.
"""
from __future__ import annotations

import numpy as np

from broker.batch import AlertBatch
from filters.base import Filter, FilterContext, FilterResult

LSST_FLAGS = (
    "pixelFlags_bad",
    "pixelFlags_saturatedCenter",
    "pixelFlags_crCenter",
    "pixelFlags_streakCenter",
    "pixelFlags_edge",
    "pixelFlags_nodataCenter",
    "pixelFlags_suspectCenter",
)


class QualityFilter(Filter):
    name = "quality"
    version = "1.0.0"
    fields = {
        "ztf": ("rb", "nbad", "fwhm", "elong", "magdiff"),
        "lsst": ("reliability",),
    }

    def setup(self, context: FilterContext) -> None:
        super().setup(context)
        self.rb_min = float(context.options.get("rb_min", 0.65))
        self.reliability_min = float(context.options.get("reliability_min", 0.5))

    def _cuts(self, batch: AlertBatch) -> dict[str, np.ndarray]:
        c = batch.column
        with np.errstate(invalid="ignore"):
            ztf = batch.survey == "ztf"
            lsst = batch.survey == "lsst"
            cuts = {
                "rb": ~ztf | (c("rb") >= self.rb_min),
                "nbad": ~ztf | (c("nbad") == 0),
                "fwhm": ~ztf | (c("fwhm") <= 5),
                "elong": ~ztf | (c("elong") <= 1.2),
                "magdiff": ~ztf | (np.abs(c("magdiff")) <= 0.1),
                "reliability": ~lsst | (c("reliability") >= self.reliability_min),
            }
            for flag in LSST_FLAGS:
                # A flag absent from an older schema is not evidence of a bad pixel.
                cuts[flag] = ~lsst | ~(np.nan_to_num(c(flag), nan=0.0) > 0)
        return cuts

    def score(self, batch: AlertBatch) -> FilterResult:
        result = FilterResult.empty(batch.n)
        self.null_unsupported(batch, result)
        self.null_missing(batch, result)
        cuts = self._cuts(batch)
        passed = np.logical_and.reduce(list(cuts.values()))
        for i in range(batch.n):
            if result.reason[i] is None:
                result.score[i] = 1.0 if passed[i] else 0.0
                failed = [k for k, ok in cuts.items() if not ok[i]]
                if failed:
                    result.details[i]["failed"] = ",".join(failed)
        return result
