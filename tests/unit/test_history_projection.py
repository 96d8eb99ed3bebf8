"""The pipeline decodes history points through a projection: the same alerts, fewer objects."""
from __future__ import annotations

import dataclasses
import io
import math

import fastavro
import pytest

from broker.avro_records import project_arrays
from broker.codec import DecodeError, Decoder
from broker.ingest import build_decoder
from broker.schema_store import SchemaResolver
from broker.settings import Settings
from broker.surveys import history_projection, normalise
from tests.conftest import FIXTURES, SHARED


def _fields(alert) -> dict:
    # NaN == NaN for the comparison: missing magnitudes are NaN in both.
    return {k: (repr(v) if not isinstance(v, float) or not math.isnan(v) else "nan")
            for k, v in _flat(dataclasses.asdict(alert))}


def _flat(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}{k}.")
        elif isinstance(v, list):
            yield from ((f"{prefix}{k}[{i}]", x) for i, x in enumerate(v))
        else:
            yield f"{prefix}{k}", v


def test_projected_decoding_normalises_every_real_alert_as_whole_records_do():
    paths = sorted(FIXTURES.rglob("*.avro"))
    if SHARED.exists():
        paths += sorted(p for p in SHARED.rglob("*.avro") if p.is_file())
    whole, projected = Decoder(SchemaResolver()), Decoder(SchemaResolver(), project=history_projection)
    compared, surveys = 0, set()
    for _ in range(2):  # the second pass reads through cavro's compiled readers where installed
        for path in paths:
            data = path.read_bytes()
            try:
                a = whole.decode(data)
            except DecodeError as exc:
                with pytest.raises(DecodeError) as again:
                    projected.decode(data)
                assert again.value.reason == exc.reason
                continue
            b = projected.decode(data)
            assert len(a.records) == len(b.records)
            for ra, rb in zip(a.records, b.records):
                try:
                    na = normalise(ra, a)
                except DecodeError:
                    continue
                assert _fields(na) == _fields(normalise(rb, b)), path
                compared += 1
                surveys.add(na.survey)
    assert compared > 1000 and surveys == {"ztf", "lsst"}
    readers = list(projected.readers._readers.values())
    assert sum(r.reader_schema is not None for r in readers) >= len(readers) - 2  # nearly all project


def test_the_pipelines_decoder_projects_ztf_histories():
    decoder = build_decoder(Settings.load(None))
    msg = decoder.decode(next(p for p in sorted((FIXTURES / "ztf").rglob("*.avro"))).read_bytes())
    point = next(p for r in msg.records for p in r["prv_candidates"] or ())
    assert set(point) <= {"jd", "magpsf", "diffmaglim", "isdiffpos", "sigmapsf", "fid", "magnr", "distnr"}
    assert len(msg.records[0]["candidate"]) > 50  # the triggering detection stays whole


POINT = {"type": "record", "name": "p", "fields": [
    {"name": "t", "type": "double"}, {"name": "x", "type": ["null", "string"]}, {"name": "y", "type": "long"}]}


def test_a_point_type_shared_with_the_detection_stays_whole():
    schema = fastavro.parse_schema({"type": "record", "name": "a", "fields": [
        {"name": "det", "type": POINT}, {"name": "hist", "type": ["null", {"type": "array", "items": "p"}]}]},
        named_schemas={})
    assert project_arrays(schema, {"hist": frozenset({"t"})}) is None


def test_a_history_of_its_own_type_keeps_only_what_is_read():
    schema = fastavro.parse_schema({"type": "record", "name": "a", "fields": [
        {"name": "hist", "type": {"type": "array", "items": POINT}}]}, named_schemas={})
    reader = project_arrays(schema, {"hist": frozenset({"t", "y"})})
    assert [f["name"] for f in reader["fields"][0]["type"]["items"]["fields"]] == ["t", "y"]
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, {"hist": [{"t": 1.5, "x": "skipped", "y": 3}]})
    buf.seek(0)
    assert fastavro.schemaless_reader(buf, schema, reader) == {"hist": [{"t": 1.5, "y": 3}]}


def test_a_dropped_field_that_defines_a_type_keeps_the_record_whole():
    point = {"type": "record", "name": "p", "fields": [
        {"name": "t", "type": "double"},
        {"name": "k", "type": {"type": "enum", "name": "kind", "symbols": ["A", "B"]}}]}
    schema = fastavro.parse_schema({"type": "record", "name": "a", "fields": [
        {"name": "hist", "type": {"type": "array", "items": point}}, {"name": "k2", "type": "kind"}]},
        named_schemas={})
    assert project_arrays(schema, {"hist": frozenset({"t"})}) is None
