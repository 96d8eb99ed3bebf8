"""Light-curve features shared by filters, computed once per alert per batch.

The 54 SNAD features (``feature_snad4_r_100.json``: the set SNAD and Fink's anomaly module
use), computed with the ``light-curve`` package on the r-band total-flux magnitudes of the
alert history. The JSON was written by an older ``light-curve``; :func:`snad_extractors`
converts its one outdated block (the periodogram's frequency grid) and builds the same
extractors. :func:`history_features` caches its answer on the batch, so ``badamp`` and
``anomaly`` in one pipeline pay for the features once.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from broker.batch import BAND_CODE, DETECTION, NJY_ZEROPOINT_MAG, AlertBatch

SNAD_JSON = Path(__file__).resolve().parent / "feature_snad4_r_100.json"
MIN_POINTS = 8  # r-band detections needed before the history features mean anything


def _modernise(node):
    """Rewrite pre-0.10 ``Periodogram`` JSON into the form ``light-curve`` 0.13 reads."""
    if isinstance(node, list):
        return [_modernise(n) for n in node]
    if not isinstance(node, dict):
        return node
    if "Periodogram" in node and "freq_grid_strategy" not in node["Periodogram"]:
        p = node["Periodogram"]
        return {"Periodogram": {
            "freq_grid_strategy": {"Dynamic": {"resolution": p["resolution"],
                                               "max_freq_factor": p["max_freq_factor"],
                                               "nyquist": p["nyquist"]}},
            "spectrum_features": _modernise(p["features"]),
            "phase_features": [],
            "peaks": p["peaks"],
            "periodogram_algorithm": p["periodogram_algorithm"],
            "normalization": "Psd",
        }}
    return {k: _modernise(v) for k, v in node.items()}


@lru_cache(maxsize=1)
def snad_extractors():
    """(magnitude extractor, flux extractor, flux zero point) as SNAD defined them."""
    import light_curve as lc

    spec = json.loads(SNAD_JSON.read_text())
    magn = lc.feature_from_json(json.dumps(_modernise(spec["magn"])))
    flux = lc.feature_from_json(json.dumps(_modernise(spec["flux"]["extractor"])))
    return magn, flux, float(spec["flux"]["zero_point"])


def snad_feature_names(band: str = "r") -> list[str]:
    """Column names as in ``akb_obj_features_snad4.csv`` (older releases said ``period_0``)."""
    magn, flux, _ = snad_extractors()
    names = [n.replace("periodogram_period_", "period_") + f"_magn_{band}" for n in magn.names]
    return names + [f"{n}_flux_{band}" for n in flux.names]


def snad_features(t: np.ndarray, mag: np.ndarray, err: np.ndarray) -> np.ndarray:
    """The 54 features of one magnitude light curve (sorted by time, finite, unique times)."""
    magn, flux_ex, zp = snad_extractors()
    m = magn(t, mag, err, sorted=True, check=False)
    flux = 10.0 ** (-0.4 * (mag - zp))
    ferr = flux * math.log(10) / 2.5 * err
    f = flux_ex(t, flux, ferr, sorted=True, check=False)
    return np.concatenate([m, f])


def _total_flux_points(lc, band: str) -> tuple[np.ndarray, np.ndarray]:
    """(n, L) total flux (reference + difference where the reference is known) and the mask
    of its usable detections in ``band``, for every alert of a batch at once."""
    total = np.where(np.isfinite(lc.ref_flux), lc.ref_flux + lc.flux, lc.flux)
    ok = (lc.kind == DETECTION) & (lc.band == BAND_CODE[band]) & np.isfinite(lc.time) & np.isfinite(total) \
        & (total > 0) & np.isfinite(lc.flux_err) & (lc.flux_err > 0)
    return total, ok


def total_mag_light_curve(batch: AlertBatch, i: int, band: str = "r", points=None):
    """(t, mag, err) of one alert's detections in ``band`` from total flux (ref + difference).
    ``points``: :func:`_total_flux_points` of the batch, when already computed."""
    lc = batch.lc
    total, ok = points if points is not None else _total_flux_points(lc, band)
    row = ok[i]
    t, total, err = lc.time[i][row], total[i][row], lc.flux_err[i][row]
    t, first = np.unique(t, return_index=True)  # duplicate epochs break the periodogram
    total, err = total[first], err[first]
    mag = NJY_ZEROPOINT_MAG - 2.5 * np.log10(total)
    return t, mag, 2.5 / math.log(10) * err / total


@dataclass
class HistoryFeatures:
    """``X[k]`` are the features of alert ``rows[k]``; an alert without features has a reason
    in ``why_not`` (too short a history, or one ``light-curve`` rejects). ``points``: usable
    r-band detections per alert of the batch."""

    rows: np.ndarray
    X: np.ndarray
    why_not: dict[int, str]
    points: np.ndarray


def history_features(batch: AlertBatch) -> HistoryFeatures:
    """The SNAD features of every alert with enough r-band history. Cached on the batch:
    filters run one after another on the same batch object, so the cost is paid once."""
    cached = batch.derived.get("snad_r")
    if cached is not None:
        return cached
    rows, feats = [], []
    total, ok = _total_flux_points(batch.lc, "r")
    # Distinct epochs per alert for the whole batch at once: only histories long enough are
    # read one by one (most alerts' are not).
    epochs = np.sort(np.where(ok, batch.lc.time, np.nan), axis=1)
    points = (ok.sum(axis=1) - (np.diff(epochs, axis=1) == 0).sum(axis=1)).astype(np.int64)
    why = {int(i): f"short_history:<{MIN_POINTS} r-band detections" for i in np.flatnonzero(points < MIN_POINTS)}
    for i in map(int, np.flatnonzero(points >= MIN_POINTS)):
        try:
            feats.append(snad_features(*total_mag_light_curve(batch, i, points=(total, ok))))
            rows.append(i)
        except ValueError as exc:
            why[i] = f"features_failed:{exc}"[:120]
    X = np.vstack(feats) if feats else np.empty((0, len(snad_feature_names())))
    out = HistoryFeatures(np.asarray(rows, dtype=np.int64), X, why, points)
    batch.derived["snad_r"] = out
    return out
