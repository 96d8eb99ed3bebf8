"""Real light curves replayed as alerts, so the demo shows filters that need long histories.

Alert histories today are short (a ZTF alert carries 30 days; the real LSSTCam samples are
first detections), so a transit search has nothing to fold. Here a real light curve (time,
relative flux) becomes the forced-photometry history of a real LSSTCam alert: the template's
detection, cutouts and schema stay as they are; the ids are new, and each point carries the
difference flux ``psfFlux`` and the total flux ``scienceFlux`` in nJy. The alert says what it
is in ``target_name``: this is a demonstration input, not a Rubin alert.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

KEPLER_BKJD_TO_MJD = 2454833.0 - 2400000.5  # BKJD = BJD - 2454833


def read_two_column_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    data = np.loadtxt(path, delimiter=",", ndmin=2)
    t, f = data[:, 0], data[:, 1]
    ok = np.isfinite(t) & np.isfinite(f)
    return t[ok], f[ok]


def _blank(schema) -> object:
    """A value of ``schema`` made of its defaults (or zeros where it has none)."""
    if isinstance(schema, list):
        return None if "null" in schema else _blank(schema[0])
    if isinstance(schema, dict):
        if schema["type"] == "record":
            return {f["name"]: f["default"] if "default" in f else _blank(f["type"]) for f in schema["fields"]}
        if schema["type"] == "array":
            return []
        return _blank(schema["type"])
    return {"long": 0, "int": 0, "double": 0.0, "float": 0.0, "string": "", "boolean": False,
            "bytes": b""}.get(schema)


def _field_type(record_schema: dict, name: str):
    return next(f["type"] for f in record_schema["fields"] if f["name"] == name)


def light_curve_alert(template: bytes, time_mjd: np.ndarray, relative_flux: np.ndarray, name: str,
                      alert_id: int, flux_njy: float = 20_000.0, band: str = "r") -> bytes:
    """A container file: ``template`` (one LSST alert) with the light curve as its history."""
    import fastavro

    reader = fastavro.reader(io.BytesIO(template))
    schema = reader.writer_schema
    record = next(reader)
    forced_union = _field_type(schema, "prvDiaForcedSources")
    item = next(s for s in forced_union if isinstance(s, dict))["items"]
    if isinstance(item, list):  # re-serialisations (Fink's topLevelRecord) make items nullable
        item = next(s for s in item if isinstance(s, dict))
    err = 1.4826 * np.median(np.abs(np.diff(relative_flux))) / np.sqrt(2)  # robust point-to-point scatter
    object_id = alert_id + 1
    points = []
    for k, (t, f) in enumerate(zip(time_mjd, relative_flux)):
        p = _blank(item)
        p.update(diaForcedSourceId=8 * 10**18 + (alert_id % 10**9) * 10**5 + k, diaObjectId=object_id, visit=k,
                 detector=record["diaSource"]["detector"], ra=record["diaSource"]["ra"],
                 dec=record["diaSource"]["dec"], midpointMjdTai=float(t), band=band,
                 psfFlux=float((f - 1.0) * flux_njy), psfFluxErr=float(err * flux_njy),
                 scienceFlux=float(f * flux_njy), scienceFluxErr=float(err * flux_njy))
        points.append({k: v for k, v in p.items() if k in {f["name"] for f in item["fields"]}})
    # visit 0: not one of the template's visits, so it keeps no exposure company it never had
    source = dict(record["diaSource"], diaSourceId=alert_id, midpointMjdTai=float(time_mjd[-1]) + 0.5,
                  diaObjectId=object_id, visit=0)
    out = dict(record, diaSourceId=alert_id, diaSource=source, prvDiaSources=[], prvDiaForcedSources=points,
               target_name=f"demo: {name} replayed as an alert history")
    if out.get("diaObject"):
        out["diaObject"] = dict(out["diaObject"], diaObjectId=object_id)
    buf = io.BytesIO()
    fastavro.writer(buf, schema, [out], codec="deflate")
    return buf.getvalue()


def kepler_csv_alerts(template: bytes, paths: list[Path], first_id: int = 9 * 10**17) -> list[tuple]:
    """(alert id, time in MJD, relative flux, alert bytes) for each two-column Kepler/K2 CSV
    (time in BKJD, normalised flux)."""
    out = []
    for k, path in enumerate(paths):
        t, f = read_two_column_csv(path)
        mjd, alert_id = t + KEPLER_BKJD_TO_MJD, first_id + 2 * k
        out.append((alert_id, mjd, f, light_curve_alert(template, mjd, f, path.stem, alert_id)))
    return out
