"""The anomaly model: how far an alert sits from the ordinary population, in robustly scaled
features, by two views averaged (an ensemble): the mean distance to its ``k`` nearest ordinary
reference objects, and an isolation forest (``forest.py``) fitted on the same objects.

Each view's raw score is ranked among a separate calibration population of ordinary objects
and the two ranks are averaged; the published score is the fraction of a separate calibration population of ordinary objects
scoring lower (0 typical, 1 most unusual), so ``score >= 0.999`` flags about one ordinary
alert in a thousand. The per-feature squared distance to the nearest neighbours says which
features made an alert unusual. Expert feedback keeps the objects marked not interesting
(their neighbourhood is pulled down) and those marked interesting (pushed up). Distances run in torch, in chunks, on the configured device.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from filters.anomaly.forest import IsolationForestArrays

CHUNK = 2048  # alerts per distance call: bounds memory at CHUNK x reference size


def robust_scale(X: np.ndarray, median: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Median/MAD z-scores, log-compressed so one extreme feature cannot swamp the rest."""
    z = (np.asarray(X, dtype=np.float64) - median) / scale
    z = np.where(np.isfinite(z), z, 0.0)
    return (np.sign(z) * np.log1p(np.abs(z))).astype(np.float32)


def fit_scale(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    median = np.nanmedian(X, axis=0)
    mad = 1.4826 * np.nanmedian(np.abs(X - median), axis=0)
    spread = np.nanstd(X, axis=0)
    scale = np.where(mad > 0, mad, np.where(spread > 0, spread, 1.0))
    return median, scale


@dataclass
class SurveyModel:
    names: list[str]
    median: np.ndarray
    scale: np.ndarray
    reference: np.ndarray  # scaled ordinary objects
    forest: IsolationForestArrays
    boring: np.ndarray  # scaled objects experts marked not interesting
    interesting: np.ndarray  # scaled objects experts marked interesting
    # Sorted scores of a separate ordinary calibration population: each view's, and combined.
    cal_knn: np.ndarray | None = None
    cal_forest: np.ndarray | None = None
    cal_combined: np.ndarray | None = None
    k: int = 10
    device: str = "cpu"

    def __post_init__(self):
        self._tensors = {}

    def scaled(self, X: np.ndarray) -> np.ndarray:
        """Raw features in the model's scaled space (what every other method takes)."""
        return robust_scale(X, self.median, self.scale)

    def calibrate(self, Z: np.ndarray) -> None:
        """Rank against the ordinary population ``Z`` (scaled); again after any feedback."""
        self._tensors = {}
        knn, _ = self.knn(Z)
        forest = self.forest.score(Z, self.device)
        self.cal_knn, self.cal_forest = np.sort(knn), np.sort(forest)
        self.cal_combined = np.sort(self._combine(Z, knn, forest))

    def raw(self, Z: np.ndarray, explain: bool = False):
        """The views' ranks among ordinary objects, averaged, times the feedback factor; the
        ranks go on growing past the most unusual ordinary object, so the tail stays ordered."""
        knn, contrib = self.knn(Z, explain)
        combined = self._combine(Z, knn, self.forest.score(Z, self.device))
        return (combined, contrib) if explain else combined

    def _combine(self, Z: np.ndarray, knn: np.ndarray, forest: np.ndarray) -> np.ndarray:
        ranks = (_tail_rank(self.cal_knn, knn) + _tail_rank(self.cal_forest, forest)) / 2
        return ranks * self.feedback_factor(Z, knn)

    def score(self, Z: np.ndarray, explain: bool = False):
        """Calibrated scores of scaled rows ``Z``: the fraction of ordinary objects scoring lower
        (with per-feature contributions when ``explain``)."""
        raw, contrib = self.raw(Z, explain=True)
        score = np.searchsorted(self.cal_combined, raw, side="left") / len(self.cal_combined)
        return (score, contrib) if explain else score

    def feedback_factor(self, Z: np.ndarray, knn: np.ndarray) -> np.ndarray:
        """Expert feedback: an alert nearer a not-interesting object than its ordinary neighbours
        is pulled down in proportion; one nearer an interesting object is pushed up (x10 at most)."""
        factor = np.ones(len(Z))
        ordinary = np.maximum(knn, 1e-6)
        if len(self.boring):
            factor *= np.clip(self._nearest(Z, "boring") / ordinary, 0.0, 1.0)
        if len(self.interesting):
            factor *= np.clip(1.0 / np.maximum(self._nearest(Z, "interesting") / ordinary, 0.1), 1.0, 10.0)
        return factor

    def _t(self, name: str) -> torch.Tensor:
        if name not in self._tensors:
            self._tensors[name] = torch.as_tensor(np.asarray(getattr(self, name), dtype=np.float32),
                                                  device=self.device)
        return self._tensors[name]

    def _chunks(self, Z: np.ndarray):
        """``Z`` as float32 tensors on the device, ``CHUNK`` rows at a time."""
        for s in range(0, len(Z), CHUNK):
            yield torch.as_tensor(np.asarray(Z[s:s + CHUNK], dtype=np.float32), device=self.device)

    def _nearest(self, Z: np.ndarray, name: str) -> np.ndarray:
        other = self._t(name)
        with torch.no_grad():
            out = [torch.cdist(z, other).min(dim=1).values.cpu().numpy() for z in self._chunks(Z)]
        return np.concatenate(out) if out else np.empty(0)

    def knn(self, Z: np.ndarray, explain: bool = False):
        """(mean distance to the k nearest reference objects, and the per-feature squared
        distance to those neighbours when ``explain``, else None)."""
        raws, contribs = [], []
        ref = self._t("reference")
        with torch.no_grad():
            for z in self._chunks(Z):
                near, idx = torch.topk(torch.cdist(z, ref), min(self.k, ref.shape[0]), dim=1, largest=False)
                raws.append(near.mean(dim=1).cpu().numpy())
                if explain:
                    contribs.append(((z - ref[idx].mean(dim=1)) ** 2).cpu().numpy())
        raw = np.concatenate(raws) if raws else np.empty(0, np.float32)
        if not explain:
            return raw, None
        return raw, np.concatenate(contribs) if contribs else np.empty((0, len(self.names)))

    # -- files ------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        np.savez_compressed(path, names=np.array(self.names), median=self.median, scale=self.scale,
                            reference=self.reference.astype(np.float16), cal_knn=self.cal_knn,
                            cal_forest=self.cal_forest, cal_combined=self.cal_combined,
                            boring=self.boring.astype(np.float16), interesting=self.interesting.astype(np.float16),
                            k=np.array(self.k), **self.forest.arrays())

    @classmethod
    def load(cls, path: Path, device: str = "cpu") -> "SurveyModel":
        with np.load(path) as z:
            f32 = lambda key: z[key].astype(np.float32)  # noqa: E731
            d = len(z["names"])
            return cls([str(n) for n in z["names"]], z["median"], z["scale"], f32("reference"),
                       IsolationForestArrays.from_arrays(z), f32("boring").reshape(-1, d),
                       f32("interesting").reshape(-1, d), z["cal_knn"], z["cal_forest"], z["cal_combined"],
                       int(z["k"]), device)


def _tail_rank(sorted_scores: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Fraction of ``sorted_scores`` below ``x``; past the largest, 1 + log of the excess."""
    top = sorted_scores[-1]
    rank = np.searchsorted(sorted_scores, x, side="left") / len(sorted_scores)
    return np.where(x > top, 1.0 + np.log(np.maximum(x, top) / top), rank)


def versions(directory: Path) -> list[str]:
    """Model versions present (``v1``, ``v2``, ...), oldest first."""
    found = [p.name for p in directory.glob("v*") if p.is_dir() and p.name[1:].isdigit()]
    return sorted(found, key=lambda v: int(v[1:]))


def load_version(directory: Path, version: str | None, device: str) -> tuple[str, dict[str, SurveyModel], dict]:
    """(version, model per survey, its metadata); the newest version unless one is pinned."""
    available = versions(directory)
    if not available:
        raise FileNotFoundError(f"no anomaly model versions in {directory}")
    version = version or available[-1]
    if version not in available:
        raise FileNotFoundError(f"anomaly model {version} not in {directory} (have {available})")
    folder = directory / version
    meta = json.loads((folder / "model.json").read_text())
    models = {s: SurveyModel.load(folder / f"{s}.npz", device) for s in meta["surveys"]}
    return version, models, meta
