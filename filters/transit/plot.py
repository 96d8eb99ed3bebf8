"""The folded views of a transit candidate as a PNG (used by the filter's ``--plot`` and the card)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from filters import plots
from filters.transit.search import LOCAL_HALF_WIDTH, Candidate


def plot_candidate(c: Candidate, title: str, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    axes[0].plot(np.linspace(-0.5, 0.5, len(c.global_view)), c.global_view, ".", ms=3)
    axes[0].set(xlabel="phase", ylabel="flux / depth", title=f"global: P = {c.period:.4f} d")
    x = np.linspace(-LOCAL_HALF_WIDTH, LOCAL_HALF_WIDTH, len(c.local_view)) * c.duration * 24
    axes[1].plot(x, c.local_view, ".-", ms=3)
    axes[1].set(xlabel="hours from mid-transit", title=f"local: depth {c.depth * 1e6:.0f} ppm, SNR {c.snr:.1f}")
    fig.suptitle(title, fontsize=9)
    return plots.save(fig, path, dpi=80)
