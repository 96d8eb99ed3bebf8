"""The annotation schema evolves backward compatibly: every version reads data written with the
one before it (fastavro's schema resolution), so a subscriber on the newer schema never breaks
on older messages. With one version today the rule is in place for the next."""
from __future__ import annotations

import io
import json

import fastavro

from broker.schema_store import SCHEMAS_DIR

ROOT = SCHEMAS_DIR / "output" / "annotation"
VERSIONS = sorted((int(d.name) for d in ROOT.iterdir() if d.is_dir() and d.name.isdigit()))
SAMPLE = {"survey": "ztf", "object_id": "ZTF1", "alert_id": 7, "schema_version": "4.02", "source_topic": "in",
          "source_partition": 0, "source_offset": 3, "kafka_timestamp_ms": None, "processed_at_ms": 0,
          "broker_version": "t", "filters": {"quality": {"score": 1.0, "version": "1", "reason": None,
                                                         "details": {"n": 2.0}}}}


def _schema(version: int) -> dict:
    return fastavro.parse_schema(json.loads((ROOT / str(version) / "annotation.avsc").read_text()), named_schemas={})


def test_versions_are_numbered_from_one_without_gaps():
    assert VERSIONS == list(range(1, len(VERSIONS) + 1))


def test_each_version_reads_what_the_previous_one_wrote():
    for older, newer in zip(VERSIONS, VERSIONS[1:]):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, _schema(older), SAMPLE)
        buf.seek(0)
        fastavro.schemaless_reader(buf, _schema(older), _schema(newer))  # raises if incompatible
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, _schema(VERSIONS[-1]), SAMPLE)
    buf.seek(0)
    assert fastavro.schemaless_reader(buf, _schema(VERSIONS[-1]), None)["alert_id"] == 7
