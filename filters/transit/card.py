"""Model card and plots of the transit filter."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from filters import plots
from filters.transit.filter import TransitFilter
from filters.transit.plot import plot_candidate
from filters.transit.vetting import VETOED_SCORE_CAP


RECALL_GOAL = 0.9


def _goal(m: dict) -> str:
    rec = m["recall_at_1pct_fpr_snr_ge_10"]
    cad = {k: _fmt(v["recall_at_global_threshold_snr_ge_10"]) for k, v in m["by_cadence"].items()}
    text = f"**Goal** (issue #5): recall >= {RECALL_GOAL} at 1% FPR for SNR >= 10. "
    if rec >= RECALL_GOAL:
        return text + (
            f"Met: {rec:.3f} on the mixed test set (bootstrap 95% CI {_ci(m, 'recall_at_1pct_fpr_snr_ge_10_ci95')}: the 1% tail rests on "
            f"few negatives, so the margin is within sampling error). Dense cadences carry it (K2-like "
            f"{cad.get('k2')}, TESS-like {cad.get('tess')}); sparse survey cadences stay well below "
            f"({cad.get('survey')}): with one visit a night a transit is a handful of single-point dips, and "
            "eclipsing binaries with faint secondaries look the same.")
    return text + (
        f"**Not met**: {rec:.3f} on the mixed test set (K2-like {cad.get('k2')}, TESS-like {cad.get('tess')}, "
        f"sparse survey {cad.get('survey')}). The negatives now include heartbeat, ellipsoidal, pulsating and "
        "spotted stars and eclipsing binaries whose secondaries can be faint, and the 1%-FPR threshold is set "
        "by the binaries and heartbeat stars that pass vetting (table above); with one visit a night a "
        "transit is a handful of single-point dips, which noise and systematics also make by chance.")


def _recall_vs_snr(metrics: dict, out: Path) -> str:
    import matplotlib.pyplot as plt

    rows = [r for r in metrics["recall_by_snr"] if r["recall"] is not None]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([np.sqrt(r["snr"][0] * r["snr"][1]) for r in rows], [r["recall"] for r in rows], "o-")
    ax.set(xscale="log", xlabel="transit SNR (as sampled)", ylabel="recall at 1% FPR", ylim=(0, 1.02),
           title="Recall against signal-to-noise (held-out)")
    ax.axvline(10, color="k", ls=":", lw=0.8)
    return plots.save(fig, out / "transit_recall_vs_snr.png")


def _by_kind_plot(metrics: dict, out: Path) -> str:
    import matplotlib.pyplot as plt

    kinds = metrics.get("by_kind", {})
    names = list(kinds)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(names))
    ax.bar(x - 0.2, [kinds[k]["score_ge_0.5"] for k in names], 0.4, label="score >= 0.5")
    ax.bar(x + 0.2, [kinds[k]["vetoed"] for k in names], 0.4, label="vetted out")
    ax.set_xticks(x, names, rotation=35, ha="right")
    ax.set(ylim=(0, 1.02), ylabel="share of light curves", title="By class of star (held-out simulation)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return plots.save(fig, out / "transit_by_class.png")


def _ci(m: dict, key: str) -> str:
    lo, hi = m.get(key, (float("nan"), float("nan")))
    return f"{lo:.3f}-{hi:.3f}"


def _fmt(v) -> str:
    return "" if v is None else f"{v:.3f}"


def write_card(out: Path, m: dict, test: dict, ev: dict) -> None:
    y = test["injected"]
    figs = plots.roc_pr(y, {"transit CNN": ev["raw"]}, out, "transit")
    figs.append(_recall_vs_snr(m, out))
    figs.append(plots.calibration(y, 1 / (1 + np.exp(-np.clip(ev["raw"], -50, 50))), ev["calibrated"], out, "transit"))
    examples = []
    thr = m["threshold_raw"]
    for label, sel in (("true positive", (y == 1) & (ev["raw"] >= thr)), ("false positive", (y == 0) & (ev["raw"] >= thr)),
                       ("missed transit", (y == 1) & (ev["raw"] < thr))):
        idx = np.flatnonzero(sel)
        if len(idx):
            i = int(idx[0])
            name = f"transit_example_{label.replace(' ', '_')}.png"
            examples.append(plot_candidate(test["candidates"][i], f"{label} ({test['kind'][i]}, {test['cadence'][i]} cadence)", out / name))
    lo, hi = m["auc_ci95"]
    by_def = m["recall_at_1pct_fpr_snr_ge_10_by_definition"]
    snr_rows = "\n".join(
        f"| {r['snr'][0]}-{r['snr'][1]} | {r['n']} | " + ("" if r["recall"] is None else f"{r['recall']:.3f}") + " |"
        for r in m["recall_by_snr"])
    kinds = "\n".join(f"| {k} | {v['n']} | {v['above_threshold']:.3f} | {v['score_ge_0.5']:.3f} | {v['vetoed']:.3f} |"
                       for k, v in m.get("by_kind", {}).items())
    figs.append(_by_kind_plot(m, out))
    dev = json.loads((out / "devset.json").read_text()) if (out / "devset.json").exists() else None
    text = f"""# Model card: `transit` {TransitFilter.version}

An ensemble of {m.get('members', 1)} 1-D CNNs (PyTorch; the same training from seeds {m['seed']}-{m['seed'] + m.get('members', 1) - 1}, logits averaged) over AstroNet-style folded views of the strongest Box-Least-Squares candidates,
plus physical scalars (SNR, depth, duration/period, duration against a Sun-like star's, period,
transit count, points in transit, odd/even and secondary significance and their size relative to
the depth, share of the folded view holding data, share of the signal in the strongest single
transit). Light curves are read with quality flags applied (`readers.py`), binned to 10 minutes
when the cadence is finer, detrended with a running median, pre-whitened (significant
Lomb-Scargle sinusoids) and detrended again; the noise is measured from the light curve itself,
per segment, never taken from the file's error bars; significances are further divided by a
red-noise factor measured from boxes of the transit's width at other phases. The period search
runs from 0.2 d to a third of the baseline, each best period is refined on a fine local grid,
and later candidates must be different signals (no repeats or simple ratios of earlier ones); a
fold carried by one dip masks only that dip before the next search.
**Vetting** then caps at {VETOED_SCORE_CAP} the score of a candidate that shows an eclipsing binary's tell
(`vetting` in the annotation: `secondary_eclipse`, `odd_even_depths`, `brighter_at_half_phase`,
`brightening_beside_dip` (a heartbeat star, periods from 1 d), `uneven_transits`, `too_deep_for_a_planet`;
and `star_is_eclipsing_binary` for the weaker candidates of a star whose strongest signal is a
binary's). Odd, even and single-transit depths are amplitudes of the mean folded dip fitted to
each group of points, so cadences falling at different places in the transit do not make a
planet's transits look unequal. The phase-0.5 tests (secondary eclipse, brighter at half phase)
must also hold without the single strongest occultation window: another planet's one transit
falling at phase 0.5 (Kepler-10 c's at Kepler-10 b's) is not a secondary eclipse. Written by
`alert-broker train transit` (`--reevaluate` recalibrates and reports an existing model on light
curves searched by the current code, after a search or vetting change).

## Data

Simulated light curves only (`filters/transit/simulate.py`): Kepler/K2-like, TESS-like and
sparse survey-like cadences; `batman` transits with periods from 0.2 d and SNR drawn in [3, 100]
(70%) or [100, 10,000] (30%), 15% grazing; hard negatives: eclipsing binaries (with and
without secondaries, V-shaped and grazing), ellipsoidal and heartbeat binaries, pulsators
(delta Scuti-like, RR Lyrae-like), spotted rotators with evolving spots, sinusoidal variables,
flares, outliers and step systematics, noise. Training: {m['n_train']} searched light curves (seed {m['seed']}; cadence mix
K2/TESS/survey {m.get('train_cadence_weights', 'default')}, sparse cadences oversampled), balanced
batches, circular-shift and time-reversal augmentation, {m['epochs']} epochs; isotonic calibration
(smoothed: knots at the middle of each step) on a validation set (seed {m['seed'] + 1}, test mix).
Training length and ensemble size were compared on that validation set (recall at 1% FPR for
SNR >= 10, 10,000 training light curves: 5 networks x 25 epochs 0.862, 8 x 25 0.876, 5 x 40
0.877, differences within its sampling error) and on the real development set, where 5 x 40 put
the binary KOI-1003 above 0.5 (0.49 with 5 x 25): 5 x 25 kept. The training set size was then
compared on a 5,000-curve validation set (seed 2027, searched by the current code): 10,000
training light curves 0.895 (AUC 0.932), 20,000 0.912 (AUC 0.940): 20,000 kept;
**held-out test: {m['n']} light curves simulated with seed {m['test_seed']}**, {m['n_injected']} with an injected planet.
A planet whose search returns another period still counts as a positive (a miss unless scored
high). SNR is the matched-filter signal-to-noise of the transit as sampled: sqrt(sum over the
observed points of (1 - model)^2) / noise, with the noise measured on the detrended light curve
(robust standard deviation). The real development set below was used to choose the vetting
rules and the search settings, never for training.

## Held-out results (simulation)

| metric | value |
|---|---|
| ROC AUC (with vetting) | {m['auc']:.4f} (95% CI {lo:.4f}-{hi:.4f}) |
| ROC AUC of the network alone | {m.get('cnn_auc_without_vetting', float('nan')):.4f} |
| PR-AUC | {m['pr_auc']:.4f} |
| recall at 1% FPR, all injected | {m['recall_at_1pct_fpr']:.3f} |
| **recall at 1% FPR, SNR >= 10** (as sampled, measured noise) | **{m['recall_at_1pct_fpr_snr_ge_10']:.3f}** (95% CI {_ci(m, 'recall_at_1pct_fpr_snr_ge_10_ci95')}) |
| recall at 1% FPR, SNR >= 100 | {m.get('recall_at_1pct_fpr_snr_ge_100', float('nan')):.3f} |
| same as SNR >= 10, only planets with >= 3 transits sampled | {by_def['observed_3_transits']:.3f} |
| recall at 1% FPR, expected SNR >= 10 against measured noise | {by_def['expected_measured_noise']:.3f} |
| threshold (calibrated probability) at 1% FPR | {m['threshold_calibrated']:.3f} |

| SNR (as sampled) | n | recall at 1% FPR |
|---|---|---|
{snr_rows}

By cadence, at the same threshold (SNR >= 10 recall; false-positive rate):

| cadence | light curves | recall, SNR >= 10 | FPR |
|---|---|---|---|
""" + "\n".join(f"| {k} | {v['n']} | {_fmt(v['recall_at_global_threshold_snr_ge_10'])} | {_fmt(v['fpr_at_global_threshold'])} |"
                for k, v in m["by_cadence"].items()) + """

By class of star (held-out simulation): share above the 1%-FPR threshold, share scoring >= 0.5,
share vetted out. For `planet` the first two are recall; for every other class they are where
the filter fails.

| class | light curves | above threshold | score >= 0.5 | vetted out |
|---|---|---|---|---|
""" + kinds + "\n\n" + _goal(m) + """

""" + "\n".join(f"![{f}]({f})" for f in figs) + "\n\n## Examples (held-out)\n\n" + \
        "\n".join(f"![{f}]({f})" for f in examples) + "\n"
    if dev:
        from filters.transit.development import section

        text += "\n" + section(dev)
    (out / "MODEL_CARD.md").write_text(text)
