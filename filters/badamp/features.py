"""Features of the two badamp views.

* Object history: the 54 SNAD light-curve features (``feature_snad4_r_100.json``), computed
  with the ``light-curve`` package on the r-band total-flux magnitudes of the alert history.
  The JSON was written by an older ``light-curve``; :func:`snad_extractors` converts its one
  outdated block (the periodogram's frequency grid) and builds the same extractors.
* Detection + channel: the alert's quality fields plus context per exposure and readout
  channel (ZTF ``pid``/``rcid``, LSST ``visit``/``detector``) among the alerts of the same
  exposure group of the batch (:func:`channel_context`); no state is kept between batches.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from broker.batch import BAND_CODE, DETECTION, NJY_ZEROPOINT_MAG, AlertBatch

HERE = Path(__file__).resolve().parent
SNAD_JSON = HERE / "feature_snad4_r_100.json"
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


def total_mag_light_curve(batch: AlertBatch, i: int, band: str = "r"):
    """(t, mag, err) of one alert's detections in ``band`` from total flux (ref + difference)."""
    lc = batch.lc
    n = lc.length[i]
    sel = (lc.kind[i, :n] == DETECTION) & (lc.band[i, :n] == BAND_CODE[band])
    t = lc.time[i, :n][sel]
    diff = lc.flux[i, :n][sel]
    err = lc.flux_err[i, :n][sel]
    ref = lc.ref_flux[i, :n][sel]
    total = np.where(np.isfinite(ref), ref + diff, diff)
    ok = np.isfinite(t) & np.isfinite(total) & (total > 0) & np.isfinite(err) & (err > 0)
    t, total, err = t[ok], total[ok], err[ok]
    t, first = np.unique(t, return_index=True)  # duplicate epochs break the periodogram
    total, err = total[first], err[first]
    mag = NJY_ZEROPOINT_MAG - 2.5 * np.log10(total)
    return t, mag, 2.5 / math.log(10) * err / total


# -- detection + channel view ---------------------------------------------------------------
DETECTION_FIELDS = {
    "ztf": ("rb", "drb", "nbad", "fwhm", "elong", "magdiff", "sumrat", "seeratio", "mindtoedge",
            "chipsf", "dsnrms", "ssnrms", "scorr", "isdiffpos", "distnr", "classtar", "sigmapsf"),
    "lsst": ("reliability", "snr", "extendedness", "isDipole", "pixelFlags_bad",
             "pixelFlags_saturatedCenter", "pixelFlags_crCenter", "pixelFlags_streakCenter",
             "pixelFlags_edge", "pixelFlags_suspectCenter", "trailLength", "psfChi2",
             "isNegative"),
}
# The per-detection "bogus" indicator each survey's context aggregates.
REAL_BOGUS = {"ztf": "rb", "lsst": "reliability"}
CONTEXT_FEATURES = ("ch_count", "ch_count_ratio", "ch_share", "ch_median_rb", "ch_frac_negative",
                    "ch_frac_low_rb")


def detection_feature_names(survey: str) -> list[str]:
    return list(DETECTION_FIELDS[survey]) + list(CONTEXT_FEATURES)


MIN_EXPOSURE_ALERTS = 20  # below this an exposure's channel statistics are noise: NaN


def channel_context(group: np.ndarray, channel: np.ndarray, ids: np.ndarray, rb: np.ndarray,
                    negative: np.ndarray) -> np.ndarray:
    """:data:`CONTEXT_FEATURES` of each alert among the alerts of its exposure group.

    A failing amplifier shows as a burst of bogus detections from one channel of one
    exposure, which no single detection reveals. ``group`` says which alerts saw each other:
    the runtime hands the filter whole exposure runs (all the alerts of one exposure that
    arrived together in one partition, see ``broker/exposure_runs.py``), so the features are a
    function of the input, not of how many pods share the stream or where a batch was cut.
    Group < 0 (no exposure id) and groups under :data:`MIN_EXPOSURE_ALERTS` get NaN. An alert
    id counted twice in a group (a producer's duplicate) counts once.
    """
    out = np.full((len(group), len(CONTEXT_FEATURES)), np.nan)
    ok = (group >= 0) & np.isfinite(channel)
    for g in np.unique(group[ok]):
        rows = np.flatnonzero(ok & (group == g))
        _, first = np.unique(ids[rows], return_index=True)
        uniq = rows[np.sort(first)]
        if len(uniq) < MIN_EXPOSURE_ALERTS:
            continue
        chans, inverse, counts = np.unique(channel[uniq], return_inverse=True, return_counts=True)
        median, total = float(np.median(counts)), float(counts.sum())
        stats = np.full((len(chans), len(CONTEXT_FEATURES)), np.nan)
        for c in range(len(chans)):
            members = uniq[inverse == c]
            r = rb[members]
            r = r[np.isfinite(r)]
            stats[c] = [counts[c], counts[c] / median, counts[c] / total,
                        np.median(r) if len(r) else np.nan, np.mean(negative[members]),
                        np.mean(r < 0.5) if len(r) else np.nan]
        out[rows] = stats[np.searchsorted(chans, channel[rows])]
    return out


def detection_features(col: Callable[[str], np.ndarray], ids: np.ndarray, survey: str,
                       group: np.ndarray) -> np.ndarray:
    """Detection fields plus channel context; ``col(name)`` gives a column (NaN if absent)."""
    negative = (col("isdiffpos") == 0) if survey == "ztf" else (col("isNegative") > 0)
    det = np.column_stack([col(f) for f in DETECTION_FIELDS[survey]])
    context = channel_context(group, col("channel_id"), ids, col(REAL_BOGUS[survey]), negative)
    return np.hstack([det, context])


def detection_matrix(batch: AlertBatch, survey: str, rows: np.ndarray) -> np.ndarray:
    """:func:`detection_features` for the alerts ``rows`` (all of one survey) of a batch."""
    sub = batch.subset(rows)
    return detection_features(sub.column, sub.alert_id, survey, sub.exposure_group)
