"""transit: 1-D CNN over BLS-folded light curves. See filter.py and MODEL_CARD.md."""
from filters.transit.filter import TransitFilter

__all__ = ["TransitFilter"]
