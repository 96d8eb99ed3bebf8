"""The ``transit`` filter and offline scoring of light-curve files.

Per alert: the history in one band (detections and forced photometry, total flux where the
survey gives a reference flux), binned when denser than 10 minutes, detrended and
pre-whitened, searched by BLS for up to three different candidates, each scored by the CNN in
one batched forward pass over the whole alert batch on the configured device, then vetted
(an eclipsing binary's tell caps the score). Score: the reported candidate's calibrated
probability (the strongest signal among those scoring >= 0.5, else the best-scoring one);
details: its period, epoch (MJD), depth, duration, SNR, transit count and vetting. Histories
too short to hold several transits get a null score with the reason.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from broker.batch import DETECTION, FORCED, AlertBatch
from filters.base import Filter, FilterContext, FilterResult
from filters.evaluation import apply_isotonic
from filters.transit.lightcurve import LightCurve, bin_dense, combine, prepare
from filters.transit.readers import LightCurveError, load
from filters.transit.search import MIN_POINTS, Candidate, find_candidates, too_little_data
from filters.transit.vetting import VETOED_SCORE_CAP

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


class TransitScorer:
    """Weights and calibration loaded once; scores candidate lists in one forward pass."""

    def __init__(self, model_dir: Path | None = None, device: str = "cpu"):
        from filters.transit.model import load_ensemble

        directory = Path(model_dir or ARTIFACTS)
        self.device = device
        self.model = load_ensemble(directory / "transit_cnn.pt", device)
        self.calibration = json.loads((directory / "transit_calibration.json").read_text())
        metrics = json.loads((directory / "transit_metrics.json").read_text())
        self.threshold = float(metrics["threshold_calibrated"])

    def probabilities(self, cands: list[Candidate]) -> np.ndarray:
        """Calibrated CNN probabilities, capped at ``VETOED_SCORE_CAP`` for candidates that
        fail vetting (an eclipsing binary's tell outweighs what the network saw)."""
        from filters.transit.model import predict_logits, to_arrays

        raw = predict_logits(self.model, *to_arrays(cands), device=self.device)
        probs = apply_isotonic(self.calibration, raw)
        vetoed = np.array([bool(c.vetting) for c in cands], bool)
        return np.where(vetoed, np.minimum(probs, VETOED_SCORE_CAP), probs)

    def search(self, lc: LightCurve, max_candidates: int = 3) -> tuple[list[Candidate], str | None]:
        clean = prepare(bin_dense(lc))
        reason = too_little_data(clean)
        if reason:
            return [], reason
        cands = find_candidates(clean, max_candidates=max_candidates, device=self.device)
        return cands, None if cands else "no_candidate"


def candidate_details(c: Candidate) -> dict:
    return {"period_days": c.period, "epoch": c.epoch, "depth": c.depth,
            "duration_hours": c.duration * 24, "n_transits": float(c.n_transits),
            "points_in_transit": float(c.points_in_transit), "snr": c.snr,
            "vetting": "+".join(c.vetting) or "pass"}


def reported(cands: list[Candidate], probs: np.ndarray, threshold: float = 0.5) -> int:
    """Which candidate an alert or file reports: the strongest signal (highest SNR) among those
    scoring at least ``threshold``, else the best-scoring one. Candidates come strongest
    first, so a star's obvious planet is not displaced by a weaker, slightly higher score."""
    good = [k for k in range(len(cands)) if probs[k] >= threshold]
    if good:
        return max(good, key=lambda k: cands[k].snr)
    return int(np.argmax(probs))


def best_band_points(batch: AlertBatch) -> tuple[np.ndarray, np.ndarray]:
    """For the whole batch at once: an (n, L) mask of each alert's usable points (detections
    and forced photometry with a finite flux) in its best-sampled band, and which flux those
    points give: ``total`` where the survey gives the flux under each point (ZTF's reference
    magnitude, LSST's scienceFlux), ``difference`` (a transit's shape is then lost), ``mixed``
    or ``none``. Most alert histories are far too short to search: this settles them without
    a Python step per alert."""
    lc = batch.lc
    usable = ((lc.kind == DETECTION) | (lc.kind == FORCED)) & np.isfinite(lc.flux)
    codes = range(-1, int(lc.band.max(initial=-1)) + 1)
    counts = np.stack([(usable & (lc.band == b)).sum(axis=1) for b in codes], axis=1)
    best = counts.argmax(axis=1) - 1  # ties: the lowest band code
    sel = usable & (lc.band == best[:, None])
    points, with_ref = sel.sum(axis=1), (sel & np.isfinite(lc.ref_flux)).sum(axis=1)
    which = np.where(with_ref == points, "total", np.where(with_ref == 0, "difference", "mixed")).astype(object)
    which[points == 0] = "none"
    return sel, which


def alert_light_curve(batch: AlertBatch, i: int, sel: np.ndarray) -> LightCurve:
    """Alert ``i``'s points chosen by ``sel`` (:func:`best_band_points`), as total flux
    (reference + difference) where the reference flux is known."""
    lc, row = batch.lc, sel[i]
    ref = lc.ref_flux[i][row]
    return LightCurve(lc.time[i][row], lc.flux[i][row] + np.where(np.isfinite(ref), ref, 0.0), lc.flux_err[i][row])


class TransitFilter(Filter):
    name = "transit"
    commands = "filters.transit.commands"
    version = "2.2.0"
    fields = {"ztf": ("mjd",), "lsst": ("mjd",)}
    max_batch = 256

    def setup(self, context: FilterContext) -> None:
        super().setup(context)
        self.scorer = TransitScorer(context.model_dir or context.options.get("model_dir"), context.device)
        self.max_candidates = int(context.options.get("max_candidates", 3))

    def score(self, batch: AlertBatch) -> FilterResult:
        result = FilterResult.empty(batch.n)
        self.null_unsupported(batch, result)
        owners, cands = [], []
        sel, which = best_band_points(batch)
        for i in np.flatnonzero([r is None for r in result.reason]):
            result.details[i]["flux"] = which[i]
        # The common case for alerts, said before anything else: too short to search.
        result.set_null(sel.sum(axis=1) < MIN_POINTS, f"too_few_points:<{MIN_POINTS}")
        for i in np.flatnonzero([r is None for r in result.reason]):
            lc = alert_light_curve(batch, i, sel)
            if np.median(lc.flux) <= 0:
                result.set_null(np.arange(batch.n) == i, "no_positive_baseline_flux")
                continue
            found, reason = self.scorer.search(lc, self.max_candidates)
            if reason:
                result.set_null(np.arange(batch.n) == i, reason)
            owners += [int(i)] * len(found)
            cands += found
        if cands:
            probs = self.scorer.probabilities(cands)
            for i in set(owners):
                mine = [k for k, o in enumerate(owners) if o == i]
                best = mine[reported([cands[k] for k in mine], probs[mine])]
                result.score[i] = float(probs[best])
                result.details[i].update(candidate_details(cands[best]))
                result.details[i]["candidates"] = float(len(mine))
        return result


def _read(paths: list[str]) -> tuple[list[tuple[str, LightCurve]], list[dict]]:
    curves, failed = [], []
    for p in paths:
        try:
            curves.append((p, load(p)))
        except LightCurveError as exc:
            failed.append({"file": p, "score": None, "reason": f"unreadable: {exc}"})
    return curves, failed


def score_files(paths: list[str], combine_files: bool = False, model_dir: Path | None = None,
                device: str = "cpu", plot_dir: str | None = None) -> list[dict]:
    """``alert-broker score transit``: one result per light curve (or one for --combine); a
    file that cannot be read gets a row saying why, not a traceback."""
    scorer = TransitScorer(model_dir, device)
    curves, out = _read(paths)
    if combine_files and curves:
        groups = [("+".join(p for p, _ in curves), combine([lc for _, lc in curves]))]
    else:
        groups = curves
    for name, lc in groups:
        t0 = time.perf_counter()
        cands, reason = scorer.search(lc)
        row: dict = {"file": name}
        if reason:
            row.update(score=None, reason=reason)
        else:
            probs = scorer.probabilities(cands)
            k = reported(cands, probs)
            c = cands[k]
            row.update(score=float(probs[k]), period_days=c.period, epoch=c.epoch, depth=c.depth,
                       duration_hours=c.duration * 24, n_transits=c.n_transits, snr=c.snr,
                       vetting="+".join(c.vetting) or "pass", above_threshold=bool(probs[k] >= scorer.threshold),
                       candidates=[{"period_days": x.period, "score": float(p), "snr": x.snr,
                                    "vetting": "+".join(x.vetting) or "pass"} for x, p in zip(cands, probs)])
            if plot_dir:
                from filters.transit.plot import plot_candidate

                Path(plot_dir).mkdir(parents=True, exist_ok=True)
                verdict = "transit" if probs[k] >= scorer.threshold else "no transit"
                safe = Path(name.split("+")[0]).stem
                plot_candidate(c, f"{safe}: {verdict} (score {probs[k]:.3f})", Path(plot_dir) / f"{safe}.png")
        row["points"] = len(lc)
        row["seconds"] = round(time.perf_counter() - t0, 2)
        out.append(row)
    return out
