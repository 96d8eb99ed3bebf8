"""The Box-Least-Squares fold and box search compiled for the CPU (numba), used by
:func:`filters.transit.bls.bls` when the device is the CPU and numba is installed.

One fused loop per trial period: each point goes straight to its phase bin (no index
arrays), then sliding sums over the wrapped bins give every box. Periods run in parallel on
all cores. On a 4-year Kepler light curve this is ~5x faster than the tensor program, whose
time goes to materialising (periods x points) index arrays; the tensor program stays the
GPU path.
"""
from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # the torch path is used instead
    numba = None


def available() -> bool:
    return numba is not None


if numba is not None:
    @numba.njit(parallel=True, fastmath=True, cache=False)
    def _search(t, w, wy, freqs, n_bins, widths, power, best_d, best_b, best_r, best_s):  # pragma: no cover - compiled
        n_p, n_d = widths.shape
        for k in numba.prange(n_p):
            f = freqs[k]
            wb = np.zeros(n_bins)
            sb = np.zeros(n_bins)
            for i in range(t.shape[0]):
                x = t[i] * f
                b = int((x - np.floor(x)) * n_bins)
                if b >= n_bins:
                    b = n_bins - 1
                wb[b] += w[i]
                sb[b] += wy[i]
            top, top_d, top_b, top_r, top_s = 0.0, 0, 0, 0.0, 0.0
            for d in range(n_d):
                m = widths[k, d]
                r = 0.0
                s = 0.0
                for j in range(m):
                    r += wb[j % n_bins]
                    s += sb[j % n_bins]
                for start in range(n_bins):
                    if start > 0:
                        j = (start + m - 1) % n_bins
                        r += wb[j] - wb[start - 1]
                        s += sb[j] - sb[start - 1]
                    if r > 0.0 and r < 1.0 and s < 0.0:
                        sr = s * s / (r * (1.0 - r))
                        if sr > top:
                            top, top_d, top_b, top_r, top_s = sr, d, start, r, s
            power[k] = top
            best_d[k] = top_d
            best_b[k] = top_b
            best_r[k] = top_r
            best_s[k] = top_s


def search(t: np.ndarray, w: np.ndarray, wy: np.ndarray, periods: np.ndarray, n_bins: int,
           widths: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per period: power, duration index, start bin, r and s of the best box."""
    n_p = len(periods)
    out = (np.zeros(n_p), np.zeros(n_p, np.int64), np.zeros(n_p, np.int64), np.zeros(n_p), np.zeros(n_p))
    _search(np.ascontiguousarray(t, np.float64), np.ascontiguousarray(w, np.float64),
            np.ascontiguousarray(wy, np.float64), 1.0 / np.asarray(periods, np.float64), int(n_bins),
            np.ascontiguousarray(widths, np.int64), *out)
    return out
