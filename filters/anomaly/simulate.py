"""Simulated alert histories: the ordinary population the anomaly score is calibrated
against, and the injected anomalies it is judged on (never the same seed).

What the stream delivers, not what the sky holds: a source only reaches an alert history on
the epochs where its difference flux (against the reference image) is a 5-sigma detection, and
the history holds those epochs' total flux (reference + difference) as magnitudes. Constant
stars never alert, so the ordinary population is what alerts every night: periodic variables
up to ~1 mag peak to peak (RR Lyrae, Cepheids, eclipsing-free pulsators), stochastic AGN-like
variability, and supernova-like transients. Histories are an alert's 30-day window (a fifth of
the visits with a second one the same night, as in real ZTF histories) or, for a tenth of ZTF
objects, a longer archive (brokers keep object histories; the SNAD labels were
made on data-release light curves); LSST alerts carry 12 months.
"""
from __future__ import annotations

import numpy as np

ZERO_POINT = 31.4  # AB magnitude of 1 nJy
# 5-sigma depth per visit, and the magnitude range of sources that reach the stream.
SURVEYS = {"ztf": {"depth": 20.5, "bright": 14.0, "sn_peak": (17.0, 20.3), "archive": 0.1, "window": 30.0},
           "lsst": {"depth": 24.0, "bright": 16.5, "sn_peak": (18.0, 23.5), "archive": 0.0, "window": 365.0}}
ORDINARY = ("periodic_variable", "stochastic", "supernova")
ANOMALIES = ("fast_transient", "extreme_amplitude", "eclipsing", "badamp_burst")
MIN_DETECTIONS = 8


def _flux(mag):
    return 10 ** (-0.4 * (np.asarray(mag) - ZERO_POINT))


def _epochs(rng: np.random.Generator, survey: str) -> np.ndarray:
    s = SURVEYS[survey]
    span = rng.uniform(300, 1500) if rng.random() < s["archive"] else rng.uniform(0.5, 1.0) * s["window"]
    n = max(MIN_DETECTIONS + 2, int(span / rng.uniform(1.0, 4.0)))  # one r-band visit every 1-4 nights
    t = np.floor(np.sort(rng.uniform(0, span, n))) + rng.uniform(0.15, 0.45, n)
    again = rng.random(n) < 0.2  # a second visit the same night (overlapping fields, programmes)
    t = np.concatenate([t, t[again] + rng.uniform(0.001, 0.05, again.sum())])
    return np.unique(np.round(t, 5))


def _bazin(t, t0, rise, fall):
    x = np.clip((t - t0), -60 * rise, 60 * fall)
    return np.exp(-x / fall) / (1 + np.exp(-x / rise))


def _source(rng: np.random.Generator, kind: str, t: np.ndarray, survey: str):
    """(reference flux, true flux at ``t``) for one object of class ``kind``."""
    s = SURVEYS[survey]
    star = rng.uniform(s["bright"], s["depth"] - 0.3)
    if kind in ("periodic_variable", "extreme_amplitude"):
        period = 10 ** rng.uniform(-1.3, 2.0)
        amp = rng.uniform(0.05, 0.5) if kind == "periodic_variable" else rng.uniform(1.0, 2.5)  # semi-amplitude
        phase = 2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)
        shape = np.sin(phase) + rng.uniform(0, 0.5) * np.sin(2 * phase + rng.uniform(0, 2 * np.pi))
        return _flux(star), _flux(star + amp * shape / np.max(np.abs(shape) + 1e-9))
    if kind in ("stochastic", "badamp_burst"):  # damped random walk; the burst sits on one
        tau, amp = 10 ** rng.uniform(1, 2.5), rng.uniform(0.1, 0.5)
        x = np.zeros(len(t))
        for k in range(1, len(t)):
            a = np.exp(-(t[k] - t[k - 1]) / tau)
            x[k] = a * x[k - 1] + amp * np.sqrt(1 - a * a) * rng.normal()
        return _flux(star), _flux(star + x)
    if kind in ("supernova", "fast_transient"):
        host = _flux(rng.uniform(s["depth"] - 1.5, s["depth"] + 3))
        peak = _flux(rng.uniform(*s["sn_peak"]))
        rise, fall = (rng.uniform(1.5, 6), rng.uniform(15, 60)) if kind == "supernova" else \
            (rng.uniform(0.1, 1.0), rng.uniform(1.0, 8.0))
        t0 = rng.uniform(t[0] - 10, t[-1] - 5) if kind == "supernova" else rng.uniform(t[0], t[-1] - 2)
        curve = _bazin(t, t0, rise, fall)
        return host, host + peak * curve / max(curve.max(), 1e-9) * (curve.max() / _bazin_peak(rise, fall))
    if kind == "eclipsing":
        period, depth, width = 10 ** rng.uniform(-0.3, 1), rng.uniform(0.3, 1.5), rng.uniform(0.04, 0.12)
        phase = (t / period + rng.uniform(0, 1)) % 1.0
        return _flux(star), _flux(star + depth * (np.minimum(phase, 1 - phase) < width / 2))
    raise ValueError(kind)


def _bazin_peak(rise, fall):
    grid = np.linspace(-10 * rise, 10 * fall, 2000)
    return _bazin(grid, 0.0, rise, fall).max()


def light_curve(rng: np.random.Generator, kind: str, survey: str, tries: int = 1000):
    """(t, mag, err) of the detections of one object of class ``kind`` (at least 8)."""
    depth_sigma = _flux(SURVEYS[survey]["depth"]) / 5
    for _ in range(tries):
        t = _epochs(rng, survey)
        ref, true = _source(rng, kind, t, survey)
        sigma = np.sqrt(depth_sigma ** 2 + (0.01 * true) ** 2)
        observed = true + rng.normal(0, sigma)
        if kind == "badamp_burst":  # a run of detections from a failing channel
            k = rng.integers(2, 5)
            start = rng.integers(0, len(t) - k + 1)
            observed[start:start + k] *= 10 ** (-0.4 * rng.choice([-1, 1]) * rng.uniform(0.5, 2.0, k))
        detected = (np.abs(observed - ref) > 5 * sigma) & (observed > 0)
        if kind == "badamp_burst":
            detected[start:start + k] = observed[start:start + k] > 0
        if detected.sum() >= MIN_DETECTIONS:
            f, e = observed[detected], sigma[detected]
            return t[detected], ZERO_POINT - 2.5 * np.log10(f), 1.0857 * e / f
    raise RuntimeError(f"no {kind} object with {MIN_DETECTIONS} detections in {tries} tries")


def population(seed: int, kinds: tuple[str, ...], n: int, survey: str, weights=None):
    """``n`` detection histories drawn from ``kinds`` (with ``weights``): (kind, t, mag, err)."""
    rng = np.random.default_rng(seed)
    choice = rng.choice(len(kinds), size=n, p=weights)
    return [(kinds[c], *light_curve(rng, kinds[c], survey)) for c in choice]
