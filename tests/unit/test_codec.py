from __future__ import annotations

import io
import struct

import fastavro
import pytest

from broker.codec import DecodeError, DecodeLimits, Decoder, SchemaCache, encode_confluent, split_container
from broker.schema_store import SchemaResolver
from tests.conftest import FIXTURES, shared_or_skip

DECODABLE_DIRS = [
    ("ztf", "alerts", "ztf-avro-alert"),
    ("ztf", "alerts", "fink-alert-simulator"),
    ("ztf", "alerts", "fink-broker_local"),
    ("ztf", "alerts", "fink-client"),
    ("ztf", "alerts", "fink-alert-schemas"),
    ("ztf", "alerts", "ampel"),
    ("ztf", "alerts", "alerce"),
    ("ztf", "fink-enriched"),
    ("lsst", "alerts"),
    ("lsst", "simulated", "elasticc"),
]


@pytest.mark.parametrize("parts", DECODABLE_DIRS, ids=lambda p: "/".join(p))
def test_every_real_alert_decodes_and_normalises(parts, decoder):
    from broker.surveys import normalise

    root = shared_or_skip(*parts)
    files = sorted(root.rglob("*.avro"))
    assert files
    for path in files:
        msg = decoder.decode(path.read_bytes())
        for rec in msg.records:
            alert = normalise(rec, msg)
            assert alert.alert_id != 0
            assert alert.survey in ("ztf", "lsst")
            assert alert.lc_time, f"{path}: empty light curve"


def test_same_schema_is_parsed_once(decoder):
    files = sorted((FIXTURES / "ztf" / "fink-broker_local").glob("*.avro"))
    d = Decoder(SchemaResolver(), cache=SchemaCache())
    for f in files:
        d.decode(f.read_bytes())
    assert len(files) == 10 and d.cache.parses == 1


def test_alternating_schemas_each_parse_once_and_decode_with_their_own():
    """The last-schema fast path never hands a message another schema's parse."""
    versions = [p for p in sorted((FIXTURES / "ztf" / "ztf-avro-alert").glob("v*")) if any(p.glob("*.avro"))][:3]
    files = [next(iter(sorted(v.glob("*.avro")))) for v in versions]
    assert len(files) >= 2
    d = Decoder(SchemaResolver(), cache=SchemaCache())
    first = [d.decode(f.read_bytes()) for f in files]
    again = [d.decode(f.read_bytes()) for f in files * 2]
    assert d.cache.parses == len(set(m.schema_text for m in first))
    for m, n in zip(first * 2, again):
        assert n.schema is m.schema and repr(n.records) == repr(m.records)  # repr: NaN != NaN


@pytest.mark.parametrize("parts,reason", [
    (("ztf", "alerts", "corrupted"), {"corrupt", "truncated"}),
    (("other", "invalid_schema"), {"invalid_schema"}),
])
def test_negative_fixtures_raise_with_reason(parts, reason, decoder):
    for path in sorted(shared_or_skip(*parts).rglob("*.avro")):
        with pytest.raises(DecodeError) as info:
            decoder.decode(path.read_bytes())
        assert info.value.reason in reason, path


def test_garbage_empty_truncated_and_oversized(decoder):
    good = (FIXTURES / "ztf" / "ztf-avro-alert" / "v3.3" / "472263571115115000.avro").read_bytes()
    cases = {
        b"": "empty",
        b"hello world": "unknown_framing",
        good[:2000]: "truncated",
        good[:3]: "truncated",
        b"\x00\x00\x00": "truncated",
        b"\x00\x00\x00\x27\x10" + b"\x01" * 50: "unknown_schema_id",  # id 10000
    }
    for data, reason in cases.items():
        with pytest.raises(DecodeError) as info:
            decoder.decode(data)
        assert info.value.reason == reason, (data[:8], info.value)
    small = Decoder(SchemaResolver(), limits=DecodeLimits(max_message_bytes=1000))
    with pytest.raises(DecodeError) as info:
        small.decode(good)
    assert info.value.reason == "too_large"


@pytest.mark.parametrize("codec", ["null", "deflate", "snappy"])
def test_codecs_and_multi_record_split(codec, decoder):
    src = FIXTURES / "ztf" / "ztf-avro-alert" / "v3.3" / "472263571115115000.avro"
    with src.open("rb") as fh:
        reader = fastavro.reader(fh)
        schema, rec = reader.writer_schema, next(reader)
    recs = []
    for i in range(3):
        r = dict(rec)
        r["candid"] = rec["candid"] + i
        recs.append(r)
    buf = io.BytesIO()
    fastavro.writer(buf, schema, recs, codec=codec)
    msg = decoder.decode(buf.getvalue())
    assert [r["candid"] for r in msg.records] == [r["candid"] for r in recs]
    parts = split_container(buf.getvalue(), decoder)
    assert len(parts) == 3
    assert [decoder.decode(p).records[0] for p in parts] == msg.records


def test_confluent_wire_with_bundled_schema(decoder):
    for path in sorted((FIXTURES / "lsst" / "alerce_confluent_v7.4").glob("*.avro")):
        data = path.read_bytes()
        assert data[0] == 0 and struct.unpack(">I", data[1:5])[0] == 704
        msg = decoder.decode(data)
        assert msg.framing == "confluent" and msg.schema_version == "7.4"
        # Re-encoding the decoded record reproduces the message byte for byte.
        assert encode_confluent(704, msg.schema, msg.records[0]) == data


def test_trailing_bytes_in_confluent_body_are_corrupt(decoder):
    data = next((FIXTURES / "lsst" / "alerce_confluent_v7.4").glob("*.avro")).read_bytes()
    with pytest.raises(DecodeError) as info:
        decoder.decode(data + b"\x00\x01")
    assert info.value.reason == "corrupt"
