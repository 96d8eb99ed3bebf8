"""A filter that raises, hangs or returns invalid values costs only the alerts it fails on."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from broker.annotations import filter_output
from broker.filter_runner import FilterRunner
from tests.faults.faulty_filters import plugin_path, poisoned


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    path = str(plugin_path(tmp_path_factory.mktemp("plugins")))
    sys.path.insert(0, path)
    yield
    sys.path.remove(path)


def _check_isolated(result, batch, bad_reason):
    bad = poisoned(batch.alert_id)
    assert bad.any() and (~bad).any()
    assert np.isnan(result.score[bad]).all()
    assert all(result.reason[i].startswith(bad_reason) for i in np.flatnonzero(bad))
    good = np.flatnonzero(~bad)
    assert np.allclose(result.score[good], (batch.alert_id[good] % 100) / 100.0)
    assert all(result.reason[i] is None for i in good)


def test_an_exception_nulls_only_the_alert_that_raises(faulty, sample_batch):
    runner = FilterRunner(["raises"])
    result = runner.run(sample_batch)["raises"]
    _check_isolated(result, sample_batch, "error:RuntimeError")
    assert runner.filters[0].consecutive_failures_since is None  # the filter itself works


def test_invalid_values_and_lengths_become_invalid_output(faulty, sample_batch):
    runner = FilterRunner(["badvalues", "wronglength"])
    results = runner.run(sample_batch)
    _check_isolated(results["badvalues"], sample_batch, "invalid_output")
    _check_isolated(results["wronglength"], sample_batch, "invalid_output")
    out = filter_output(results["badvalues"].score[0], "1", None, results["badvalues"].details[0])
    assert out["details"] == {"x": 1.5, "y": "inf"}  # numpy scalar a float, inf not a number


def test_a_hanging_call_times_out_and_the_stream_goes_on(faulty, sample_batch):
    runner = FilterRunner(["hangs"], options={"hangs": {"hang_s": 3.0}}, deadline_s=0.5)
    bad = np.flatnonzero(poisoned(sample_batch.alert_id))
    good = np.flatnonzero(~poisoned(sample_batch.alert_id))
    result = runner.run(sample_batch.subset(np.concatenate([bad[:1], good[:5]])))["hangs"]
    assert set(result.reason) == {"timeout"}  # the call holding the bad alert hung
    # While the hung call has not returned, the filter is skipped, not waited for again.
    assert set(runner.run(sample_batch.subset(good[:5]))["hangs"].reason) == {"timeout"}
    runner.filters[0].hung.result(timeout=10)
    clean = runner.run(sample_batch.subset(good[:5]))["hangs"]
    assert np.isfinite(clean.score).all()


def test_a_filters_thread_runs_with_the_compute_threads_the_runtime_allows():
    import torch
    from threadpoolctl import threadpool_info

    runner = FilterRunner(["anomaly", "badamp"], "cpu", threads=1)

    def pools():  # OpenMP's count is per thread: read in the filter's own thread
        return torch.get_num_threads(), {(p["internal_api"], p["num_threads"]) for p in threadpool_info()}

    for f in runner.filters:
        torch_threads, found = f.executor.submit(pools).result()
        assert torch_threads == 1 and found and all(n == 1 for _, n in found), found
