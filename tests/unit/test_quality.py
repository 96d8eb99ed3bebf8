from __future__ import annotations

import numpy as np

from filters.base import FilterContext
from filters.quality import QualityFilter


def test_quality_matches_the_ztf_pure_cut(sample_batch):
    f = QualityFilter()
    f.setup(FilterContext())
    res = f.score(sample_batch)
    c = sample_batch.column
    ztf = (sample_batch.survey == "ztf") & np.isfinite(res.score)
    with np.errstate(invalid="ignore"):
        pure = (c("rb") >= 0.65) & (c("nbad") == 0) & (c("fwhm") <= 5) & (c("elong") <= 1.2) & (np.abs(c("magdiff")) <= 0.1)
    assert np.array_equal(res.score[ztf] == 1.0, pure[ztf])
    assert 0 < pure[ztf].sum() < ztf.sum()  # real data: some pass, some fail
    for i in np.flatnonzero(ztf & ~pure):
        assert res.details[i]["failed"]


def test_missing_fields_are_null_with_reason(sample_batch):
    f = QualityFilter()
    f.setup(FilterContext())
    res = f.score(sample_batch)
    no_rb = (sample_batch.survey == "ztf") & np.isnan(sample_batch.column("rb"))
    assert all(res.reason[i] == "missing:rb" for i in np.flatnonzero(no_rb))
