"""The channel view on real LSSTCam alerts: what it flags, and whether that looks like bad data.

No labels exist for these alerts, so this is a look, not a metric: the score distribution, the
rate above the threshold per detector, and the top alerts with their SHAP explanations and
their cutouts, for the model card.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from broker.batch import AlertBatch

REAL_LSSTCAM = ["../shared/data/lsst/alerts/fink_lsstcam_20250905_v9.0",
                "../shared/data/lsst/alerts/alerce_lsstcam_v9.0"]
REAL_LSSTCAM_V10 = "../shared/data/lsst/parquet/fink-science_rubin_sample_data_10_0.parquet"


def _coerce(schema, value):
    """A Parquet row's value in the form the Avro schema wants (Parquet stores some ids as
    doubles and leaves out fields an older writer did not have)."""
    if isinstance(schema, list):
        if value is None and "null" in schema:
            return None
        branches = [s for s in schema if s != "null"]
        return _coerce(branches[0], value) if len(branches) == 1 else value
    if isinstance(schema, dict):
        kind = schema["type"]
        if kind == "record":
            value = value or {}
            return {f["name"]: _coerce(f["type"], value.get(f["name"], f.get("default"))) for f in schema["fields"]}
        if kind == "array":
            return [_coerce(schema["items"], v) for v in (value or [])]
        return _coerce(kind, value)
    if value is None:
        return None
    if schema in ("long", "int"):
        return int(value)
    if schema in ("double", "float"):
        return float(value)
    return value


def parquet_alerts(path: str | Path, schema_id: int = 1000) -> list[bytes]:
    """Rows of a v10 alert Parquet file as Confluent-framed alerts (bundled schema ``schema_id``)."""
    import pyarrow.parquet as pq

    from broker.codec import encode_confluent
    from broker.schema_store import BundledLsstSchemas

    schema, _ = BundledLsstSchemas().get(schema_id)
    return [encode_confluent(schema_id, schema, _coerce(schema, row)) for row in pq.read_table(path).to_pylist()]


def real_lsstcam_batch(dirs=REAL_LSSTCAM, parquet: str | None = REAL_LSSTCAM_V10) -> AlertBatch:
    from broker.codec import Decoder
    from broker.tools.replay import iter_payloads
    from broker.schema_store import SchemaResolver
    from broker.surveys import decode_alerts

    payloads = [data for _, data in iter_payloads([d for d in dirs if Path(d).exists()])]
    if parquet and Path(parquet).exists():
        payloads += parquet_alerts(parquet)
    return AlertBatch(decode_alerts(payloads, Decoder(SchemaResolver())))


def _stamp(fits_bytes: bytes | None):
    if not fits_bytes:
        return None
    from astropy.io import fits

    with fits.open(io.BytesIO(fits_bytes)) as hdus:
        for hdu in hdus:
            if hdu.data is not None and np.ndim(hdu.data) == 2:
                return np.asarray(hdu.data, dtype=float)
    return None


def cutout_figure(batch: AlertBatch, rows: list[int], scores: np.ndarray, out: Path, name: str) -> str:
    """Science, template and difference stamps of the alerts ``rows``, one row each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from astropy.visualization import ZScaleInterval

    kinds = ("Science", "Template", "Difference")
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.6 * len(rows)), squeeze=False)
    for r, i in enumerate(rows):
        for c, kind in enumerate(kinds):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            img = _stamp(batch.cutout(i, kind))
            if img is None:
                ax.text(0.5, 0.5, "no stamp", ha="center", va="center")
            else:
                finite = np.isfinite(img)
                lo, hi = ZScaleInterval().get_limits(img[finite]) if finite.any() else (0, 1)
                ax.imshow(np.where(finite, img, lo), origin="lower", cmap="gray", vmin=lo, vmax=hi)
            if r == 0:
                ax.set_title(kind)
            if c == 0:
                ax.set_ylabel(f"{batch.alert_id[i]}\nscore {scores[i]:.2f}", fontsize=8)
    fig.tight_layout()
    from filters.plots import save

    return save(fig, out / f"{name}.png")


def score_histogram(scores: np.ndarray, out: Path, name: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from filters.plots import save

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(scores[np.isfinite(scores)], bins=np.linspace(0, 1, 21))
    ax.set_xlabel("badamp.score")
    ax.set_ylabel("real LSSTCam alerts")
    ax.set_yscale("log")
    fig.tight_layout()
    return save(fig, out / f"{name}.png")


def lsst_channel_check(badamp, batch: AlertBatch, out: Path, top: int = 5) -> dict:
    """Score the LSST alerts of ``batch`` with a set-up ``badamp`` filter; figures into ``out``."""
    rows = np.flatnonzero(batch.survey == "lsst")
    sub = batch.subset(rows)
    result = badamp.score(sub)
    s = result.score
    detector = sub.column("channel_id")
    visit = sub.column("exposure_id")
    groups = {int(g): int((sub.exposure_group == g).sum()) for g in np.unique(sub.exposure_group) if g >= 0}
    per_detector = {}
    for d in np.unique(detector[np.isfinite(detector)]):
        m = detector == d
        per_detector[int(d)] = {"alerts": int(m.sum()), "above_0.5": int((s[m] > 0.5).sum())}
    order = [int(i) for i in np.argsort(-np.nan_to_num(s, nan=-1))[:top]]
    top_rows = [{
        "alert_id": int(sub.alert_id[i]), "visit": float(visit[i]), "detector": float(detector[i]),
        "score": float(s[i]), "reliability": float(sub.column("reliability")[i]),
        "snr": float(sub.column("snr")[i]),
        "shap": {k[5:]: v for k, v in result.details[i].items() if k.startswith("shap:")},
    } for i in order]
    figs = [score_histogram(s, out, "lsst_real_scores"), cutout_figure(sub, order[:3], s, out, "lsst_real_top_cutouts")]
    return {
        "alerts": int(len(rows)), "scored": int(np.isfinite(s).sum()),
        "nulls": {r: result.reason.count(r) for r in set(result.reason) if r},
        "visits": int(len(np.unique(visit[np.isfinite(visit)]))),
        "exposure_groups_sizes": sorted(groups.values(), reverse=True),
        "score_percentiles_50_90_99": np.nanpercentile(s, [50, 90, 99]).tolist() if np.isfinite(s).any() else [],
        "above_0.5": int((s > 0.5).sum()),
        "per_detector": per_detector, "top": top_rows, "figures": figs,
    }
