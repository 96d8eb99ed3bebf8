"""AlertBatch: the one in-memory shape every filter sees, whatever the survey.

Ids and the triggering detection are columns (numpy arrays, NaN where a survey or version
lacks a field); the light-curve history is padded 2-D arrays plus lengths, with time in MJD,
flux and error in nJy (AB: 0 mag = 31.4 in nJy magnitudes), a band code and a kind code.
Cutouts stay as the raw bytes the survey sent; :meth:`AlertBatch.cutout` decompresses one
only when a filter asks.
"""
from __future__ import annotations

import gzip
import math
from itertools import chain
from dataclasses import dataclass, field

import numpy as np

BANDS = ("u", "g", "r", "i", "z", "y")
BAND_CODE = {b: i for i, b in enumerate(BANDS)}

# Light-curve point kinds.
DETECTION, FORCED, UPPER_LIMIT = 0, 1, 2

NJY_ZEROPOINT_MAG = 31.4  # an AB magnitude of 31.4 is 1 nJy


def mag_to_njy(mag: float) -> float:
    """Flux in nJy; NaN for sentinel or absurd magnitudes (real packets carry some)."""
    if mag is None or not -10.0 < mag < 60.0:
        return float("nan")
    return float(10.0 ** (-0.4 * (mag - NJY_ZEROPOINT_MAG)))


@dataclass
class NormalisedAlert:
    """One alert after its survey adapter: what the batch is stacked from."""

    survey: str
    object_id: str
    alert_id: int
    schema_version: str
    columns: dict[str, float]  # the triggering detection; common names plus native fields
    band: str
    lc_time: list[float] = field(default_factory=list)
    lc_flux: list[float] = field(default_factory=list)
    lc_flux_err: list[float] = field(default_factory=list)
    lc_band: list[int] = field(default_factory=list)
    lc_kind: list[int] = field(default_factory=list)
    lc_ref_flux: list[float] = field(default_factory=list)  # reference-image source under it
    cutouts: dict[str, bytes | None] = field(default_factory=dict)
    cutout_compression: str = "none"  # "gzip" for ZTF stamps

    def add_point(self, t: float, flux: float, err: float, band: str | None, kind: int,
                  ref_flux: float | None = None) -> None:
        if t is None:
            return
        t = float(t)
        if not math.isfinite(t):  # math, not numpy: this runs for every point of every alert
            return
        # Infinite fluxes and negative or infinite errors are as good as missing.
        self.lc_ref_flux.append(_finite(ref_flux))
        self.lc_time.append(t)
        self.lc_flux.append(_finite(flux))
        err = _finite(err)
        self.lc_flux_err.append(err if err >= 0 else math.nan)
        self.lc_band.append(BAND_CODE.get(band or "", -1))
        self.lc_kind.append(kind)


def _finite(v) -> float:
    if v is None:
        return math.nan
    v = float(v)
    return v if math.isfinite(v) else math.nan


@dataclass
class LightCurves:
    time: np.ndarray  # (n, L) MJD, NaN padding
    flux: np.ndarray  # (n, L) nJy
    flux_err: np.ndarray  # (n, L) nJy
    band: np.ndarray  # (n, L) int8 band code, -1 padding/unknown
    kind: np.ndarray  # (n, L) int8 DETECTION/FORCED/UPPER_LIMIT, -1 padding
    length: np.ndarray  # (n,) points per alert
    # (n, L) nJy of the reference-image source under each point (ZTF magnr), NaN if none:
    # reference + difference flux is the total ("DC") flux that catalogue light curves use.
    ref_flux: np.ndarray


class AlertBatch:
    """Columns for ``n`` alerts; index ``i`` is the same alert in every array."""

    def __init__(self, alerts: list[NormalisedAlert], raw: list[bytes] | None = None):
        n = len(alerts)
        self.n = n
        self.survey = np.array([a.survey for a in alerts], dtype=object)
        self.object_id = np.array([a.object_id for a in alerts], dtype=object)
        self.alert_id = np.array([a.alert_id for a in alerts], dtype=np.int64)
        self.schema_version = [a.schema_version for a in alerts]
        self.band = np.array([a.band for a in alerts], dtype=object)
        self.columns = _stack_columns(alerts)
        self.lc = _stack_light_curves(alerts)
        self._cutouts = [a.cutouts for a in alerts]
        self._compression = [a.cutout_compression for a in alerts]
        self.raw = raw if raw is not None else [b""] * n
        # Which alerts saw each other in one exposure: by default the batch's alerts of the same
        # survey and exposure id; the pipeline sets whole exposure runs (broker/exposure_runs.py).
        self.exposure_group = exposure_groups(self.survey, self.column("exposure_id"))
        self.derived: dict = {}  # per-batch results filters share (e.g. light-curve features)

    def __len__(self) -> int:
        return self.n

    def column(self, name: str) -> np.ndarray:
        """A detection column; all-NaN when no alert in the batch carries it."""
        col = self.columns.get(name)
        return col if col is not None else np.full(self.n, np.nan)

    def cutout(self, i: int, kind: str = "Difference") -> bytes | None:
        """FITS bytes of one stamp (``Science``, ``Template`` or ``Difference``), decompressed."""
        data = self._cutouts[i].get(kind)
        if data is None:
            return None
        if self._compression[i] == "gzip" and data[:2] == b"\x1f\x8b":
            return gzip.decompress(data)
        return data

    def subset(self, idx: np.ndarray) -> "AlertBatch":
        """A view on some alerts (used by the runtime to chunk a batch for a device)."""
        out = object.__new__(AlertBatch)
        idx = np.asarray(idx, dtype=np.int64)
        out.n = len(idx)
        out.survey = self.survey[idx]
        out.object_id = self.object_id[idx]
        out.alert_id = self.alert_id[idx]
        out.schema_version = [self.schema_version[i] for i in idx]
        out.band = self.band[idx]
        out.columns = {k: v[idx] for k, v in self.columns.items()}
        lc = self.lc
        out.lc = LightCurves(lc.time[idx], lc.flux[idx], lc.flux_err[idx], lc.band[idx],
                             lc.kind[idx], lc.length[idx], lc.ref_flux[idx])
        out._cutouts = [self._cutouts[i] for i in idx]
        out._compression = [self._compression[i] for i in idx]
        out.raw = [self.raw[i] for i in idx]
        out.exposure_group = self.exposure_group[idx]
        out.derived = {}
        return out


def exposure_groups(survey: np.ndarray, exposure: np.ndarray) -> np.ndarray:
    """One int per alert, equal for alerts of the same survey and exposure; -1 without an exposure."""
    out = np.full(len(exposure), -1, dtype=np.int64)
    keys: dict[tuple, int] = {}
    for i, (s, e) in enumerate(zip(survey, exposure)):
        if np.isfinite(e):
            out[i] = keys.setdefault((s, float(e)), len(keys))
    return out


def _stack_columns(alerts: list[NormalisedAlert]) -> dict[str, np.ndarray]:
    """One float array per column name (NaN where an alert lacks it). Alerts of one schema
    share their column names in one order: each such group becomes one 2-D array at once."""
    groups: dict[tuple, list[int]] = {}
    for i, a in enumerate(alerts):
        groups.setdefault(tuple(a.columns), []).append(i)
    names = sorted({k for keys in groups for k in keys})
    where = {k: j for j, k in enumerate(names)}
    table = np.full((len(names), len(alerts)), np.nan)  # one allocation; each column a row of it
    for keys, rows in groups.items():
        values = np.fromiter(chain.from_iterable(alerts[i].columns.values() for i in rows), np.float64,
                             count=len(rows) * len(keys)).reshape(len(rows), len(keys))
        table[np.ix_([where[k] for k in keys], rows)] = values.T
    return dict(zip(names, table))


def _stack_light_curves(alerts: list[NormalisedAlert]) -> LightCurves:
    """The histories padded into (n, L) arrays, each alert's points in time order (a stable
    sort: points at the same time keep their order; NaN times last)."""
    n = len(alerts)
    length = np.array([len(a.lc_time) for a in alerts], dtype=np.int64)
    width = int(length.max()) if n else 0
    time = np.full((n, width), np.nan)
    flux = np.full((n, width), np.nan)
    err = np.full((n, width), np.nan)
    band = np.full((n, width), -1, dtype=np.int8)
    kind = np.full((n, width), -1, dtype=np.int8)
    ref = np.full((n, width), np.nan)
    if not width:
        return LightCurves(time, flux, err, band, kind, length, ref)
    row = np.repeat(np.arange(n), length)
    col = np.arange(len(row)) - np.repeat(np.cumsum(length) - length, length)

    def joined(attr: str, dtype) -> np.ndarray:  # one pass over the lists, no array per alert
        return np.fromiter(chain.from_iterable(getattr(a, attr) for a in alerts), dtype, count=len(row))

    t = joined("lc_time", np.float64)
    order = np.lexsort((t, row))  # by alert, then by time; stable
    time[row, col] = t[order]
    flux[row, col] = joined("lc_flux", np.float64)[order]
    err[row, col] = joined("lc_flux_err", np.float64)[order]
    band[row, col] = joined("lc_band", np.int8)[order]
    kind[row, col] = joined("lc_kind", np.int8)[order]
    ref[row, col] = joined("lc_ref_flux", np.float64)[order]
    return LightCurves(time, flux, err, band, kind, length, ref)


def numeric_fields(record: dict | None, skip: tuple[str, ...] = ()) -> dict[str, float]:
    """Every int/float/bool field of a flat record as a float (None becomes NaN)."""
    out: dict[str, float] = {}
    if not record:
        return out
    nan, plain = math.nan, _PLAIN_NUMBERS
    for k, v in record.items():
        # The exact-type test first: it answers for a decoder's ints and floats (~100 per alert).
        if v is None:
            out[k] = nan
        elif type(v) in plain or isinstance(v, (int, float)):
            out[k] = float(v)  # a bool gives 1.0 or 0.0
    for k in skip:
        out.pop(k, None)
    return out


_PLAIN_NUMBERS = frozenset((int, float, bool))
