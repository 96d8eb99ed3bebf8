"""The detection columns each survey can provide, read from the bundled schemas once."""
from __future__ import annotations

import json
from functools import lru_cache

from broker.schema_store import SCHEMAS_DIR

COMMON = ("ra", "dec", "mjd", "flux", "flux_err", "exposure_id", "channel_id")


def _field_names(pattern: str) -> set[str]:
    names: set[str] = set()
    for path in SCHEMAS_DIR.glob(pattern):
        names.update(f["name"] for f in json.loads(path.read_text()).get("fields", []))
    return names


@lru_cache(maxsize=None)
def known_columns(survey: str) -> frozenset[str]:
    if survey == "ztf":
        return frozenset(_field_names("ztf/*/candidate.avsc") | set(COMMON))
    if survey == "lsst":
        return frozenset(_field_names("lsst/*/*/*diaSource.avsc") | set(COMMON))
    return frozenset(COMMON)
