"""An isolation forest kept as flat arrays, so a batch is scored in torch on any device.

Fitted in numpy (random feature, uniform threshold between the node's min and max, depth
limit log2 of the subsample); scored by walking every alert down every tree at once, one
``gather`` per level. The score is the usual ``2 ** (-mean path length / c(n))``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

EULER = 0.5772156649


def average_path(n: np.ndarray | float) -> np.ndarray:
    """c(n): mean path length of an unsuccessful search in a binary tree of n points."""
    n = np.asarray(n, dtype=np.float64)
    safe = np.maximum(n, 2.0)
    c = 2.0 * (np.log(safe - 1.0) + EULER) - 2.0 * (safe - 1.0) / safe
    return np.where(n > 2, c, np.where(n == 2, 1.0, 0.0))


class IsolationForestArrays:
    """``feature[t, node]`` (-1 at a leaf), ``threshold``, ``left``/``right`` child indices
    (a leaf points to itself) and ``value`` (path length at a leaf) for ``t`` trees."""

    def __init__(self, feature, threshold, left, right, value, subsample: int):
        self.feature, self.threshold, self.left, self.right, self.value = feature, threshold, left, right, value
        self.subsample = subsample
        self.depth = int(math.ceil(math.log2(subsample)))
        self._device_arrays = {}

    @classmethod
    def fit(cls, X: np.ndarray, trees: int = 300, subsample: int = 256, seed: int = 0) -> "IsolationForestArrays":
        rng = np.random.default_rng(seed)
        subsample = min(subsample, len(X))
        limit = int(math.ceil(math.log2(subsample)))
        size = 2 ** (limit + 1)
        feature = np.full((trees, size), -1, np.int64)
        threshold = np.zeros((trees, size), np.float32)
        left = np.tile(np.arange(size), (trees, 1))
        right = left.copy()
        value = np.zeros((trees, size), np.float32)
        for t in range(trees):
            rows = X[rng.choice(len(X), subsample, replace=False)]
            stack, free = [(0, rows, 0)], 1
            while stack:
                node, pts, depth = stack.pop()
                lo, hi = pts.min(axis=0), pts.max(axis=0)
                splittable = np.flatnonzero(hi > lo)
                if depth >= limit or len(pts) <= 1 or not len(splittable):
                    value[t, node] = depth + average_path(len(pts))
                    continue
                f = rng.choice(splittable)
                thr = rng.uniform(lo[f], hi[f])
                feature[t, node], threshold[t, node] = f, thr
                left[t, node], right[t, node] = free, free + 1
                go_left = pts[:, f] < thr
                stack += [(free, pts[go_left], depth + 1), (free + 1, pts[~go_left], depth + 1)]
                free += 2
        return cls(feature, threshold, left, right, value, subsample)

    def _arrays(self, device: str):
        """The five arrays flattened (tree ``t``'s node ``k`` at ``t * nodes + k``) on ``device``."""
        if device not in self._device_arrays:
            self._device_arrays[device] = [torch.as_tensor(a.reshape(-1), device=device) for a in
                                           (self.feature, self.threshold, self.left, self.right, self.value)]
        return self._device_arrays[device]

    def score(self, Z: np.ndarray, device: str = "cpu") -> np.ndarray:
        """Anomaly score in (0, 1): higher is more isolated."""
        feature, threshold, left, right, value = self._arrays(device)
        trees, nodes = self.feature.shape
        z = torch.as_tensor(np.asarray(Z, dtype=np.float32), device=device)
        node = torch.zeros((len(z), trees), dtype=torch.int64, device=device)
        # Flat indices and ``take``: 1.5x faster on the CPU than indexing [tree, node] (bench:
        # 2.8 -> 1.9 ms for 43 alerts, 14.8 -> 9.1 ms for 500), the same answers.
        first = (torch.arange(trees, device=device) * nodes).expand(len(z), trees)
        with torch.no_grad():
            for _ in range(self.depth):
                at = first + node
                x = torch.gather(z, 1, torch.take(feature, at).clamp_min(0))
                go_left = x < torch.take(threshold, at)
                node = torch.where(go_left, torch.take(left, at), torch.take(right, at))
            path = torch.take(value, first + node).mean(dim=1)
        return np.asarray((2.0 ** (-path.cpu().numpy() / average_path(self.subsample))), dtype=np.float64)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"if_feature": self.feature.astype(np.int16), "if_threshold": self.threshold, "if_left": self.left.astype(np.int16),
                "if_right": self.right.astype(np.int16), "if_value": self.value, "if_subsample": np.array(self.subsample)}

    @classmethod
    def from_arrays(cls, z) -> "IsolationForestArrays":
        return cls(z["if_feature"].astype(np.int64), z["if_threshold"], z["if_left"].astype(np.int64),
                   z["if_right"].astype(np.int64), z["if_value"], int(z["if_subsample"]))
