"""cavro and fastavro read the same records out of every real alert, and reject the same damage."""
from __future__ import annotations

import io
import math
import platform
import random
import sys

import fastavro
import pytest

from broker.avro_records import ReaderCache, RecordReader, StrayBytes, cavro
from broker.codec import DecodeError
from broker.surveys import history_projection
from tests.conftest import FIXTURES, SHARED

# Whole records, and the pipeline's projection (history points cut to the fields read).
PROJECTIONS = pytest.mark.parametrize("project", [None, history_projection], ids=["whole", "projected"])


def _same(x, y) -> bool:
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    if type(x) is not type(y):
        return False
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, list):
        return len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y))
    return x == y


@pytest.fixture(scope="module")
def real_records(decoder):
    """(writer schema, one record's bytes) for every decodable alert of the fixtures and shared/data."""
    paths = sorted(FIXTURES.rglob("*.avro"))
    if SHARED.exists():
        paths += sorted(p for p in SHARED.rglob("*.avro") if p.is_file())
    out = []
    for path in paths:
        data = path.read_bytes()
        try:
            msg = decoder.decode(data)
        except DecodeError:
            continue  # the negative fixtures
        if msg.framing == "confluent":
            out.append((msg.schema, data[5:]))
        else:
            out.extend((msg.schema, raw[a:b]) for a, b, raw in msg.record_spans)
    return out


needs_cavro = pytest.mark.skipif(cavro is None, reason="no cavro wheel for this platform")


def test_cavro_is_installed_where_the_dependency_promises_it():
    if platform.machine() == "x86_64" and sys.version_info < (3, 13):
        assert cavro is not None


@needs_cavro
@PROJECTIONS
def test_both_engines_read_every_real_alert_alike(real_records, project):
    schemas = {id(s): s for s, _ in real_records}
    fast = ReaderCache(prefer_cavro=False, project=project)
    compiled = ReaderCache(compile_after=0, project=project)
    assert len(real_records) > 100 and len(schemas) > 5
    for schema, body in real_records:
        assert _same(fast.get(schema).read_one(body), compiled.get(schema).read_one(body))
    assert {compiled.get(s).engine for s in schemas.values()} == {"cavro"}
    assert {fast.get(s).engine for s in schemas.values()} == {"fastavro"}


def _damaged(body: bytes, rng: random.Random) -> bytes:
    b = bytearray(body)
    roll = rng.random()
    if roll < 0.5:  # the first kilobytes hold the lengths, union indices and the short fields
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(min(len(b), 3000))] = rng.randrange(256)
    elif roll < 0.8:
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif roll < 0.9:
        del b[rng.randrange(len(b)):]
    else:
        b += bytes(rng.randrange(1, 4))
    return bytes(b)


def _outcome(reader: RecordReader, body: bytes):
    try:
        return "read", reader.read_one(body)
    except StrayBytes:
        return "stray", None
    except Exception as exc:
        return "error", str(exc)


@needs_cavro
@PROJECTIONS
def test_both_engines_reject_the_same_damage(real_records, project):
    rng = random.Random(7)
    fast = ReaderCache(prefer_cavro=False, project=project)
    compiled = ReaderCache(compile_after=0, project=project)
    verdicts = {"read": 0, "stray": 0, "error": 0}
    for _ in range(1500):
        schema, body = rng.choice(real_records)
        body = _damaged(body, rng)
        a, b = _outcome(fast.get(schema), body), _outcome(compiled.get(schema), body)
        if a[0] == "read" and b[0] == "error":
            # fastavro takes a negative union index as Python's index from the end; the
            # specification has no negative branches, cavro refuses them. Under a projection,
            # fastavro reads past the text of a field left out, cavro still checks its UTF-8.
            assert "union" in b[1] or (project is not None and "utf-8" in b[1]), b[1]
            continue
        assert a[0] == b[0], (a, b)
        if a[0] == "read":
            assert _same(a[1], b[1])
        verdicts[a[0]] += 1
    assert min(verdicts.values()) > 50, verdicts  # every kind of verdict was exercised


@pytest.mark.parametrize("prefer_cavro", [True, False])
def test_a_block_of_several_records_gives_each_ones_exact_bytes(prefer_cavro):
    schema = fastavro.parse_schema({"type": "record", "name": "r", "fields": [
        {"name": "id", "type": "long"}, {"name": "note", "type": ["null", "string"]}]})
    parts = []
    for i, note in enumerate([None, "x" * 300, "é"]):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, {"id": i, "note": note})
        parts.append(buf.getvalue())
    raw = b"".join(parts)
    reader = RecordReader(schema, prefer_cavro, compile_after=0)
    records, spans = reader.read_block(raw, 3)
    assert [r["id"] for r in records] == [0, 1, 2] and records[2]["note"] == "é"
    assert [raw[a:b] for a, b in spans] == parts
    with pytest.raises(StrayBytes):
        reader.read_block(raw + b"\x00", 3)
    with pytest.raises(StrayBytes):
        reader.read_one(parts[0] + b"\x00")
    with pytest.raises(Exception) as info:
        reader.read_block(raw[:-1], 3)
    assert info.value.records_read == 2
    assert reader.engine == ("cavro" if prefer_cavro and cavro else "fastavro")


@needs_cavro
def test_a_schema_is_compiled_once_it_repeats(real_records):
    # A message under a schema of its own (hostile, fuzzed) pays fastavro's parse, not cavro's
    # ~5x dearer compile; a stream's schema is compiled on its second record.
    schema, body = real_records[0]
    reader = RecordReader(schema)
    first = reader.read_one(body)
    assert reader.engine == "fastavro"
    assert _same(reader.read_one(body), first) and reader.engine == "cavro"


def test_reader_cache_compiles_a_schema_once():
    one = fastavro.parse_schema({"type": "record", "name": "a", "fields": [{"name": "x", "type": "int"}]})
    two = fastavro.parse_schema({"type": "record", "name": "b", "fields": [{"name": "y", "type": "int"}]})
    cache = ReaderCache(max_entries=2)
    first = cache.get(one)
    assert cache.get(two) is not first and cache.get(one) is first
    for n in range(5):  # a stream of new schemas stays bounded
        cache.get(fastavro.parse_schema({"type": "record", "name": f"n{n}", "fields": []}))
    assert len(cache._readers) <= 2
