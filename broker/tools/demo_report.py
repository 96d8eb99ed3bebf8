"""What the demo shows after the run: every filter's scores read back from the annotations
topic, a table per filter (scored, null reasons, top alerts with their details), and PNGs of
the score distributions and of the best transit candidate's folded light curve."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from broker.annotations import decode_annotation
from broker.tools.tail import read_topic


def read_annotations(bootstrap: str, topic: str) -> list[dict]:
    """Every annotation of ``topic``, read back by direct assignment."""
    return [decode_annotation(m.value()) for m in read_topic(bootstrap, topic, idle_s=2.0, timeout_s=30.0)]


def _details(d: dict, keep: int = 4) -> str:
    items = [(k, v) for k, v in d.items() if k != "candidates"][:keep]
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in items)


def filter_tables(annotations: list[dict], names: list[str], top: int = 3) -> str:
    lines = []
    for name in names:
        outs = [(a, a["filters"][name]) for a in annotations if name in a["filters"]]
        scored = [(a, o) for a, o in outs if o["score"] is not None]
        nulls = Counter(o["reason"].split(":")[0] for _, o in outs if o["score"] is None)
        null_text = ", ".join(f"{r} {n}" for r, n in nulls.most_common()) or "none"
        lines += ["", f"{name}: {len(scored)} scored, {len(outs) - len(scored)} null ({null_text})"]
        for a, o in sorted(scored, key=lambda x: -x[1]["score"])[:top]:
            lines.append(f"  {o['score']:.3f}  {a['survey']} {a['alert_id']}  {_details(o.get('details') or {})}")
    return "\n".join(lines)


def score_figure(annotations: list[dict], names: list[str], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        s = [a["filters"][name]["score"] for a in annotations if a["filters"].get(name, {}).get("score") is not None]
        ax.hist(s, bins=np.linspace(0, 1, 21))
        ax.set(title=f"{name} ({len(s)} scored)", xlabel="score", ylabel="alerts")
    fig.tight_layout()
    path = out / "demo_scores.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _trend(t: np.ndarray, f: np.ndarray, width_d: float = 0.75) -> np.ndarray:
    """A slow trend to divide out for the picture: medians of ``width_d`` bins, interpolated."""
    edges = np.arange(t.min(), t.max() + width_d, width_d)
    idx = np.digitize(t, edges)
    centres = [(t[idx == k].mean(), np.median(f[idx == k])) for k in np.unique(idx)]
    x, y = np.array(centres).T
    return np.interp(t, x, y)


def transit_figure(annotations: list[dict], curves: dict[int, tuple[np.ndarray, np.ndarray]], out: Path) -> Path | None:
    """The best-scoring transit candidate among ``curves`` (alert id -> (time, flux)), folded."""
    best = max((a for a in annotations if a["alert_id"] in curves
                and a["filters"].get("transit", {}).get("score") is not None),
               key=lambda a: a["filters"]["transit"]["score"], default=None)
    if best is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    o = best["filters"]["transit"]
    d = o["details"]
    t, f = curves[best["alert_id"]]
    f = f / _trend(t, f)
    period, epoch, hours = d["period_days"], d["epoch"], d["duration_hours"]
    phase_h = ((t - epoch + 0.5 * period) % period - 0.5 * period) * 24
    near = np.abs(phase_h) < 4 * hours
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(phase_h[near], f[near], ".", ms=3)
    ax.set(xlabel="hours from mid-transit", ylabel="relative flux (trend divided out)",
           title=f"alert {best['alert_id']}: transit score {o['score']:.3f}\n"
                 f"P = {period:.3f} d, depth {d['depth'] * 1e6:.0f} ppm, {hours:.1f} h")
    fig.tight_layout()
    path = out / "demo_best_transit.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
