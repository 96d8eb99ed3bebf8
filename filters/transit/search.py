"""From a detrended light curve to transit candidates and the CNN's inputs.

For each candidate: BLS period, epoch, duration and depth; the number of transits that have
data; odd/even depth difference and secondary-eclipse significance (eclipsing-binary tells);
then the AstroNet-style views: a global view of the whole folded orbit and a local view
around the dip, binned and scaled so the box depth is -1. After a candidate is found its
in-transit points are masked and the search runs again (stars host several planets); a
period that repeats an earlier one (the same, a harmonic, or a simple ratio: what an
eclipsing binary's leftovers and secondary eclipses give) is not a new candidate.

Vetting (:func:`vet`) names the eclipsing-binary tells that rule a candidate out whatever
the network says: a significant secondary eclipse, odd and even transits of different depth,
a star much brighter half an orbit later (a continuous variable folded at half its period),
a star brighter just beside the dip (a heartbeat star), single transits too unequal to be one
planet's, or a depth no planet can give. Odd, even and single-transit depths are amplitudes
of the mean folded dip fitted to each group of points, so where in the transit the cadences
fell does not make a planet's transits look unequal.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from filters.transit.bls import SOLAR_DURATION_D, BlsResult, bls, period_grid, refine
from filters.transit.lightcurve import LightCurve, robust_std
from filters.transit.vetting import SINGLE_EVENT_DOMINATED, is_binary, vet_star

GLOBAL_BINS = 201
LOCAL_BINS = 61
LOCAL_HALF_WIDTH = 2.5  # local view spans +-2.5 durations
SCALAR_NAMES = ("log_snr", "log_depth", "log_duration_over_period", "log_period", "log_n_transits",
                "odd_even_sigma", "secondary_sigma", "sde", "log_points_in_transit", "global_coverage",
                "max_single_event_share", "odd_even_relative", "secondary_relative", "log_duration_over_solar")
MAX_SEARCHES = 4  # searches per light curve, repeats included (each costs a full BLS)
SEARCH_ON_SNR = 7.1  # search again only after a candidate this strong (Kepler's detection threshold)
MIN_POINTS = 100
MIN_BASELINE_D = 3.0


@dataclass
class Candidate:
    period: float
    epoch: float
    duration: float
    depth: float
    snr: float
    sde: float
    n_transits: int
    odd_even_sigma: float
    secondary_sigma: float
    points_in_transit: int
    global_coverage: float  # share of global-view bins holding data (the rest are interpolated)
    # Share of the signal (SNR^2) carried by the strongest single transit: near 1/n for a
    # planet, near 1 when one outlier or one systematic dip makes the "periodic" signal
    # (Kepler's single- vs multiple-event statistic check).
    max_single_event_share: float
    odd_even_relative: float  # |depth odd - depth even| / depth
    secondary_relative: float  # depth at phase 0.5 / depth
    transit_depth_chi2: float  # chi^2 per dof of the single transits' depths (vetting only)
    transit_depth_spread: float  # their standard deviation / mean depth (vetting only)
    beside_sigma: float  # brightening just outside the dip: significance (vetting only)
    beside_relative: float  # and size / depth
    global_view: np.ndarray = field(repr=False)
    local_view: np.ndarray = field(repr=False)
    vetting: list[str] = field(default_factory=list)  # set by find_candidates: vet() and the star's rule
    # Secondary significance without the one occultation window that carries most of it
    # (vetting only; NaN where fewer than three windows hold data, or in older pickles).
    secondary_sigma_robust: float = float("nan")

    def scalars(self) -> np.ndarray:
        return np.array([
            np.log10(max(self.snr, 1e-3)), np.log10(max(self.depth, 1e-7)),
            np.log10(self.duration / self.period), np.log10(self.period), np.log10(max(self.n_transits, 1)),
            min(self.odd_even_sigma, 20) / 5, np.clip(self.secondary_sigma, -20, 20) / 5, min(self.sde, 100) / 10,
            np.log10(max(self.points_in_transit, 1)), self.global_coverage, self.max_single_event_share,
            min(self.odd_even_relative, 2.0), np.clip(self.secondary_relative, -1.0, 2.0),
            np.log10(self.duration / (SOLAR_DURATION_D * self.period ** (1 / 3))),
        ], dtype=np.float32)


def same_signal(p1: float, p2: float, tol: float = 0.005, tol_equal: float = 0.02) -> bool:
    """Whether two periods are one signal: equal within ``tol_equal`` (what a partly masked
    eclipse leaves refines to a slightly different period), or in a ratio of small integers
    (1/2, 2/3, 3 ...) within ``tol`` (tight, because real neighbouring planets sit just off
    the 3:2 and 2:1 ratios)."""
    if abs(p1 - p2) <= tol_equal * p2:
        return True
    for a in range(1, 5):
        for b in range(1, 5):
            if a != b and abs(p1 * a - p2 * b) <= tol * p2 * b:
                return True
    return False


def too_little_data(lc: LightCurve) -> str | None:
    if len(lc) < MIN_POINTS:
        return f"too_few_points:<{MIN_POINTS}"
    baseline = float(lc.time.max() - lc.time.min())
    if baseline < MIN_BASELINE_D:
        return f"short_baseline:<{MIN_BASELINE_D:g}d"
    return None


def _phase(t, period, epoch):
    return np.remainder(t - epoch + 0.5 * period, period) / period - 0.5  # transit at 0


def _box_depth(y, w, mask) -> tuple[float, float]:
    """Weighted mean deficit in ``mask`` relative to outside, and its 1-sigma error."""
    if mask.sum() < 2 or (~mask).sum() < 2:
        return 0.0, np.inf
    inside = np.average(y[mask], weights=w[mask])
    outside = np.average(y[~mask], weights=w[~mask])
    err = np.sqrt(1.0 / w[mask].sum() + 1.0 / w[~mask].sum())
    return float(outside - inside), float(err)


def _binned(x, y, lo, hi, bins) -> tuple[np.ndarray, float]:
    """Mean per bin, empty bins interpolated; and the share of bins that held data (sparse
    cadences fold into mostly empty bins, and the model should know how much is real)."""
    edges = np.linspace(lo, hi, bins + 1)
    idx = np.digitize(x, edges) - 1
    ok = (idx >= 0) & (idx < bins)
    sums = np.bincount(idx[ok], y[ok], bins)
    counts = np.bincount(idx[ok], None, bins)
    out = np.full(bins, np.nan)
    out[counts > 0] = sums[counts > 0] / counts[counts > 0]
    if np.isnan(out).all():
        return np.zeros(bins), 0.0
    good = np.flatnonzero(~np.isnan(out))
    return np.interp(np.arange(bins), good, out[good]), len(good) / bins


def _single_transits(y, w, in_tr, epoch_no, outside_level) -> tuple[np.ndarray, np.ndarray]:
    """Each transit's weighted deficit below the out-of-transit level, and its summed weight
    (empty when no point is in transit)."""
    if not in_tr.any():
        return np.zeros(0), np.zeros(0)
    _, inv = np.unique(epoch_no[in_tr], return_inverse=True)
    wi, yi = w[in_tr], y[in_tr]
    wsum = np.bincount(inv, wi)
    return outside_level - np.bincount(inv, wi * yi) / wsum, wsum


def _secondary_without_strongest_window(y, w, t, period, epoch, in_tr, sec_mask) -> float:
    """Significance of the phase-0.5 box depth with the single occultation window of largest
    |deficit / error| left out; NaN when fewer than three windows hold data."""
    out = ~in_tr
    window = np.round((t - epoch) / period - 0.5).astype(int)
    sel = sec_mask & out
    ids = np.unique(window[sel])  # the windows holding data, in _single_transits' order
    if len(ids) < 3:
        return float("nan")
    level = np.average(y[out & ~sec_mask], weights=w[out & ~sec_mask]) if (out & ~sec_mask).any() else 0.0
    deficit, wsum = _single_transits(y, w, sel, window, level)
    strongest = ids[np.argmax(np.abs(deficit) * np.sqrt(wsum))]
    keep = out & ~(sec_mask & (window == strongest))
    d, e = _box_depth(y[keep], w[keep], sec_mask[keep])
    return d / e if np.isfinite(e) and e > 0 else 0.0


def _max_single_event_share(deficit: np.ndarray, wsum: np.ndarray) -> float:
    """Largest per-transit share of sum(SES^2), SES = weighted deficit / error of one transit."""
    ses2 = np.square(np.clip(deficit, 0, None)) * wsum
    total = ses2.sum()
    return float(ses2.max() / total) if total > 0 else 1.0


def red_noise_factor(y, w, ph, q: float, outside_level: float, min_boxes: int = 8) -> float:
    """How much more box depths scatter than their formal errors say: the robust spread of
    (deficit / error) over boxes of the transit's width at phases away from the transit and
    from phase 0.5, at least 1. Correlated noise and systematics make single boxes dip more
    than white noise would, and the SNR and the odd/even and secondary significances are
    divided by this factor so that they do not read 5 sigma on a K2 thruster sawtooth."""
    n_boxes = int(np.floor(1.0 / q))
    if n_boxes < min_boxes + 4:
        return 1.0
    idx = np.clip(((ph + 0.5) / (1.0 / n_boxes)).astype(int), 0, n_boxes - 1)
    wsum = np.bincount(idx, w, n_boxes)
    centre = (np.arange(n_boxes) + 0.5) / n_boxes - 0.5
    away = (np.abs(centre) > 1.5 * q) & (np.abs(np.abs(centre) - 0.5) > 1.5 * q) & (wsum > 0)
    if away.sum() < min_boxes:
        return 1.0
    mean = np.bincount(idx, w * y, n_boxes)[away] / wsum[away]
    z = (outside_level - mean) * np.sqrt(wsum[away])
    return max(1.0, robust_std(z))


def _transit_template(ph, y, w, period, dur, outside_level) -> tuple[np.ndarray, np.ndarray]:
    """The mean folded dip as a template at each point within one duration of mid-transit
    (binned in tenths of a duration, interpolated linearly between bins), and that mask.
    Depths measured by fitting this template's amplitude do not depend on where in the
    transit a cadence happened to fall: box means do, and at high SNR odd and even transits
    sampled at different phases (a period near a half-integer number of cadences) or sparse
    visits catching ingress on one night and mid-transit on another read as unequal."""
    x = ph * period / dur
    near = np.abs(x) < 1.0
    edges = np.linspace(-1.0, 1.0, 21)
    idx = np.clip(np.digitize(x[near], edges) - 1, 0, 19)
    wsum = np.bincount(idx, w[near], 20)
    mean = np.bincount(idx, w[near] * (y[near] - outside_level), 20)
    good = wsum > 0
    centres = 0.5 * (edges[:-1] + edges[1:])
    if good.sum() < 2:
        return np.zeros(int(near.sum())), near
    template = np.interp(x[near], centres[good], mean[good] / wsum[good])
    return template, near


def _template_amplitudes(m, y, w, groups) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares amplitude of template ``m`` in each group of points, and its error (1.0
    is the mean dip); groups with no template signal get an infinite error."""
    _, inv = np.unique(groups, return_inverse=True)
    mm = np.bincount(inv, w * m * m)
    my = np.bincount(inv, w * m * y)
    ok = mm > 0
    amp = np.where(ok, my / np.where(ok, mm, 1.0), 0.0)
    err = np.where(ok, 1.0 / np.sqrt(np.where(ok, mm, 1.0)), np.inf)
    return amp, err


def _template_depth_tests(m, y, w, epoch_no, red: float) -> tuple[float, float, float, float]:
    """Odd/even: significance and size of the difference of the template amplitudes of odd
    and even transits; uneven: chi^2 per dof of the single transits' amplitudes about their
    mean (errors widened by the red-noise factor) and their weighted spread. A planet's
    transits agree; an eclipsing binary at twice its period, two different planets' single
    transits, or a binary folded at the wrong period do not."""
    if not len(m) or not np.any(m):
        return 0.0, 0.0, 0.0, 0.0
    amp, err = _template_amplitudes(m, y, w, epoch_no % 2)
    oe_sigma = oe_rel = 0.0
    if len(amp) == 2 and np.all(np.isfinite(err)):
        oe_rel = float(abs(amp[0] - amp[1]))
        oe_sigma = oe_rel / float(np.hypot(*err)) / red
    amp, err = _template_amplitudes(m, y, w, epoch_no)
    fin = np.isfinite(err)
    if fin.sum() < 3:  # fewer than three transits: nothing to compare
        return oe_sigma, oe_rel, 0.0, 0.0
    amp, err = amp[fin], err[fin] * red
    weight = 1.0 / np.square(err)
    mean = float(np.average(amp, weights=weight))
    chi2 = float(np.sum(np.square((amp - mean) / err)) / (len(amp) - 1))
    spread = float(np.sqrt(np.average(np.square(amp - mean), weights=weight)) / max(abs(mean), 1e-12))
    return oe_sigma, oe_rel, chi2, spread


def _brightening_beside(y, w, ph, period, dur, outside_level, red: float, depth: float) -> tuple[float, float]:
    """The largest brightening just outside the dip (0.8-1.5 and 1.5-2.5 durations from
    mid-transit, either side): its significance and its size relative to the depth. A
    heartbeat star (an eccentric binary at periastron) dips and brightens within hours; a
    planet's star is flat around the transit."""
    x = ph * period / dur
    best_sigma, best_rel = 0.0, 0.0
    for lo, hi in ((0.8, 1.5), (1.5, 2.5)):
        for sign in (-1.0, 1.0):
            sel = (sign * x > lo) & (sign * x < hi)
            ws = w[sel].sum()
            if sel.sum() < 3 or ws <= 0:
                continue
            rise = float(np.average(y[sel], weights=w[sel]) - outside_level)
            sigma = rise * np.sqrt(ws) / red
            if sigma > best_sigma:
                best_sigma, best_rel = float(sigma), rise / max(depth, 1e-12)
    return best_sigma, best_rel


def describe(lc: LightCurve, res: BlsResult) -> Candidate:
    t, y = lc.time, lc.flux - 1.0
    w = 1.0 / np.square(lc.flux_err)
    P, T0, dur = res.period, res.epoch, res.duration
    ph = _phase(t, P, T0)
    in_tr = np.abs(ph * P) < dur / 2
    depth, err = _box_depth(y, w, in_tr)
    snr = depth / err if np.isfinite(err) and err > 0 else 0.0
    epoch_no = np.round((t - T0) / P).astype(int)
    n_transits = len(np.unique(epoch_no[in_tr]))
    outside = float(np.average(y[~in_tr], weights=w[~in_tr])) if (~in_tr).any() else 0.0
    transit_depths, transit_weights = _single_transits(y, w, in_tr, epoch_no, outside)
    single = _max_single_event_share(transit_depths, transit_weights)
    sec_mask = np.abs((np.abs(ph) - 0.5) * P) < dur / 2
    d_sec, e_sec = _box_depth(y[~in_tr], w[~in_tr], sec_mask[~in_tr])
    sec = d_sec / e_sec if np.isfinite(e_sec) and e_sec > 0 else 0.0
    sec_robust = _secondary_without_strongest_window(y, w, t, P, T0, in_tr, sec_mask)
    red = red_noise_factor(y, w, ph, dur / P, outside)
    snr, sec, sec_robust = snr / red, sec / red, sec_robust / red
    m, near = _transit_template(ph, y, w, P, dur, outside)
    oe, oe_rel, spread_chi2, spread = _template_depth_tests(m, y[near] - outside, w[near], epoch_no[near], red)
    beside_sigma, beside_rel = _brightening_beside(y, w, ph, P, dur, outside, red, depth)
    scale = max(depth, 1e-6)
    gv, coverage = _binned(ph, y, -0.5, 0.5, GLOBAL_BINS)
    half = LOCAL_HALF_WIDTH * dur / P
    lv, _ = _binned(ph, y, -half, half, LOCAL_BINS)
    return Candidate(P, T0, dur, depth, float(snr), res.sde, int(n_transits), float(oe), float(sec),
                     int(in_tr.sum()), float(coverage), single, float(oe_rel), float(d_sec / scale),
                     spread_chi2, spread, beside_sigma, beside_rel,
                     (gv / scale).astype(np.float32),
                     (lv / scale).astype(np.float32), secondary_sigma_robust=float(sec_robust))


def _outside_transits(lc: LightCurve, period: float, epoch: float, duration: float) -> np.ndarray:
    """Points more than 1.5 durations from every transit of this signal; or, when one event
    carries most of it (``SINGLE_EVENT_DOMINATED``), from that event only."""
    ph = _phase(lc.time, period, epoch) * period
    near = np.abs(ph) <= 1.5 * duration
    in_tr = np.abs(ph) < duration / 2
    if not in_tr.any():
        return ~near
    y, w = lc.flux - 1.0, 1.0 / np.square(lc.flux_err)
    epoch_no = np.round((lc.time - epoch) / period).astype(int)
    level = float(np.average(y[~near], weights=w[~near])) if (~near).any() else 0.0
    deficit, wsum = _single_transits(y, w, in_tr, epoch_no, level)
    if _max_single_event_share(deficit, wsum) <= SINGLE_EVENT_DOMINATED:
        return ~near
    strongest = np.unique(epoch_no[in_tr])[np.argmax(np.square(np.clip(deficit, 0, None)) * wsum)]
    return ~(near & (epoch_no == strongest))


def find_candidates(lc: LightCurve, max_candidates: int = 3, device: str = "cpu",
                    oversample: float = 1.0, n_bins: int = 300, max_searches: int = MAX_SEARCHES) -> list[Candidate]:
    """The best few box-shaped periodic dips, strongest first, each a different signal: found
    after masking the earlier ones (1.5 durations either side of each transit), refined on a
    fine period grid, and skipped when its period repeats an earlier candidate's. The search
    stops after a candidate below ``SEARCH_ON_SNR`` and after a first candidate that vetting
    calls a binary (or a pulsator)."""
    baseline = float(lc.time.max() - lc.time.min())
    periods = period_grid(baseline, oversample=oversample)
    out: list[Candidate] = []
    cur = lc
    for _ in range(max_searches):
        if len(out) >= max_candidates or len(cur) < MIN_POINTS or not len(periods):
            break
        res = bls(cur.time, cur.flux, cur.flux_err, periods, n_bins=n_bins, device=device)
        if not np.isfinite(res.power) or res.power <= 0:
            break
        res = refine(cur.time, cur.flux, cur.flux_err, res, device=device)
        if not any(same_signal(res.period, c.period) for c in out):
            out.append(describe(cur, res))
            if len(out) == 1 and is_binary(out[0]):
                break  # vet_star rules out every later candidate of a binary: no need to search for them
            if out[-1].snr < SEARCH_ON_SNR:
                break  # the strongest signal left is noise: the next searches find weaker ones
        keep = _outside_transits(cur, res.period, res.epoch, res.duration)
        cur = LightCurve(cur.time[keep], cur.flux[keep], cur.flux_err[keep], cur.name)
    vet_star(out)
    return out
