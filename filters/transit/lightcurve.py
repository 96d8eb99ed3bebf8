"""Light curves in, clean relative flux out: loading (CSV, Kepler/K2/TESS FITS, alerts),
detrending and clipping, before the transit search."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class LightCurve:
    time: np.ndarray  # days
    flux: np.ndarray  # relative flux, median 1 (or any positive flux scale)
    flux_err: np.ndarray
    name: str = ""

    def __len__(self) -> int:
        return len(self.time)

    def sorted(self) -> "LightCurve":
        order = np.argsort(self.time, kind="stable")
        return LightCurve(self.time[order], self.flux[order], self.flux_err[order], self.name)


def _csv(path: Path) -> LightCurve:
    """Two or more columns: time, flux[, flux_err]; a header row is optional."""
    import csv

    with path.open() as fh:
        rows = [r for r in csv.reader(fh) if r and not r[0].lstrip().startswith("#")]
    header = None
    try:
        float(rows[0][0])
    except ValueError:
        header = [h.strip().lower() for h in rows[0]]
        rows = rows[1:]
    data = np.array([[float(v) if v.strip() not in ("", "nan") else np.nan for v in r] for r in rows])
    t_col, f_col, e_col = 0, 1, 2 if data.shape[1] > 2 else None
    if header:
        def find(*names):
            return next((header.index(n) for n in names if n in header), None)
        t_col = find("time", "t", "bjd", "btjd", "bkjd", "mjd", "jd") or 0
        f_col = find("pdcsap_flux", "flux", "sap_flux", "f", "relflux")
        f_col = 1 if f_col is None else f_col
        e_col = find("pdcsap_flux_err", "flux_err", "sap_flux_err", "err", "error")
    err = data[:, e_col] if e_col is not None else np.full(len(data), np.nan)
    return LightCurve(data[:, t_col], data[:, f_col], err, path.name)


def _fits(path: Path) -> LightCurve:
    """Kepler/K2/TESS light-curve files: the LIGHTCURVE extension, PDCSAP flux preferred."""
    from astropy.io import fits

    with fits.open(path) as hdul:
        hdu = hdul["LIGHTCURVE"] if "LIGHTCURVE" in hdul else hdul[1]
        cols = [c.upper() for c in hdu.columns.names]
        data = hdu.data
        flux_name = next(n for n in ("PDCSAP_FLUX", "SAP_FLUX", "FLUX") if n in cols)
        err_name = flux_name + "_ERR" if flux_name + "_ERR" in cols else None
        t = np.asarray(data["TIME"], float)
        f = np.asarray(data[flux_name], float)
        e = np.asarray(data[err_name], float) if err_name else np.full(len(t), np.nan)
        if "QUALITY" in cols:
            bad = np.asarray(data["QUALITY"]) != 0
            f = np.where(bad, np.nan, f)
    return LightCurve(t, f, e, path.name)


def load(path: str | Path) -> LightCurve:
    path = Path(path)
    if path.suffix.lower() in (".fits", ".fit", ".fz") or path.name.endswith(".fits.gz"):
        return _fits(path)
    return _csv(path)


def combine(curves: list[LightCurve]) -> LightCurve:
    """Several files of one star (e.g. Kepler quarters): each normalised, then joined."""
    parts = [normalise(c) for c in curves]
    return LightCurve(np.concatenate([c.time for c in parts]), np.concatenate([c.flux for c in parts]),
                      np.concatenate([c.flux_err for c in parts]),
                      "+".join(c.name for c in curves)).sorted()


def normalise(lc: LightCurve) -> LightCurve:
    ok = np.isfinite(lc.time) & np.isfinite(lc.flux)
    t, f, e = lc.time[ok], lc.flux[ok], lc.flux_err[ok]
    med = np.median(f) if len(f) else 1.0
    med = med if med != 0 else 1.0
    return LightCurve(t, f / med, e / abs(med), lc.name).sorted()


def robust_std(x: np.ndarray) -> float:
    """Standard deviation from the median absolute deviation (deaf to dips and flares)."""
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def detrend(lc: LightCurve, window_days: float = 0.75, clip_sigma: float = 4.0,
            min_window_points: int = 20) -> LightCurve:
    """Divide by a running median over ``window_days`` (longer than a transit, shorter than
    stellar and pointing trends), then drop upward outliers (flares, cosmic rays) and NaNs.
    Sparse cadences widen the window to the typical span of ``min_window_points`` consecutive
    points: a window holding a handful of points follows each point (the median of one point
    divides it by itself) and so shrinks the noise and eats dips. Counting points, not the
    median spacing, matters for surveys that revisit a field several times a night. Errors
    missing from the file are estimated from the scatter."""
    lc = normalise(lc)
    t, f = lc.time, lc.flux
    if len(t) < 5:
        return lc
    if len(t) > min_window_points:
        window_days = max(window_days, float(np.median(t[min_window_points:] - t[:-min_window_points])))
    lo = np.searchsorted(t, t - window_days / 2)
    hi = np.searchsorted(t, t + window_days / 2)
    if np.median(hi - lo) > 400:  # dense cadence: subsample the window for speed
        step = int(np.ceil(np.median(hi - lo) / 400))
    else:
        step = 1
    trend = np.array([np.median(f[a:b:step]) for a, b in zip(lo, hi)])
    rel = f / trend
    resid = rel - 1
    mad = robust_std(resid)
    keep = resid < clip_sigma * mad if mad > 0 else np.ones(len(t), bool)
    err = lc.flux_err / trend
    if not np.isfinite(err).any() or np.nanmedian(err) <= 0:
        err = np.full(len(t), mad if mad > 0 else 1e-3)
    err = np.where(np.isfinite(err) & (err > 0), err, np.nanmedian(err))
    return LightCurve(t[keep], rel[keep], err[keep], lc.name)


def significant_sinusoids(lc: LightCurve, max_terms: int = 3, false_alarm: float = 1e-3):
    """Sinusoids (rotation, pulsation) in a detrended light curve, as a function of time, or
    None. Each term is the Lomb-Scargle peak between half the baseline and 0.1 d, kept only
    below ``false_alarm`` and fitted without the points more than 3 sigma low, so transit and
    eclipse points do not pull it (a box of duty cycle q and depth d leaves only ~2 q d at
    its period)."""
    from astropy.timeseries import LombScargle

    t, y = lc.time, lc.flux - 1.0
    if len(t) < 20:
        return None
    f_min, f_max = 2.0 / float(t.max() - t.min()), 10.0
    terms = []
    for _ in range(max_terms):
        keep = y > -3 * robust_std(y)
        ls = LombScargle(t[keep], y[keep])
        freq, power = ls.autopower(minimum_frequency=f_min, maximum_frequency=f_max, samples_per_peak=5)
        k = int(np.argmax(power))
        if ls.false_alarm_probability(power[k], minimum_frequency=f_min, maximum_frequency=f_max) > false_alarm:
            break
        terms.append((ls, float(freq[k])))
        y = y - ls.model(t, freq[k])
    if not terms:
        return None
    return lambda when: sum(ls.model(when, f) for ls, f in terms)


def prepare(lc: LightCurve) -> LightCurve:
    """What the transit search sees: detrended, clipped and pre-whitened relative flux.
    With one visit a night a few-day rotation is undersampled by any running median holding
    enough points (it left survey residuals ~1.5x the photometric noise), so significant
    sinusoids found in the detrended flux are taken out of the original flux and the
    detrending is done again, now without them (subtracting after the median leaves the
    median's own scatter from sampling the sinusoid)."""
    clean = detrend(lc)
    model = significant_sinusoids(clean)
    if model is None:
        return clean
    base = normalise(lc)
    return detrend(LightCurve(base.time, base.flux - model(base.time), base.flux_err, base.name))
