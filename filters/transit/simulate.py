"""Simulated light curves for training and testing the transit filter, deterministic by seed.

Cadences: Kepler/K2-like (29.4 min, 25-80 d, a gap, pointing drifts), TESS-like (30 min,
27 d, mid-sector gap), and sparse survey-like (LSST/ZTF forced photometry: 150-500 epochs in
a year with a seasonal gap). Noise: white (per-point scatter drawn log-uniformly) plus red
noise (slow random walk and stellar variability) and, for K2, the 6-hour thruster sawtooth.

Positives: physical transits from ``batman`` (quadratic limb darkening, Sun-like stellar
density, random impact parameter, some grazing and V-shaped), periods from 0.2 d, depth set
from a target signal-to-noise ``SNR = depth / sigma * sqrt(N_in_transit)``: 70% drawn
log-uniformly in [3, 100], 30% in [100, 10,000] (real hot Jupiters reach SNR 1,000-10,000 in
Kepler data, and a network that never saw one calls it an eclipsing binary). Where the drawn
SNR would need a depth over 2%, the star is made quieter instead (down to 10 ppm a point), as
for the bright stars that give real high-SNR transits.
Hard negatives: eclipsing binaries (deep, V-shaped or grazing, with and without secondary
eclipses), ellipsoidal and heartbeat binaries, pulsators (delta Scuti-like multi-mode and
RR Lyrae-like sawtooth), spotted rotators with evolving spots, sinusoidal variables, flares,
single-point outliers and step systematics, and pure noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from filters.transit.lightcurve import LightCurve, detrend, robust_std

NEGATIVE_KINDS = ("eclipsing_binary", "eclipsing_binary", "ellipsoidal", "heartbeat", "pulsator", "spotted_rotator",
                  "sinusoidal", "flares", "systematics", "noise")
MIN_PERIOD_D = 0.2
MAX_PLANET_DEPTH = 0.02  # a Jupiter around a Sun-like star blocks ~1%
MIN_SIGMA = 1e-5  # per-point noise of the brightest Kepler/TESS stars


@dataclass
class Simulated:
    lc: LightCurve
    label: int  # 1 = transiting planet injected
    kind: str
    cadence: str
    period: float = float("nan")
    snr: float = float("nan")  # depth / white-noise sigma * sqrt(points in transit)
    # The same against the light curve's measured noise after detrending (robust std), which
    # includes what red noise and systematics leave: the SNR a search actually faces.
    snr_measured: float = float("nan")
    # What the sampling actually caught: the matched-filter SNR sqrt(sum((1 - model)^2)) over
    # the observed points against the measured noise, and how many separate transits have a
    # point in them. On sparse cadences the expected count N * duration / period can promise
    # points that the nights never sampled.
    snr_observed: float = float("nan")
    transits_observed: int = 0


def _cadence(rng, kind: str) -> np.ndarray:
    if kind == "k2":
        base = rng.uniform(25, 80)
        t = np.arange(0, base, 0.02043)
        g0 = rng.uniform(0.3, 0.7) * base
        return t[(t < g0) | (t > g0 + rng.uniform(0.5, 3))]
    if kind == "tess":
        t = np.arange(0, 27.4, 0.02083)
        return t[(t < 13.2) | (t > 14.3)]
    n = int(rng.integers(150, 500))
    season = rng.uniform(200, 260)
    nights = np.sort(rng.choice(int(season), n, replace=True)).astype(float)
    return nights + rng.uniform(-0.1, 0.1, n)  # one visit per night at varying times


def _transit(rng, t, period, rp, a, b, t0):
    import batman

    params = batman.TransitParams()
    params.t0, params.per, params.rp, params.a = t0, period, rp, a
    params.inc = float(np.degrees(np.arccos(min(b / a, 1.0))))
    params.ecc, params.w, params.limb_dark, params.u = 0.0, 90.0, "quadratic", [0.4, 0.25]
    return batman.TransitModel(params, t).light_curve(params)


def _red_noise(rng, t, sigma, cadence):
    amp = sigma * rng.uniform(0, 3)
    walk = np.cumsum(rng.normal(0, 1, len(t)))
    walk = (walk - walk.mean()) / (walk.std() + 1e-12) * amp
    var = amp * np.sin(2 * np.pi * t / rng.uniform(3, 15) + rng.uniform(0, 6.3))
    out = walk + var
    if cadence == "k2":  # thruster firings every ~6 h leave a sawtooth
        out += sigma * rng.uniform(0, 2) * (np.remainder(t, 0.245) / 0.245 - 0.5)
    return out


def _stellar_variable(rng, kind: str, t: np.ndarray, base: float, sigma: float) -> np.ndarray:
    """Relative flux of a variable star that is no planet host but can fool a box search."""
    low = max(3 * sigma, 2e-4)
    amp = float(np.exp(rng.uniform(np.log(low), np.log(max(0.05, 3 * low)))))
    t0 = rng.uniform(0, 10)
    if kind == "ellipsoidal":  # tidally distorted star: two minima an orbit, often unequal
        period = float(np.exp(rng.uniform(np.log(0.3), np.log(min(10.0, base / 3)))))
        ph = 2 * np.pi * (t - t0) / period
        return 1 - amp * np.cos(2 * ph) - rng.uniform(0, 0.3) * amp * np.cos(ph) + rng.uniform(0, 0.2) * amp * np.sin(ph)
    if kind == "heartbeat":  # eccentric binary: a brief brightening and/or dip at periastron
        period = float(np.exp(rng.uniform(np.log(1.0), np.log(max(base / 3, 1.5)))))
        width = period * rng.uniform(0.01, 0.08)
        x = (np.remainder(t - t0 + period / 2, period) - period / 2) / width
        shape = np.exp(-0.5 * x * x) * (1 - rng.uniform(-2.5, 2.5) * x)
        return 1 + rng.choice([-1.0, 1.0]) * amp * shape
    if kind == "pulsator":
        if rng.random() < 0.4:  # RR Lyrae-like: large, non-sinusoidal, fast rise
            period = rng.uniform(0.3, 0.9)
            ph = np.remainder((t - t0) / period, 1.0)
            saw = np.where(ph < 0.15, ph / 0.15, 1 - (ph - 0.15) / 0.85)
            return 1 + rng.uniform(0.1, 0.6) * (saw - 0.5)
        out = np.ones_like(t)  # delta Scuti-like: several short-period modes
        for _ in range(int(rng.integers(2, 7))):
            out += amp * rng.uniform(0.1, 1) * np.sin(2 * np.pi * t / rng.uniform(0.02, 0.3) + rng.uniform(0, 6.3))
        return out
    # spotted rotator: spots grow and decay, so the modulation changes from one turn to the next
    period = rng.uniform(0.3, 20)
    envelope = 1 + 0.6 * np.sin(2 * np.pi * t / rng.uniform(5, 60) + rng.uniform(0, 6.3))
    drift = rng.uniform(-0.05, 0.05) * t
    return 1 - amp * envelope * (np.sin(2 * np.pi * t / period + drift) + 0.4 * np.sin(4 * np.pi * t / period + 2 * drift))


def _measured_noise(t, flux, sigma) -> float:
    return robust_std(detrend(LightCurve(t, flux, np.full(len(t), sigma))).flux - 1) or sigma


CADENCES = ("k2", "tess", "survey")
DEFAULT_CADENCE_WEIGHTS = (0.6, 0.2, 0.2)  # the held-out test mix


def simulate_one(rng: np.random.Generator, positive: bool,
                 cadence_weights: tuple[float, ...] = DEFAULT_CADENCE_WEIGHTS) -> Simulated:
    cadence = rng.choice(CADENCES, p=cadence_weights)
    t = _cadence(rng, cadence)
    base = float(t.max() - t.min())
    sigma = float(np.exp(rng.uniform(np.log(5e-5), np.log(3e-3)))) if cadence != "survey" else \
        float(np.exp(rng.uniform(np.log(2e-3), np.log(2e-2))))
    flux = np.ones_like(t) + _red_noise(rng, t, sigma, cadence)
    white = rng.normal(0, sigma, len(t))
    sim = Simulated(None, int(positive), "planet" if positive else str(rng.choice(NEGATIVE_KINDS)), str(cadence))
    if positive:
        period = float(np.exp(rng.uniform(np.log(MIN_PERIOD_D), np.log(base / 3))))
        a = max(4.2 * period ** (2 / 3) * rng.uniform(0.7, 1.4), 1.5)
        b = rng.uniform(0, 0.9)
        dur = period / (np.pi * a) * np.sqrt(max(1 - b * b, 0.05))
        n_in = max(len(t) * dur / period, 1.0)
        lo, hi = (3, 100) if rng.random() < 0.7 else (100, 10000)
        snr = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        depth = snr * sigma / np.sqrt(n_in)
        if depth > MAX_PLANET_DEPTH:
            # Real high-SNR transits come from bright, quiet stars, not from 7%-deep planets:
            # keep a Jupiter-sized depth and lower the noise instead (red noise scales with it).
            depth = float(np.exp(rng.uniform(np.log(2e-3), np.log(MAX_PLANET_DEPTH))))
            scale = max(depth * np.sqrt(n_in) / snr, MIN_SIGMA) / sigma
            flux, white, sigma = 1 + (flux - 1) * scale, white * scale, sigma * scale
            depth = min(snr * sigma / np.sqrt(n_in), 0.04)
        rp = float(np.clip(np.sqrt(depth / 0.85), 0.003, 0.22))
        if rng.random() < 0.15:  # grazing: V-shaped, shallower than rp^2
            b = rng.uniform(1 - rp, 1 + 0.5 * rp)
        t0 = rng.uniform(0, period)
        model = _transit(rng, t, period, rp, a, b, t0)
        true_depth = 1 - model.min()
        sim.period, sim.snr = period, float(true_depth / sigma * np.sqrt(n_in))
        noise = _measured_noise(t, flux + white, sigma)
        sim.snr_measured = float(true_depth / noise * np.sqrt(n_in))
        sim.snr_observed = float(np.sqrt(np.sum(np.square(1 - model))) / noise)
        dipped = model < 1 - 0.1 * max(true_depth, 1e-12)
        sim.transits_observed = int(len(np.unique(np.round((t[dipped] - t0) / period))))
        flux *= model
    elif sim.kind == "eclipsing_binary":
        period = float(np.exp(rng.uniform(np.log(MIN_PERIOD_D), np.log(base / 2))))
        a = max(4.2 * period ** (2 / 3) * rng.uniform(0.5, 1.5), 2.0)
        rp = rng.uniform(0.1, 0.5)
        b = rng.uniform(0, 1 + 0.8 * rp)  # up to grazing: V-shaped
        t0 = rng.uniform(0, period)
        primary = _transit(rng, t, period, rp, a, b, t0)
        secondary = _transit(rng, t, period, rp, a, b, t0 + period / 2)
        # A companion star shows a secondary eclipse (>= 3% of the primary's depth) unless the
        # eclipse is grazing or too deep for a planet anyway: an undiluted, non-grazing, U-shaped
        # eclipse with no secondary and no ellipsoidal variation is photometrically a planet,
        # and labelling it "not a planet" taught the network to reject real hot Jupiters.
        planet_like = rp < 0.3 and b < 1 - rp
        ratio = 0.0 if (not planet_like and rng.random() < 0.3) else rng.uniform(0.03, 0.9)
        ellipsoidal = rng.uniform(0, 1) * min(0.03, 1.5 / a ** 3)  # tidal distortion of close pairs
        flux *= primary * (1 - ratio * (1 - secondary)) * (1 - ellipsoidal * np.cos(4 * np.pi * (t - t0) / period))
    elif sim.kind in ("ellipsoidal", "heartbeat", "pulsator", "spotted_rotator"):
        flux *= _stellar_variable(rng, sim.kind, t, base, sigma)
    elif sim.kind == "sinusoidal":
        amp = float(np.exp(rng.uniform(np.log(sigma), np.log(0.05))))
        p = rng.uniform(0.1, 20)
        flux += amp * (np.sin(2 * np.pi * t / p) + rng.uniform(0, 0.5) * np.sin(4 * np.pi * t / p + 1))
    elif sim.kind == "flares":
        for _ in range(int(rng.integers(3, 15))):
            tf = rng.uniform(t.min(), t.max())
            after = t >= tf
            flux[after] += sigma * rng.uniform(5, 50) * np.exp(-(t[after] - tf) / rng.uniform(0.02, 0.2))
    elif sim.kind == "systematics":
        for _ in range(int(rng.integers(1, 4))):
            flux[t > rng.uniform(t.min(), t.max())] += rng.normal(0, 3 * sigma)
        dips = rng.choice(len(t), int(rng.integers(2, 8)), replace=False)
        flux[dips] -= sigma * rng.uniform(5, 20, len(dips))
    flux += white
    sim.lc = LightCurve(t, flux, np.full(len(t), sigma), f"sim-{sim.kind}")
    return sim


def simulate(n: int, seed: int, positive_fraction: float = 0.5,
             cadence_weights: tuple[float, ...] = DEFAULT_CADENCE_WEIGHTS) -> list[Simulated]:
    rng = np.random.default_rng(seed)
    return [simulate_one(rng, rng.random() < positive_fraction, cadence_weights) for _ in range(n)]
