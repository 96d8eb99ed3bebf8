"""Shared science tooling for trained filters: honest metrics, calibration, representativeness.

Kept free of any one model so every filter reports the same way: ROC AUC with a bootstrap
interval, recall at a fixed false-positive rate, isotonic calibration stored as plain JSON,
and the population stability index (PSI) of live features against the training set.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from broker.batch import AlertBatch


def bootstrap_ci(y: np.ndarray, p: np.ndarray, stat, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """``stat(y, p)`` and its 95% bootstrap interval (resampling alerts/objects with replacement)."""
    value = float(stat(y, p))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if y[idx].min() != y[idx].max():
            boots.append(stat(y[idx], p[idx]))
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return value, float(lo), float(hi)


def roc_auc_ci(y: np.ndarray, p: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """ROC AUC and its 95% bootstrap interval."""
    from sklearn.metrics import roc_auc_score

    return bootstrap_ci(y, p, roc_auc_score, n_boot, seed)


def recall_at_fpr(y: np.ndarray, p: np.ndarray, fpr: float = 0.01) -> tuple[float, float]:
    """(recall, threshold) at the largest ROC point whose false-positive rate is <= ``fpr``.

    For a binary cut (scores 0/1) this interpolates along the ROC segment, which is the
    recall a randomised version of the cut would reach at that false-positive rate.
    """
    from sklearn.metrics import roc_curve

    f, t, thr = roc_curve(y, p)
    recall = float(np.interp(fpr, f, t))
    ok = np.flatnonzero(f <= fpr)
    return recall, float(thr[ok[-1]]) if len(ok) else float("inf")


def fit_isotonic(p: np.ndarray, y: np.ndarray, smooth: bool = False) -> dict:
    """Isotonic map from raw scores to calibrated probabilities, as JSON-ready knots. With
    ``smooth`` each flat step becomes one knot at its middle, so interpolation rises strictly
    between steps instead of giving a dozen distinct scores."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p, y)
    x, v = iso.X_thresholds_, iso.y_thresholds_
    if smooth and len(x) > 2:
        starts = np.flatnonzero(np.r_[True, np.diff(v) != 0])
        ends = np.r_[starts[1:], len(v)] - 1
        x, v = (x[starts] + x[ends]) / 2, v[starts]
    return {"x": x.tolist(), "y": v.tolist()}


def apply_isotonic(cal: dict, p: np.ndarray) -> np.ndarray:
    return np.interp(p, np.asarray(cal["x"]), np.asarray(cal["y"]))


def psi_reference(X: np.ndarray, names: list[str], bins: int = 10) -> dict:
    """Training-set quantile bins per feature (NaN counted as its own bin)."""
    ref = {}
    for j, name in enumerate(names):
        col = X[:, j]
        fin = col[np.isfinite(col)]
        edges = np.unique(np.quantile(fin, np.linspace(0, 1, bins + 1)[1:-1])) if len(fin) else np.array([])
        ref[name] = {"edges": edges.tolist(), "fractions": _bin_fractions(col, edges).tolist()}
    return ref


def _bin_fractions(col: np.ndarray, edges: np.ndarray) -> np.ndarray:
    fin = np.isfinite(col)
    counts = np.bincount(np.searchsorted(edges, col[fin], side="right"), minlength=len(edges) + 1)
    counts = np.append(counts, (~fin).sum()).astype(float)
    return counts / max(1, len(col))


def psi(reference: dict, values: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index of ``values`` against one feature's reference bins.

    Rule of thumb: < 0.1 stable, 0.1-0.25 drifting, > 0.25 the model sees other data.
    """
    expected = np.asarray(reference["fractions"]) + eps
    actual = _bin_fractions(np.asarray(values, float), np.asarray(reference["edges"])) + eps
    return float(np.sum((actual - expected) * np.log(actual / expected)))


class DriftMonitor:
    """PSI per feature over a sliding window of the most recent feature rows."""

    def __init__(self, reference: dict, window: int = 5000, min_rows: int = 50):
        self.reference = reference
        self.names = list(reference)
        self.window = window
        self.min_rows = min_rows
        self._rows: list[np.ndarray] = []
        self._n = 0

    def add(self, X: np.ndarray) -> None:
        if len(X):
            self._rows.append(np.asarray(X, float))
            self._n += len(X)
        while self._rows and self._n - len(self._rows[0]) >= self.window:
            self._n -= len(self._rows.pop(0))

    def psi(self) -> dict[str, float]:
        if self._n < self.min_rows:
            return {}
        X = np.vstack(self._rows)[-self.window:]
        return {name: psi(self.reference[name], X[:, j]) for j, name in enumerate(self.names)}


def real_alert_batch(paths: list[str]) -> AlertBatch:
    """Every decodable alert under ``paths`` as one batch (the injector's pool of real data)."""
    from broker.batch import AlertBatch
    from broker.codec import Decoder
    from broker.tools.replay import iter_payloads
    from broker.schema_store import SchemaResolver
    from broker.surveys import decode_alerts

    payloads = (data for _, data in iter_payloads(paths))
    return AlertBatch(decode_alerts(payloads, Decoder(SchemaResolver())))
