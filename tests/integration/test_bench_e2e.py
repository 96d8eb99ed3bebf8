"""`alert-broker bench e2e` at a small scale: every figure of the table is measured through the
embedded broker (no timing is asserted: the benchmark reports ratios, the tests check it runs
and that nothing is lost)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration


def test_bench_e2e_measures_every_figure(tmp_path):
    out, table = tmp_path / "e2e.json", tmp_path / "performance.md"
    run = subprocess.run([sys.executable, "-m", "broker.tools.cli", "bench", "e2e", "--surveys", "ztf",
                          "--scale", "0.02", "--latency-s", "5", "--history-lengths", "10,100", "--out", str(out), "--markdown", str(table)],
                         cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    s = result["summary"]
    for key in ("ceiling_alerts_per_s", "pipeline_alerts_per_s", "pipeline_decode_workers_0_alerts_per_s",
                "pipeline_decode_workers_1_alerts_per_s", "pipeline_decode_workers_2_alerts_per_s",
                "naive_alerts_per_s", "p99_latency_s_at_256", "p99_latency_s_at_80pct",
                "live_capacity_alerts_per_s", "p99_latency_s_at_80pct_live", "peak_rss_mb", "two_pipelines_alerts_per_s", "burst_drained_s",
                "visit_last_out_s_max", "visit_p99_s_max"):
        assert s[key] > 0, key
    ztf = result["surveys"]["ztf"]
    assert ztf["pipeline"]["consumed"] == ztf["alerts"] == ztf["ceiling"]["messages"]
    assert all(run["consumed"] == ztf["alerts"] for run in ztf["pipeline_by_decode_workers"].values())
    naive = ztf["naive_runs_alerts_per_s"]  # before and after the pipelines; the faster counts
    assert len(naive) == 2 and s["naive_alerts_per_s"] == max(naive) > 0
    # Rubin's cadence: three visits into one pipeline, each alert annotated or dead-lettered
    cadence = ztf["visits"]
    assert cadence["lost"] == 0 and cadence["out"] == cadence["alerts"] == 3 * cadence["per_visit"]
    assert [v["alerts"] for v in cadence["visits"]] == [cadence["per_visit"]] * 3
    assert all(v["annotated"] > 0.9 * v["alerts"] and v["last_out_s"] > 0 for v in cadence["visits"])
    assert s["burst_drained_s"] == cadence["visits"][0]["last_out_s"]
    assert cadence["every_s"] == pytest.approx(39.0 * cadence["per_visit"] / 10_000)
    assert {"decode", "produce", "commit"} <= set(ztf["pipeline"]["stage_seconds"])
    assert "| pipeline / ceiling |" in table.read_text()
    # 256/s, then 80% of the pipeline's backlog rate and 80% of what came out while offered live
    offered = [row["offered_per_s"] for row in ztf["latency"]]
    rate, live = s["pipeline_alerts_per_s"], ztf["live_capacity"]
    assert live["offered_per_s"] == pytest.approx(rate) and live["offered_alerts"] > 0
    assert offered[0] == 256.0 and offered[1:] == pytest.approx([0.8 * rate, 0.8 * live["alerts_per_s"]])
    assert "| p99 latency at 80% of the live capacity (s) |" in table.read_text()
    # Cost against history length: at a fixed span of a year, and one point a night
    for key in ("history_length_one_year", "history_length"):
        assert set(result[key]) >= {"badamp", "anomaly", "transit"}
        assert all(set(r["us_per_alert"]) == {"10", "100"} for r in result[key].values())
    assert "The points spread over one year" in table.read_text()
    # Where the cores went, in the rates' own windows (start-up not in them)
    for key in ("ceiling_cpu_us_per_alert", "pipeline_cpu_us_per_alert", "broker_cpu_us_per_alert",
                "pipeline_cores_busy", "cores_busy_at_80pct", "load_generator_cores_at_80pct"):
        assert s[key] > 0, key
    assert s["pipeline_cores_busy"] <= result["cores"] + 0.5  # sampled every 0.2 s: a little slack
    assert "| CPU per alert: the pipeline and its decode workers (us) |" in table.read_text()
    # The backlog was written before the pipeline joined: reading each partition to its end closes
    # its last exposure run at once, so no run waits out batch.exposure_quiet_s (2 s) at the end.
    assert ztf["pipeline"]["holding_seconds"] < 2.0
    assert s["pipeline_sustained_alerts_per_s"] >= s["pipeline_alerts_per_s"]
