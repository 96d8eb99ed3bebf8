"""Light-curve files in: comma, tab and whitespace tables (header optional), ``.npy`` and
``.npz`` arrays, and Kepler/K2/TESS light-curve FITS (PDCSAP flux, quality flags applied).

Anything else ends in :class:`LightCurveError` with a sentence saying what was expected, so
the command line reports it per file instead of a traceback. Every reader drops cadences a
transit search must not see: non-finite times or fluxes, non-positive fluxes (a flux collapse
far below zero is a detector event, not a transit) and, in mission files, flagged cadences.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from filters.transit.lightcurve import LightCurve

# Kepler/K2/TESS QUALITY bits dropped: attitude tweak, safe mode, coarse point, Earth point,
# reaction-wheel zero crossing, desaturation, Argabrightening, manual exclude (bits 1-8) and
# the K2 thruster firings (bits 20-21). Kepler and K2 files name the column SAP_QUALITY.
QUALITY_MASK = 0xFF | (1 << 19) | (1 << 20)
QUALITY_COLUMNS = ("QUALITY", "SAP_QUALITY")
QUALITY_NAMES = tuple(c.lower() for c in QUALITY_COLUMNS)  # the same flags in tables and arrays
TIME_NAMES = ("time", "t", "bjd", "btjd", "bkjd", "time_bkjd", "time_btjd", "mjd", "jd", "hjd", "date")
FLUX_NAMES = ("pdcsap_flux", "flux", "sap_flux", "f", "relflux", "rel_flux", "norm_flux", "flux_norm")
ERR_NAMES = ("pdcsap_flux_err", "flux_err", "sap_flux_err", "err", "error", "ferr", "e_flux", "flux_error", "sigma")


class LightCurveError(ValueError):
    """A file that is not a light curve this filter can read; the message says why."""


def _find(header: list[str], names: tuple[str, ...]) -> int | None:
    return next((header.index(n) for n in names if n in header), None)


def _columns(data: np.ndarray, header: list[str] | None, name: str) -> LightCurve:
    if data.ndim != 2 or data.shape[1] < 2:
        raise LightCurveError(f"{name}: need at least two columns (time, flux), found {data.shape[-1] if data.ndim else 0}")
    t_col, f_col, e_col = 0, 1, (2 if data.shape[1] > 2 else None)
    if header:
        t_col = _find(header, TIME_NAMES)
        t_col = 0 if t_col is None else t_col
        f_col = _find(header, FLUX_NAMES)
        f_col = (1 if t_col != 1 else 0) if f_col is None else f_col
        e_col = _find(header, ERR_NAMES)
    err = data[:, e_col] if e_col is not None else np.full(len(data), np.nan)
    flux = data[:, f_col].astype(float)
    q_col = _find(header, QUALITY_NAMES) if header else None
    if q_col is not None:
        flux = _drop_flagged(flux, data[:, q_col])
    return LightCurve(data[:, t_col].astype(float), flux, err.astype(float), name)


def _drop_flagged(flux: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """NaN where a mission quality flag of :data:`QUALITY_MASK` is set (missing flags count as unset)."""
    q = np.nan_to_num(np.asarray(quality, float), nan=0.0).astype(np.int64)
    return np.where((q & QUALITY_MASK) != 0, np.nan, flux)


def _number(token: str) -> float:
    try:
        return float(token)
    except ValueError:
        return np.nan


def _table(path: Path) -> LightCurve:
    """Comma-, tab- or whitespace-separated columns: time, flux[, flux_err]; a header row of
    names is optional (known names pick the columns); ``#``, ``%`` and ``\\`` lines are comments."""
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise LightCurveError(f"{path.name}: not a text table, .npy/.npz or light-curve FITS file") from exc
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and ln[0] not in "#%\\|"]
    if not lines:
        raise LightCurveError(f"{path.name}: no rows")
    sep = "," if "," in lines[0] else ("\t" if "\t" in lines[0] else None)
    rows = [[c.strip() for c in ln.split(sep)] for ln in lines]
    header = None
    if np.isnan(_number(rows[0][0])):
        header = [h.strip().strip('"').lower() for h in rows[0]]
        rows = rows[1:]
    width = max((len(r) for r in rows), default=0)
    rows = [r for r in rows if len(r) == width]
    if not rows or width < 2:
        raise LightCurveError(f"{path.name}: need rows of at least two numeric columns (time, flux)")
    data = np.array([[_number(c) for c in r] for r in rows])
    if not np.isfinite(data[:, :2]).any(axis=0).all():
        raise LightCurveError(f"{path.name}: the first columns hold no numbers")
    return _columns(data, header, path.name)


def _named_arrays(arrays: dict[str, np.ndarray], name: str) -> LightCurve:
    lower = {k.lower(): np.asarray(v) for k, v in arrays.items()}
    if len(lower) == 1:
        return _array(next(iter(lower.values())), name)
    t = next((lower[n] for n in TIME_NAMES if n in lower), None)
    f = next((lower[n] for n in FLUX_NAMES if n in lower), None)
    if t is None or f is None:
        raise LightCurveError(f"{name}: arrays {sorted(lower)} name no time ({'/'.join(TIME_NAMES[:3])}) "
                              f"and flux ({'/'.join(FLUX_NAMES[:3])})")
    e = next((lower[n] for n in ERR_NAMES if n in lower), np.full(len(t), np.nan))
    q = next((lower[n] for n in QUALITY_NAMES if n in lower), np.zeros(len(t)))
    if not (len(t) == len(f) == len(e) == len(q)):
        raise LightCurveError(f"{name}: time, flux, error and quality arrays differ in length")
    return LightCurve(t.astype(float), _drop_flagged(f.astype(float), q), np.asarray(e, float), name)


def _array(a: np.ndarray, name: str) -> LightCurve:
    if a.dtype.names:
        return _named_arrays({n: a[n] for n in a.dtype.names}, name)
    if a.ndim == 2 and a.shape[0] in (2, 3) and a.shape[1] > 3:
        a = a.T  # rows are time, flux[, err]
    if not np.issubdtype(a.dtype, np.number):
        raise LightCurveError(f"{name}: array of {a.dtype}, not numbers")
    return _columns(a, None, name)


def _numpy(path: Path) -> LightCurve:
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:  # pickled objects are refused: they would run code
        raise LightCurveError(f"{path.name}: not a plain numeric .npy/.npz ({exc})") from exc
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            return _named_arrays({k: loaded[k] for k in loaded.files}, path.name)
    return _array(loaded, path.name)


def _fits(path: Path) -> LightCurve:
    """Kepler/K2/TESS light-curve files: the LIGHTCURVE extension, PDCSAP flux preferred,
    cadences with a quality bit of :data:`QUALITY_MASK` dropped."""
    from astropy.io import fits

    try:
        hdul = fits.open(path)
    except OSError as exc:
        raise LightCurveError(f"{path.name}: unreadable FITS ({exc})") from exc
    with hdul:
        tables = [h for h in hdul if isinstance(h, fits.BinTableHDU)]
        hdu = hdul["LIGHTCURVE"] if "LIGHTCURVE" in hdul else (tables[0] if tables else None)
        if hdu is None:
            raise LightCurveError(f"{path.name}: FITS without a table extension (a light curve has TIME and FLUX columns)")
        cols = [c.upper() for c in hdu.columns.names]
        flux_name = next((n for n in ("PDCSAP_FLUX", "SAP_FLUX", "FLUX", "KSPSAP_FLUX", "DET_FLUX") if n in cols), None)
        if "TIME" not in cols or flux_name is None:
            raise LightCurveError(f"{path.name}: FITS table without TIME and a flux column (has {', '.join(cols[:8])})")
        data = hdu.data
        err_name = flux_name + "_ERR" if flux_name + "_ERR" in cols else None
        t = np.asarray(data["TIME"], float)
        f = np.asarray(data[flux_name], float)
        e = np.asarray(data[err_name], float) if err_name else np.full(len(t), np.nan)
        for q in QUALITY_COLUMNS:
            if q in cols:
                f = _drop_flagged(f, data[q])
    return LightCurve(t, f, e, path.name)


def clean(lc: LightCurve) -> LightCurve:
    """Finite times and fluxes only; fluxes that are not positive (on a positive scale) dropped."""
    ok = np.isfinite(lc.time) & np.isfinite(lc.flux)
    med = np.median(lc.flux[ok]) if ok.any() else 0.0
    if med > 0:
        ok &= lc.flux > 0
    if ok.sum() == 0:
        raise LightCurveError(f"{lc.name}: no finite, positive flux")
    return LightCurve(lc.time[ok], lc.flux[ok], lc.flux_err[ok], lc.name)


def load(path: str | Path) -> LightCurve:
    path = Path(path)
    if not path.is_file():
        raise LightCurveError(f"{path}: no such file")
    name = path.name.lower()
    if name.endswith((".fits", ".fit", ".fz", ".fits.gz")):
        lc = _fits(path)
    elif name.endswith((".npy", ".npz")):
        lc = _numpy(path)
    else:
        with path.open("rb") as fh:
            head = fh.read(6)
        if head.startswith(b"SIMPLE"):
            lc = _fits(path)
        elif head.startswith(b"\x93NUMPY") or head.startswith(b"PK"):
            lc = _numpy(path)
        else:
            lc = _table(path)
    return clean(lc)
