"""Model-card plots (PNG) shared by the trained filters."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save(fig, path: Path, dpi: int = 90) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path.name


def roc_pr(y, curves: dict[str, np.ndarray], out: Path, prefix: str) -> list[str]:
    """ROC and precision-recall curves for several scorers on the same labels."""
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    names = []
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for label, p in curves.items():
        f, t, _ = roc_curve(y, p)
        ax.plot(f, t, label=f"{label} (AUC {auc(f, t):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate (recall)", title="ROC")
    ax.legend(loc="lower right", fontsize=8)
    names.append(save(fig, out / f"{prefix}_roc.png"))
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for label, p in curves.items():
        pr, rc, _ = precision_recall_curve(y, p)
        ax.plot(rc, pr, label=f"{label} (AP {auc(rc, pr):.3f})")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    ax.legend(loc="lower left", fontsize=8)
    names.append(save(fig, out / f"{prefix}_pr.png"))
    return names


def calibration(y, raw, calibrated, out: Path, prefix: str, bins: int = 10) -> str:
    from sklearn.calibration import calibration_curve

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for label, p in (("raw", raw), ("calibrated", calibrated)):
        frac, mean = calibration_curve(y, p, n_bins=bins, strategy="quantile")
        ax.plot(mean, frac, "o-", label=label)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="predicted probability", ylabel="observed fraction positive", title="Calibration (held-out)")
    ax.legend(fontsize=8)
    return save(fig, out / f"{prefix}_calibration.png")


def confusion(y, pred, out: Path, prefix: str, labels=("real", "bad")) -> str:
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y, pred, labels=[0, 1])
    fig, ax = plt.subplots(figsize=(4, 3.5))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="black")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=labels, yticklabels=labels,
           xlabel="predicted", ylabel="true", title="Confusion (held-out)")
    return save(fig, out / f"{prefix}_confusion.png")


def importance(names: list[str], values: np.ndarray, out: Path, prefix: str, top: int = 20) -> str:
    order = np.argsort(values)[::-1][:top][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.25 * len(order) + 1.2))
    ax.barh([names[i] for i in order], values[order])
    ax.set(xlabel="mean |SHAP contribution| (held-out)", title="Feature importance")
    ax.tick_params(axis="y", labelsize=7)
    return save(fig, out / f"{prefix}_importance.png")
