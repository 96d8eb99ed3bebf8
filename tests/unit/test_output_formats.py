"""Route formats: the same alert as its original bytes, a self-describing container, or
Fink's schema-in-key convention, each read back by the tools that use it."""
from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import pytest

from broker.codec import Decoder
from broker.output_formats import reframe
from broker.schema_store import SchemaResolver

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "alerts"
ZTF = FIXTURES / "ztf" / "alerce_v4.02" / "3044341005815015012.avro"
LSST_CONFLUENT = FIXTURES / "lsst" / "alerce_confluent_v7.4" / "message_0.avro"


@pytest.mark.parametrize("path", [ZTF, LSST_CONFLUENT], ids=["ztf-ocf", "lsst-confluent"])
def test_ocf_and_fink_formats_hold_the_same_record(path):
    decoder = Decoder(SchemaResolver())
    raw = path.read_bytes()
    record = decoder.decode(raw).records[0]
    assert reframe(raw, "original", decoder) == (raw, None)

    ocf, key = reframe(raw, "ocf", decoder)
    (again,) = list(fastavro.reader(io.BytesIO(ocf)))
    assert key is None and _same(again, record)

    body, schema_key = reframe(raw, "fink", decoder)  # what fink_client.AlertConsumer does:
    schema = fastavro.schema.parse_schema(json.loads(schema_key.decode("utf8")))
    assert _same(fastavro.schemaless_reader(io.BytesIO(body), schema), record)


def _same(a: dict, b: dict) -> bool:
    """Equal records, NaN equal to NaN (LSST packets are full of NaN)."""
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True, default=repr)


def test_unknown_format_is_refused_by_the_settings():
    from broker.settings import Settings, SettingsError

    with pytest.raises((SettingsError, ValueError)):
        Settings.load(None, kafka={"bootstrap": "k:9092"}, input_topics=["a"],
                      routes=[{"topic": "t", "condition": "quality.score >= 1", "format": "parquet"}])
