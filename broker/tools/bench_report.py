"""The tables of ``bench e2e``: the headline figures (the issue's JSON keys) and the markdown
written to docs/performance.md, from the results ``broker/tools/bench_e2e.py`` measured."""
from __future__ import annotations

import os

from broker.tools.bench_ceiling import REPO


def summarise(results: dict) -> dict:
    """The headline figures (the issue's JSON keys; ``lsst_`` prefix for LSST)."""
    flat = {}
    for survey, r in results["surveys"].items():
        p = "" if survey == "ztf" else f"{survey}_"
        flat |= {f"{p}ceiling_alerts_per_s": r["ceiling"]["alerts_per_s"],
                 **{f"{p}ceiling_decode_workers_{w}_alerts_per_s": c["alerts_per_s"]
                    for w, c in r["ceiling_by_decode_workers"].items()},
                 f"{p}pipeline_alerts_per_s": r["pipeline"]["alerts_per_s"],
                 **{f"{p}pipeline_decode_workers_{w}_alerts_per_s": run["alerts_per_s"]
                    for w, run in r["pipeline_by_decode_workers"].items()},
                 f"{p}pipeline_decode_workers": r["pipeline_decode_workers"],
                 f"{p}naive_alerts_per_s": r["naive"]["alerts_per_s"],
                 f"{p}two_pipelines_alerts_per_s": r["two_pipelines"]["alerts_per_s"],
                 f"{p}pipeline_over_ceiling": r["pipeline"]["alerts_per_s"] / r["ceiling"]["alerts_per_s"],
                 f"{p}pipeline_holding_s": r["pipeline"]["holding_seconds"],
                 f"{p}pipeline_sustained_alerts_per_s": r["pipeline"]["sustained_alerts_per_s"],
                 f"{p}sustained_over_ceiling": r["pipeline"]["sustained_alerts_per_s"] / r["ceiling"]["alerts_per_s"],
                 f"{p}pipeline_over_naive": r["pipeline"]["alerts_per_s"] / r["naive"]["alerts_per_s"],
                 f"{p}p99_latency_s_at_256": r["latency"][0]["p99_s"],
                 f"{p}p99_latency_s_at_80pct": r["latency"][1]["p99_s"],
                 **_live_figures(r, p),
                 **_visit_figures(r, p),
                 # the pipeline's process plus its decode workers (each counted at the largest one's peak)
                 f"{p}peak_rss_mb": (r["pipeline"]["peak_rss_mib"] + r["pipeline"].get("decode_workers", 0)
                                     * r["pipeline"].get("worker_peak_rss_mib", 0)) * 1.048576,
                 **_cpu_figures(r, p)}
    return flat


def _live_figures(r: dict, p: str) -> dict:
    """The live capacity (alerts offered faster than the machine sustains them) and the p99 at
    80% of it; runs before the live-capacity row had none."""
    if "live_capacity" not in r:
        return {}
    cap = r["live_capacity"]
    return {f"{p}live_capacity_alerts_per_s": cap["alerts_per_s"],
            f"{p}live_capacity_generator_alerts_per_s": cap["generator_alerts_per_s"],
            f"{p}live_over_pipeline": cap["alerts_per_s"] / r["pipeline"]["alerts_per_s"],
            f"{p}p99_latency_s_at_80pct_live": r["latency"][2]["p99_s"],
            f"{p}rate_at_80pct_live": r["latency"][2]["offered_per_s"]}


def _visit_figures(r: dict, p: str) -> dict:
    """Rubin's cadence: the first visit is the burst (an idle pipeline handed 10,000 alerts);
    the longest any visit took to its last annotation, and the p99 over every visit's alerts."""
    if "visits" not in r:  # runs before the cadence row: a burst alone
        return {f"{p}burst_drained_s": r["burst"]["drained_s"]}
    rows = r["visits"]["visits"]
    return {f"{p}burst_drained_s": rows[0]["last_out_s"],
            f"{p}visit_last_out_s_max": max(v["last_out_s"] for v in rows),
            f"{p}visit_p99_s_max": max(v["p99_s"] for v in rows),
            f"{p}visits_out_before_next": float(all(v["out_before_next"] is not False for v in rows)),
            f"{p}visits_lost": r["visits"]["lost"]}


def _cpu_figures(r: dict, p: str) -> dict:
    """Where the cores went: CPU per alert of the fastest ceiling, of the fastest pipeline and of
    the broker while it ran, the cores those two kept busy, and the cores busy (pipeline, broker,
    load generator) while 80% of the pipeline's rate was offered. NaN where not measured."""
    nan = float("nan")
    pipe, ceil = r["pipeline"], r["ceiling"]
    alerts = pipe["annotated"] + pipe["dead_lettered"]
    at80 = r["latency"][1].get("cores_busy", {})
    return {f"{p}ceiling_cpu_us_per_alert": ceil.get("cpu_s", nan) / ceil["messages"] * 1e6,
            f"{p}pipeline_cpu_us_per_alert": pipe.get("cpu_s", nan) / alerts * 1e6,
            f"{p}broker_cpu_us_per_alert": pipe.get("broker_cpu_s", nan) / alerts * 1e6,
            f"{p}pipeline_cores_busy": (pipe.get("cpu_s", nan) + pipe.get("broker_cpu_s", nan)) / pipe["busy_seconds"],
            f"{p}cores_busy_at_80pct": sum(at80.values()) if at80 else nan,
            f"{p}load_generator_cores_at_80pct": at80.get("load_generator", nan)}


TARGETS_MET = [("pipeline / ceiling >= 0.85 (ZTF)", "pipeline_over_ceiling", 0.85, ">="),
               ("pipeline / ceiling >= 0.7 (LSST)", "lsst_pipeline_over_ceiling", 0.7, ">="),
               ("the same without the end-of-stream exposure hold (ZTF)", "sustained_over_ceiling", 0.85, ">="),
               ("the same without the end-of-stream exposure hold (LSST)", "lsst_sustained_over_ceiling", 0.7, ">="),
               ("pipeline / naive >= 10 (ZTF)", "pipeline_over_naive", 10, ">="),
               ("pipeline / naive >= 10 (LSST)", "lsst_pipeline_over_naive", 10, ">="),
               ("p99 <= 1 s at 256 alerts/s (ZTF)", "p99_latency_s_at_256", 1.0, "<="),
               ("p99 <= 1 s at 256 alerts/s (LSST)", "lsst_p99_latency_s_at_256", 1.0, "<="),
               ("p99 <= 2 s at 80% of the pipeline rate (ZTF)", "p99_latency_s_at_80pct", 2.0, "<="),
               ("p99 <= 2 s at 80% of the pipeline rate (LSST)", "lsst_p99_latency_s_at_80pct", 2.0, "<="),
               ("p99 <= 2 s at 80% of the live capacity (ZTF)", "p99_latency_s_at_80pct_live", 2.0, "<="),
               ("p99 <= 2 s at 80% of the live capacity (LSST)", "lsst_p99_latency_s_at_80pct_live", 2.0, "<="),
               ("peak RSS <= 1,500 MB (ZTF run)", "peak_rss_mb", 1500, "<="),
               ("peak RSS <= 1,500 MB (LSST run)", "lsst_peak_rss_mb", 1500, "<=")]


HISTORY_TABLES = [
    ("history_length_one_year", "The points spread over one year, the longest history an LSST alert carries (the real "
                                "ZTF alerts of ../shared/data span a median 29 days):"),
    ("history_length", "One point a night, so the span grows with the points (10,000 points: 27 years). The SNAD "
                       "periodogram's grid has 480 frequencies per day of span (Nyquist 24/day x 2, resolution 10), "
                       "so this measures the span as much as the points:")]


def _history_table(rows: dict) -> list[str]:
    lengths = next(iter(rows.values()))["us_per_alert"]
    out = ["| filter | " + " | ".join(f"{n} points" for n in lengths) + " | exponent |", "|---" * (len(lengths) + 2) + "|"]
    for name, r in rows.items():
        out.append(f"| {name} | " + " | ".join(f"{v:.0f}" for v in r["us_per_alert"].values())
                   + f" | {r['growth_exponent_last_decade']:.2f} |")
    return out


def markdown(results: dict) -> str:
    s = results["summary"]
    cores = results.get("cores", "?")
    lines = ["# Performance: `alert-broker bench e2e`", "",
             "Written by `alert-broker bench e2e --out e2e.json --markdown docs/performance.md`; every figure",
             "was measured in that one run. Real alerts are looped through the embedded broker (Tansu, on the",
             "same machine, a fresh one per survey); the pipeline runs as deployed (`alert-broker run`, default settings, every",
             "installed filter, `batch.decode_workers` = 1: the next batch decodes in a worker process while",
             "this one is scored), and again decoding in its own process (`decode_workers` = 0) and with two",
             "workers; the fastest is the pipeline figure and its setting is used for the rows below it. The",
             "ceiling consumes and decodes only, in a process of its own, with the same three settings, after",
             "one unmeasured read of the topic; the fastest is the one the ratio divides by. See",
             "`broker/tools/bench_e2e.py` for what each row measures.", "",
             f"Machine: {results['machine']}; filters on {results.get('device', 'cpu')}; {results['when']}; "
             f"scale {results['scale']} (1 = 50,000 ZTF and 20,000 LSST alerts); Avro records read by "
             f"{results.get('avro_records', 'fastavro')}.", "",
             "Alerts looped from: " + "; ".join(f"{sv}: " + ", ".join(os.path.relpath(p, REPO) for p in r["sources"])
                                               for sv, r in results["surveys"].items()) + ".", "",
             "| | ZTF | LSST |", "|---|---|---|"]
    rows = [("consume + decode, decode workers 1 (default) (alerts/s)", "ceiling_decode_workers_1_alerts_per_s", "{:.0f}"),
            ("consume + decode, in process (alerts/s)", "ceiling_decode_workers_0_alerts_per_s", "{:.0f}"),
            ("consume + decode, decode workers 2 (alerts/s)", "ceiling_decode_workers_2_alerts_per_s", "{:.0f}"),
            ("ceiling: the fastest of the three (alerts/s)", "ceiling_alerts_per_s", "{:.0f}"),
            ("pipeline, every filter, decode workers 1 (default) (alerts/s)", "pipeline_decode_workers_1_alerts_per_s", "{:.0f}"),
            ("pipeline, every filter, decoding in process (alerts/s)", "pipeline_decode_workers_0_alerts_per_s", "{:.0f}"),
            ("pipeline, every filter, decode workers 2 (alerts/s)", "pipeline_decode_workers_2_alerts_per_s", "{:.0f}"),
            ("pipeline: the fastest of the three (alerts/s)", "pipeline_alerts_per_s", "{:.0f}"),
            ("its decode workers", "pipeline_decode_workers", "{:.0f}"),
            ("of its time, waiting with the input drained for the last exposure runs to close (s)",
             "pipeline_holding_s", "{:.1f}"),
            ("pipeline without that wait (alerts/s)", "pipeline_sustained_alerts_per_s", "{:.0f}"),
            ("naive: one alert per batch, the faster of two runs (alerts/s)", "naive_alerts_per_s", "{:.1f}"),
            ("two pipelines, one group (alerts/s)", "two_pipelines_alerts_per_s", "{:.0f}"),
            ("pipeline / ceiling", "pipeline_over_ceiling", "{:.2f}"),
            ("pipeline without the wait / ceiling", "sustained_over_ceiling", "{:.2f}"),
            ("pipeline / naive", "pipeline_over_naive", "{:.0f}"),
            ("p99 latency at 256 alerts/s (s)", "p99_latency_s_at_256", "{:.2f}"),
            ("p99 latency at 80% of pipeline rate (s)", "p99_latency_s_at_80pct", "{:.2f}"),
            ("live capacity: annotations out while alerts are offered faster (alerts/s)",
             "live_capacity_alerts_per_s", "{:.0f}"),
            ("the load generator's rate meanwhile (alerts/s)", "live_capacity_generator_alerts_per_s", "{:.0f}"),
            ("live capacity / pipeline", "live_over_pipeline", "{:.2f}"),
            ("80% of the live capacity (alerts/s)", "rate_at_80pct_live", "{:.0f}"),
            ("p99 latency at 80% of the live capacity (s)", "p99_latency_s_at_80pct_live", "{:.2f}"),
            ("10,000-alert burst drained in (s): the first visit below", "burst_drained_s", "{:.1f}"),
            ("Rubin's cadence, 10,000 alerts every 39 s, 3 visits: the longest from a visit's first produce "
             "to its last annotation (s)", "visit_last_out_s_max", "{:.1f}"),
            ("the largest p99 latency of a visit's alerts (s)", "visit_p99_s_max", "{:.1f}"),
            ("every visit out before the next began (1 = yes)", "visits_out_before_next", "{:.0f}"),
            ("alerts lost over the visits", "visits_lost", "{:.0f}"),
            ("peak RSS of the pipeline and its decode workers (MB)", "peak_rss_mb", "{:.0f}"),
            ("CPU per alert: the fastest ceiling's process (us)", "ceiling_cpu_us_per_alert", "{:.0f}"),
            ("CPU per alert: the pipeline and its decode workers (us)", "pipeline_cpu_us_per_alert", "{:.0f}"),
            ("CPU per alert: the embedded broker while the pipeline ran (us)", "broker_cpu_us_per_alert", "{:.0f}"),
            (f"cores busy while the pipeline ran: pipeline + broker (of {cores})", "pipeline_cores_busy", "{:.2f}"),
            (f"cores busy at 80% of the pipeline rate: pipeline + broker + load (of {cores})",
             "cores_busy_at_80pct", "{:.2f}"),
            ("of which the load generator", "load_generator_cores_at_80pct", "{:.2f}")]
    for label, key, fmt in rows:
        cells = [fmt.format(s[k]) if (k := (key if sv == "ztf" else f"lsst_{key}")) in s else "-"
                 for sv in ("ztf", "lsst")]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    lines += ["", "Share of the pipeline's time inside batches, per stage:", "", "| stage | ZTF | LSST |", "|---|---|---|"]
    shares = {}
    for survey, r in results["surveys"].items():
        stages = r["pipeline"]["stage_seconds"]
        total = sum(stages.values()) or 1.0
        shares[survey] = {k: v / total for k, v in stages.items()}
    for stage in sorted({k for v in shares.values() for k in v}):
        lines.append(f"| {stage} | " + " | ".join(f"{shares.get(sv, {}).get(stage, 0):.1%}" for sv in ("ztf", "lsst")) + " |")
    lines += ["", "Cost per alert (microseconds, batches of 8, the faster of two calls, in memory) against the",
              "history's length, and the exponent of its growth between the two longest (1 = linear).", ""]
    for key, what in HISTORY_TABLES:
        if key in results:
            lines += [what, "", *_history_table(results[key]), ""]
    lines.pop()
    lines += ["", "Targets (issue 13):", "", "| target | measured | met |", "|---|---|---|"]
    for label, key, goal, op in TARGETS_MET:
        if key in s:
            met = s[key] >= goal if op == ">=" else s[key] <= goal
            lines.append(f"| {label} | {s[key]:.2f} | {'yes' if met else 'no'} |")
    return "\n".join(lines) + "\n"
