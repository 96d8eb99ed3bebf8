"""badamp: bad-data and failing-amplifier detector (XGBoost). See filter.py and MODEL_CARD.md."""
from filters.badamp.filter import BadampFilter

__all__ = ["BadampFilter"]
