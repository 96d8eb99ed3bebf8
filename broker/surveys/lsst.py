"""Rubin/LSST alerts (lsst.vX_Y.alert, broker re-serialisations, older DPDD field names)."""
from __future__ import annotations

import math

from broker.batch import DETECTION, FORCED, UPPER_LIMIT, NormalisedAlert, numeric_fields
from broker.codec import DecodeError, DecodedMessage, schema_version_of
from broker.surveys.columns import lsst_version_by_fields


_TIMES, _BANDS = ("midpointMjdTai", "midPointTai", "midpointMjd"), ("band", "filterName")
_POINT = frozenset(_TIMES + _BANDS + ("psfFlux", "psFlux", "psfFluxErr", "psFluxErr", "scienceFlux"))
# The fields of a history point that normalise() reads; the decoder reads past the others.
# prvDiaSources usually shares the diaSource type, which stays whole (project_arrays sees to it).
HISTORY_READS = {
    "prvDiaSources": _POINT,
    "prvDiaForcedSources": _POINT,
    "prvDiaNondetectionLimits": frozenset(_TIMES + _BANDS + ("diaNoise", "psfFluxErr")),
}


def _first(d: dict, *names):
    for n in names:
        v = d.get(n)
        if v is not None:
            return v
    return None


def _time(p: dict):
    return _first(p, *_TIMES)


def _band(p: dict):
    return _first(p, *_BANDS)


def _float(v) -> float:
    return float(v) if v is not None else math.nan


def _version_field(value) -> str | None:
    """Fink writes ``lsst_schema_version`` as e.g. ``lsst.v9_0``."""
    if not value:
        return None
    return schema_version_of({"name": str(value)}) or str(value)


def normalise(rec: dict, message: DecodedMessage) -> NormalisedAlert:
    ds = rec["diaSource"]
    alert_id = _first(rec, "diaSourceId", "alertId")
    if alert_id is None:
        alert_id = ds.get("diaSourceId")
    if alert_id is None:
        raise DecodeError("normalise_failed", "lsst alert without diaSourceId/alertId")
    obj = rec.get("diaObject") or {}
    object_id = _first(ds, "diaObjectId") or obj.get("diaObjectId") or _first(ds, "ssObjectId")
    version = (message.schema_version or _version_field(rec.get("lsst_schema_version"))
               or lsst_version_by_fields(frozenset(ds)) or "unknown")
    cols = numeric_fields(ds)
    t = _time(ds)
    flux = _first(ds, "psfFlux", "psFlux")
    err = _first(ds, "psfFluxErr", "psFluxErr")
    band = _band(ds) or ""
    cols.update(
        mjd=t if t is not None else math.nan,
        flux=flux if flux is not None else math.nan,
        flux_err=err if err is not None else math.nan,
        exposure_id=_float(_first(ds, "visit", "ccdVisitId")),
        channel_id=_float(ds.get("detector")),
    )
    if "decl" in ds and "dec" not in ds:
        cols["dec"] = float(ds["decl"])
    alert = NormalisedAlert(
        survey="lsst",
        object_id=str(object_id) if object_id is not None else "",
        alert_id=int(alert_id),
        schema_version=str(version),
        columns=cols,
        band=band,
    )
    alert.add_point(t, flux, err, band, DETECTION, _template_flux(ds, flux))
    for p in rec.get("prvDiaSources") or ():
        f = _first(p, "psfFlux", "psFlux")
        alert.add_point(_time(p), f, _first(p, "psfFluxErr", "psFluxErr"), _band(p), DETECTION, _template_flux(p, f))
    for p in rec.get("prvDiaForcedSources") or ():
        f = _first(p, "psfFlux", "psFlux")
        alert.add_point(_time(p), f, _first(p, "psfFluxErr", "psFluxErr"), _band(p), FORCED, _template_flux(p, f))
    for p in rec.get("prvDiaNondetectionLimits") or ():
        alert.add_point(_time(p), None, _first(p, "diaNoise", "psfFluxErr"), _band(p), UPPER_LIMIT)
    for kind in ("Science", "Template", "Difference"):
        v = rec.get(f"cutout{kind}")
        alert.cutouts[kind] = v if isinstance(v, (bytes, bytearray)) else None
    return alert


def _template_flux(point: dict, diff_flux) -> float | None:
    """What lies under a point besides its difference flux: ``scienceFlux - psfFlux`` where the
    schema carries the total (science-image) flux, so that, as for ZTF's reference magnitude,
    reference + difference is the total flux light-curve shapes need. None before v6."""
    science = point.get("scienceFlux")
    if science is None or diff_flux is None:
        return None
    return float(science) - float(diff_flux)
