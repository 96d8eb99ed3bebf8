"""Features of the two badamp views.

* Object history: the 54 SNAD light-curve features of the r-band history, shared with other
  filters (``filters/lightcurve_features.py``).
* Detection + channel: the alert's quality fields plus context per exposure and readout
  channel (ZTF ``pid``/``rcid``, LSST ``visit``/``detector``) among the alerts of the same
  exposure group of the batch (:func:`channel_context`); no state is kept between batches.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from broker.batch import AlertBatch

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
    usable = np.flatnonzero((group >= 0) & np.isfinite(channel))
    # Rows grouped by one stable sort (each group's rows stay in batch order), and groups too
    # small even before duplicates are dropped skipped unread: a batch of scattered exposures
    # costs one sort, not a pass over the batch per group.
    by_group = usable[np.argsort(group[usable], kind="stable")]
    _, starts, counts = np.unique(group[by_group], return_index=True, return_counts=True)
    large = counts >= MIN_EXPOSURE_ALERTS
    for start, count in zip(starts[large], counts[large]):
        rows = by_group[start:start + count]
        _, first = np.unique(ids[rows], return_index=True)
        uniq = rows[np.sort(first)]
        if len(uniq) < MIN_EXPOSURE_ALERTS:
            continue
        chans, stats = _channel_stats(channel[uniq], rb[uniq], negative[uniq])
        at = np.minimum(np.searchsorted(chans, channel[rows]), len(chans) - 1)
        known = chans[at] == channel[rows]  # False: a duplicate id claiming another channel
        out[rows[known]] = stats[at[known]]
    return out


def _channel_stats(channel: np.ndarray, rb: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(channels, :data:`CONTEXT_FEATURES` per channel) of one exposure group's alerts, all
    channels at once: sorted by channel then bogus score (NaN last), each channel's finite
    scores lead its segment, so a median is one or two picks (as ``np.median`` computes it)."""
    order = np.lexsort((rb, channel))
    channel, rb, negative = channel[order], rb[order], negative[order]
    chans, start, counts = np.unique(channel, return_index=True, return_counts=True)
    finite = np.isfinite(rb)
    n_finite = np.add.reduceat(finite, start)
    low = np.add.reduceat(finite & (rb < 0.5), start)
    has = n_finite > 0
    lo = start + np.maximum(n_finite - 1, 0) // 2
    hi = start + n_finite // 2
    median_rb = np.where(has, (rb[lo] + rb[hi]) / 2, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac_low = np.where(has, low / n_finite, np.nan)
    total = float(counts.sum())
    stats = np.column_stack([counts, counts / float(np.median(counts)), counts / total, median_rb,
                             np.add.reduceat(negative.astype(np.float64), start) / counts, frac_low])
    return chans, stats


def detection_features(col: Callable[[str], np.ndarray], ids: np.ndarray, survey: str,
                       group: np.ndarray) -> np.ndarray:
    """Detection fields plus channel context; ``col(name)`` gives a column (NaN if absent)."""
    negative = (col("isdiffpos") == 0) if survey == "ztf" else (col("isNegative") > 0)
    det = np.column_stack([col(f) for f in DETECTION_FIELDS[survey]])
    context = channel_context(group, col("channel_id"), ids, col(REAL_BOGUS[survey]), negative)
    return np.hstack([det, context])


def detection_matrix(batch: AlertBatch, survey: str, rows: np.ndarray) -> np.ndarray:
    """:func:`detection_features` for the alerts ``rows`` (all of one survey) of a batch."""
    return detection_features(lambda name: batch.column(name)[rows], batch.alert_id[rows], survey,
                              batch.exposure_group[rows])
