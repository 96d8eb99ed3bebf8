"""anomaly: a calibrated, explained anomaly score of the r-band history. See filter.py and
artifacts/MODEL_CARD.md."""
from filters.anomaly.filter import AnomalyFilter

__all__ = ["AnomalyFilter"]
