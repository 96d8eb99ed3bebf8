"""Features of the two badamp views.

* Object history: the 54 SNAD light-curve features (``feature_snad4_r_100.json``), computed
  with the ``light-curve`` package on the r-band total-flux magnitudes of the alert history.
  The JSON was written by an older ``light-curve``; :func:`snad_extractors` converts its one
  outdated block (the periodogram's frequency grid) and builds the same extractors.
* Detection + channel: the alert's quality fields plus context from the stream, per exposure
  and readout channel (ZTF ``pid``/``rcid``, LSST ``visit``/``detector``), kept by
  :class:`ChannelContext` over a bounded window of recent exposures.
"""
from __future__ import annotations

import json
import math
from collections import OrderedDict
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


class ChannelContext:
    """Alerts per (exposure, readout channel) over the most recent ``max_exposures`` exposures.

    A failing amplifier shows as a burst of bogus detections from one channel of one
    exposure, which no single detection reveals. Detections are counted once by alert id, so
    a batch replayed after a crash (at-least-once delivery) does not inflate a channel.
    Memory is bounded: oldest exposures go first, and each channel keeps at most
    ``max_values`` real/bogus scores for its median.
    """

    MIN_EXPOSURE_ALERTS = 20  # below this an exposure's channel statistics are noise: NaN

    def __init__(self, max_exposures: int = 256, max_values: int = 512):
        self.max_exposures = max_exposures
        self.max_values = max_values
        self._exposures: OrderedDict[tuple, dict[float, dict]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._exposures)

    def update(self, survey: str, ids: np.ndarray, exposure: np.ndarray, channel: np.ndarray,
               rb: np.ndarray, negative: np.ndarray) -> None:
        for a, e, c, r, neg in zip(ids, exposure, channel, rb, negative):
            if not (np.isfinite(e) and np.isfinite(c)):
                continue
            key = (survey, float(e))
            exp = self._exposures.get(key)
            if exp is None:
                exp = self._exposures[key] = {}
                while len(self._exposures) > self.max_exposures:
                    self._exposures.popitem(last=False)
            else:
                self._exposures.move_to_end(key)
            ch = exp.setdefault(float(c), {"n": 0, "neg": 0, "rb": [], "ids": set()})
            if a in ch["ids"]:
                continue
            ch["ids"].add(a)
            ch["n"] += 1
            ch["neg"] += int(bool(neg))
            if np.isfinite(r) and len(ch["rb"]) < self.max_values:
                ch["rb"].append(float(r))

    def features(self, survey: str, exposure: np.ndarray, channel: np.ndarray) -> np.ndarray:
        out = np.full((len(exposure), len(CONTEXT_FEATURES)), np.nan)
        per_exposure: dict[float, tuple[float, float] | None] = {}  # (median count, total)
        per_channel: dict[tuple[float, float], np.ndarray] = {}
        for i, (e, c) in enumerate(zip(exposure, channel)):
            exp = self._exposures.get((survey, float(e)))
            if exp is None or float(c) not in exp:
                continue
            if e not in per_exposure:
                counts = np.array([v["n"] for v in exp.values()], dtype=float)
                per_exposure[e] = None if counts.sum() < self.MIN_EXPOSURE_ALERTS else (np.median(counts), counts.sum())
            stats = per_exposure[e]
            if stats is None:
                continue
            key = (float(e), float(c))
            if key not in per_channel:
                ch = exp[float(c)]
                rb = np.array(ch["rb"], dtype=float)
                has_rb = bool(len(rb))
                per_channel[key] = np.array([
                    ch["n"], ch["n"] / stats[0], ch["n"] / stats[1],
                    np.median(rb) if has_rb else np.nan, ch["neg"] / ch["n"],
                    np.mean(rb < 0.5) if has_rb else np.nan,
                ])
            out[i] = per_channel[key]
        return out


def detection_features(col: Callable[[str], np.ndarray], ids: np.ndarray, survey: str,
                       context: ChannelContext, update: bool = True) -> np.ndarray:
    """Detection fields plus channel context; ``col(name)`` gives a column (NaN if absent)."""
    exposure, channel = col("exposure_id"), col("channel_id")
    negative = (col("isdiffpos") == 0) if survey == "ztf" else (col("isNegative") > 0)
    if update:
        context.update(survey, ids, exposure, channel, col(REAL_BOGUS[survey]), negative)
    det = np.column_stack([col(f) for f in DETECTION_FIELDS[survey]])
    return np.hstack([det, context.features(survey, exposure, channel)])


def detection_matrix(batch: AlertBatch, survey: str, rows: np.ndarray, context: ChannelContext,
                     update: bool = True) -> np.ndarray:
    """:func:`detection_features` for the alerts ``rows`` (all of one survey) of a batch."""
    sub = batch.subset(rows)
    return detection_features(sub.column, sub.alert_id, survey, context, update)
