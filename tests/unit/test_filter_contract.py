"""The one contract every filter (built-in or third-party) must pass."""
from __future__ import annotations

import numpy as np
import pytest

from broker.batch import AlertBatch
from broker.filter_runner import FilterRunner, check_fields
from filters.base import Filter, FilterContext, discover

FILTERS = sorted(discover())


@pytest.fixture(scope="module", params=FILTERS)
def loaded(request):
    cls = discover()[request.param]
    impl = cls()
    impl.setup(FilterContext(device="cpu"))
    return request.param, impl


def test_quality_is_registered():
    assert "quality" in FILTERS


def test_identity_and_declared_fields(loaded):
    name, impl = loaded
    assert isinstance(impl, Filter) and impl.name == name
    assert isinstance(impl.version, str) and impl.version
    check_fields(impl)  # every declared column exists in some bundled schema


def test_scores_are_aligned_bounded_and_explained(loaded, sample_batch):
    name, impl = loaded
    result = impl.score(sample_batch)
    result.validate(sample_batch.n, name)
    finite = np.isfinite(result.score)
    assert np.all((result.score[finite] >= 0) & (result.score[finite] <= 1))
    for i in np.flatnonzero(~finite):
        assert isinstance(result.reason[i], str) and result.reason[i]
    # Whether a sample alert can be scored at all is filter science (the transit search
    # needs long histories the samples lack); each filter's own tests check real scores.


def test_deterministic_and_small_batches(loaded, sample_batch):
    name, impl = loaded
    a = impl.score(sample_batch).score
    b = impl.score(sample_batch).score
    assert np.array_equal(a, b, equal_nan=True)
    impl.score(sample_batch.subset(np.array([0]))).validate(1, name)
    impl.score(AlertBatch([])).validate(0, name)


def test_runner_turns_an_exception_into_nulls(sample_batch, monkeypatch):
    runner = FilterRunner(["quality"])
    monkeypatch.setattr(runner.filters[0].impl, "score", lambda batch: 1 / 0)
    result = runner.run(sample_batch)["quality"]
    assert np.isnan(result.score).all() and set(result.reason) == {"error:ZeroDivisionError"}
    assert runner.failing_for() >= 0 and runner.filters[0].consecutive_failures_since is not None


def test_unknown_filter_fails_fast():
    with pytest.raises(ValueError, match="unknown filters"):
        FilterRunner(["no-such-filter"])
