"""Failing-amplifier injector: real alert detections rearranged into exposures, some with a
burst of bogus detections from one readout channel.

There is no public label set of bad amplifiers, so the channel view is trained and measured on
injections. What is real and what is assumed:

* Every detection starts as a real alert's quality fields (ZTF ``candidate``, LSST
  ``diaSource``), drawn from a pool of real packets split by object between train and test.
* 20% of exposures are *sparse* (1-19 detections, bursts of 1-5): too few for channel
  statistics, which are then missing (NaN), as for a partly received exposure or a sparse
  replay; the model must fall back on the detection's own fields there.
* Other exposures hold 100-400 detections spread over the survey's channels (ZTF 64 readout
  channels, LSST 189 science detectors) with uneven, Dirichlet-drawn channel rates, as real
  sky density varies across the focal plane.
* Half of the exposures get a *crowded* channel: 10-60 extra real, undegraded detections (a
  dense star field, a bright galaxy), so a burst of detections alone is no proof of failure.
* Half of the exposures get one failing channel emitting 5-80 extra detections. 60% of those
  are obviously bogus (low real/bogus, elongated, bad pixels, negative, near edges, poor PSF
  fits); 40% are *subtle*: real detections barely degraded, which pass ZTF's pure cut and can
  only be told apart by the burst they belong to.
The mix and ranges are assumptions written here on purpose: change them and re-measure.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from broker.batch import AlertBatch
from filters.badamp.features import DETECTION_FIELDS, REAL_BOGUS

N_CHANNELS = {"ztf": 64, "lsst": 189}
SUBTLE_FRACTION = 0.4


@dataclass
class Pool:
    survey: str
    columns: dict[str, np.ndarray]
    object_id: np.ndarray

    def __len__(self) -> int:
        return len(self.object_id)

    def take(self, idx: np.ndarray) -> "Pool":
        return Pool(self.survey, {k: v[idx] for k, v in self.columns.items()}, self.object_id[idx])


def pool_from_batch(batch: AlertBatch, survey: str) -> Pool:
    rows = np.flatnonzero(batch.survey == survey)
    sign = "isdiffpos" if survey == "ztf" else "isNegative"
    names = set(DETECTION_FIELDS[survey]) | {sign}
    cols = {k: batch.column(k)[rows].copy() for k in names}
    keep = np.isfinite(cols[REAL_BOGUS[survey]])
    return Pool(survey, {k: v[keep] for k, v in cols.items()}, batch.object_id[rows][keep])


def split_by_object(pool: Pool, test_fraction: float, seed: int) -> tuple[Pool, Pool]:
    objects = np.unique(pool.object_id)
    rng = np.random.default_rng(seed)
    test_objects = set(rng.choice(objects, int(len(objects) * test_fraction), replace=False))
    is_test = np.array([o in test_objects for o in pool.object_id])
    return pool.take(np.flatnonzero(~is_test)), pool.take(np.flatnonzero(is_test))


def _degrade_ztf(c: dict, rng, subtle: np.ndarray) -> None:
    n = len(subtle)
    ob = ~subtle
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    c["rb"] = np.where(ob, rng.beta(1.5, 6, n), c["rb"] * u(0.75, 1.0))
    c["drb"] = np.where(ob, rng.beta(1, 12, n), c["drb"] * u(0.7, 1.0))
    c["elong"] = np.where(ob, 1 + rng.gamma(2, 0.35, n), c["elong"] * u(1.0, 1.1))
    c["nbad"] = np.where(ob, rng.poisson(2.5, n), c["nbad"])
    c["fwhm"] = np.where(ob, c["fwhm"] * u(1.1, 2.5), c["fwhm"])
    c["magdiff"] = np.where(ob, c["magdiff"] + rng.normal(0, 0.25, n), c["magdiff"])
    c["mindtoedge"] = np.where(ob & (rng.random(n) < 0.3), u(0, 40), c["mindtoedge"])
    c["sumrat"] = np.where(ob, c["sumrat"] * u(0.5, 1.0), c["sumrat"])
    c["chipsf"] = np.where(ob, c["chipsf"] * u(2, 10), c["chipsf"])
    c["scorr"] = np.where(ob, c["scorr"] * u(0.3, 1.0), c["scorr"])
    c["isdiffpos"] = np.where(rng.random(n) < np.where(ob, 0.5, 0.25), 0.0, c["isdiffpos"])


def _degrade_lsst(c: dict, rng, subtle: np.ndarray) -> None:
    n = len(subtle)
    ob = ~subtle
    c["reliability"] = np.where(ob, rng.beta(1.5, 6, n), c["reliability"] * rng.uniform(0.75, 1.0, n))
    for flag in ("pixelFlags_bad", "pixelFlags_saturatedCenter", "pixelFlags_crCenter",
                 "pixelFlags_streakCenter", "pixelFlags_edge", "pixelFlags_suspectCenter"):
        c[flag] = np.where(ob & (rng.random(n) < 0.3), 1.0, c[flag])
    c["isDipole"] = np.where(ob & (rng.random(n) < 0.4), 1.0, c["isDipole"])
    c["psfChi2"] = np.where(ob, c["psfChi2"] * rng.uniform(2, 10, n), c["psfChi2"])
    c["snr"] = np.where(ob, c["snr"] * rng.uniform(0.3, 1.0, n), c["snr"])
    c["isNegative"] = np.where(rng.random(n) < np.where(ob, 0.5, 0.25), 1.0, c["isNegative"])


DEGRADE = {"ztf": _degrade_ztf, "lsst": _degrade_lsst}


def _tagged(cols: dict, channel: np.ndarray, label: int, subtle: np.ndarray | None = None) -> dict:
    """Detections placed on ``channel`` with their injection label and subtlety."""
    n = len(channel)
    return {**cols, "channel_id": channel, "label": np.full(n, float(label)),
            "subtle": np.zeros(n) if subtle is None else subtle.astype(float)}


def _joined(a: dict, b: dict) -> dict:
    return {name: np.concatenate([a[name], b[name]]) for name in a}


def make_exposures(pool: Pool, n_exposures: int, seed: int, fail_fraction: float = 0.5,
                   first_exposure: int = 0) -> dict[str, np.ndarray]:
    """Columns of all detections of ``n_exposures`` synthetic exposures, with ``label`` (1 =
    injected from a failing channel) and ``subtle`` (an injected detection barely degraded)."""
    rng = np.random.default_rng(seed)
    n_ch = N_CHANNELS[pool.survey]
    parts = []
    for e in range(n_exposures):
        sparse = rng.random() < 0.2
        k = int(rng.integers(1, 20)) if sparse else int(rng.integers(100, 400))
        weights = rng.dirichlet(np.full(n_ch, 3.0))
        idx = rng.integers(0, len(pool), k)
        cols = _tagged({name: v[idx].copy() for name, v in pool.columns.items()},
                       rng.choice(n_ch, k, p=weights).astype(float), label=0)
        if not sparse and rng.random() < 0.5:  # a crowded channel: real detections, label 0
            extra = int(rng.integers(10, 60))
            more = rng.integers(0, len(pool), extra)
            crowd = {name: v[more] for name, v in pool.columns.items()}
            cols = _joined(cols, _tagged(crowd, np.full(extra, float(rng.integers(0, n_ch))), label=0))
        if rng.random() < fail_fraction:
            b = int(rng.integers(1, 6)) if sparse else int(rng.integers(5, 80))
            bad_idx = rng.integers(0, len(pool), b)
            bad = {name: v[bad_idx].astype(float) for name, v in pool.columns.items()}
            subtle = rng.random(b) < SUBTLE_FRACTION
            DEGRADE[pool.survey](bad, rng, subtle)
            cols = _joined(cols, _tagged(bad, np.full(b, float(rng.integers(0, n_ch))), label=1, subtle=subtle))
        cols["exposure_id"] = np.full(len(cols["label"]), float(first_exposure + e))
        parts.append(cols)
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
