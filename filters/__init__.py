"""Classifier filters: pure compute over an AlertBatch (see filters.base)."""
