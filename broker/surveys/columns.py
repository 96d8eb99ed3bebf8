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
        return frozenset(_field_names("ztf/*/ztf.alert.candidate.avsc") | set(COMMON))
    if survey == "lsst":
        return frozenset(_field_names("lsst/*/*/*diaSource.avsc") | set(COMMON))
    return frozenset(COMMON)


@lru_cache(maxsize=64)
def lsst_version_by_fields(fields: frozenset[str]) -> str | None:
    """The bundled LSST version whose ``diaSource`` has exactly these fields, if one does.

    Broker re-serialisations (``topLevelRecord``) often drop the version; the field set of the
    detection record still tells it."""
    matches = []
    for path in sorted(SCHEMAS_DIR.glob("lsst/*/*/*diaSource.avsc")):
        names = {f["name"] for f in json.loads(path.read_text()).get("fields", [])}
        if names == fields:
            matches.append(f"{path.parent.parent.name}.{path.parent.name}")
    return matches[0] if len(matches) == 1 else None  # ambiguous field sets stay unknown
