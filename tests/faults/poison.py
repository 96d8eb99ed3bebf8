"""Poison messages built from real alerts: what a broken or hostile stream can send.

Each maker returns the message bytes; :data:`EXPECTED` says what the pipeline must do with
it: a dead letter with one of the given reasons, or (``ANNOTATED``) an annotation whose
filters are scored or null with a reason.
"""
from __future__ import annotations

import copy
import io
import json
import os
import struct
import zlib
from functools import lru_cache
from pathlib import Path

import fastavro

from broker.codec import OCF_MAGIC, _HEADER_SCHEMA, _write_long

ANNOTATED = "annotated"
REPO = Path(__file__).resolve().parents[2]
ZTF_SAMPLE = REPO / "tests/fixtures/alerts/ztf/ztf-avro-alert/v3.3/472263571115115000.avro"


@lru_cache(maxsize=1)
def _ztf() -> tuple[dict, dict]:
    with ZTF_SAMPLE.open("rb") as fh:
        reader = fastavro.reader(fh)
        return reader.writer_schema, next(reader)


def _container(schema, records, codec="null", meta_codec=None) -> bytes:
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(copy.deepcopy(schema), named_schemas={}), records, codec=codec)
    data = buf.getvalue()
    if meta_codec is not None:  # rewrite the header's codec entry with arbitrary bytes
        data = _with_meta(data, {"avro.codec": meta_codec})
    return data


def _with_meta(data: bytes, changes: dict) -> bytes:
    src = io.BytesIO(data)
    header = fastavro.schemaless_reader(src, _HEADER_SCHEMA, None)
    header["meta"].update(changes)
    out = io.BytesIO()
    fastavro.schemaless_writer(out, _HEADER_SCHEMA, header)
    return out.getvalue() + data[src.tell():]


def _raw_container(schema_text: bytes, count: int, body: bytes, codec: bytes = b"null") -> bytes:
    out = io.BytesIO()
    sync = b"S" * 16
    fastavro.schemaless_writer(out, _HEADER_SCHEMA, {"magic": OCF_MAGIC, "meta": {
        "avro.schema": schema_text, "avro.codec": codec}, "sync": sync})
    _write_long(out, count)
    _write_long(out, len(body))
    out.write(body)
    out.write(sync)
    return out.getvalue()


def good() -> bytes:
    return ZTF_SAMPLE.read_bytes()


def random_bytes() -> bytes:
    return b"\x07" + os.urandom(2047)


def truncated() -> bytes:
    return good()[:1500]


def empty() -> bytes:
    return b""


def huge() -> bytes:
    return OCF_MAGIC + os.urandom(20 * 1024 * 1024)


def unknown_schema_id() -> bytes:
    return b"\x00" + struct.pack(">I", 99_999) + os.urandom(300)


def corrupt_deflate() -> bytes:
    schema, rec = _ztf()
    data = bytearray(_container(schema, [rec], codec="deflate"))
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(64)  # zeros inside the compressed block
    return bytes(data)


def corrupt_snappy() -> bytes:
    schema, rec = _ztf()
    data = bytearray(_container(schema, [rec], codec="snappy"))
    mid = len(data) // 2
    data[mid:mid + 64] = os.urandom(64)
    return bytes(data)


def deflate_bomb() -> bytes:
    """3 MB on the wire that inflates to about 3 GB."""
    schema_text = json.dumps({"type": "record", "name": "ztf.alert", "fields": [{"name": "b", "type": "bytes"}]}).encode()
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(64 * 1024 * 1024)
    body = b"".join(comp.compress(chunk) for _ in range(48)) + comp.flush()
    return _raw_container(schema_text, 1, body, b"deflate")


def huge_record_count() -> bytes:
    """123 bytes that claim 2^40 records."""
    schema_text = json.dumps({"type": "record", "name": "ztf.alert", "fields": [{"name": "x", "type": "long"}]}).encode()
    return _raw_container(schema_text, 2 ** 40, b"\x02" * 8)


def null_array() -> bytes:
    """A few bytes that decode as an array of 2^36 nulls under their own schema."""
    schema_text = json.dumps({"type": "record", "name": "ztf.alert", "fields": [
        {"name": "a", "type": {"type": "array", "items": "null"}}]}).encode()
    body = io.BytesIO()
    _write_long(body, 2 ** 36)
    _write_long(body, 0)
    return _raw_container(schema_text, 1, body.getvalue())


def non_record_schema() -> bytes:
    return _raw_container(b'"string"', 1, b"\x06abc")


def non_utf8_metadata() -> bytes:
    schema, rec = _ztf()
    return _container(schema, [rec], meta_codec=b"\xff\xfe\x00bad")


def non_utf8_schema() -> bytes:
    return _with_meta(good(), {"avro.schema": b"\xff\xfe{\"type\": \"record\"}"})


def bad_values() -> bytes:
    """A real alert whose numbers are NaN, inf and negative errors."""
    schema, rec = _ztf()
    rec = copy.deepcopy(rec)
    cand = rec["candidate"]
    cand.update(magpsf=float("nan"), sigmapsf=-1.0, rb=float("inf"), fwhm=float("-inf"), elong=float("nan"))
    for p in rec["prv_candidates"] or []:
        if p.get("magpsf") is not None:
            p.update(magpsf=float("inf"), sigmapsf=-0.5)
    rec["candid"] += 17
    return _container(schema, [rec])


def long_history(points: int = 25_000) -> bytes:
    schema, rec = _ztf()
    rec = copy.deepcopy(rec)
    prv = rec["prv_candidates"][0]
    rec["prv_candidates"] = [prv] * points
    return _container(schema, [rec], codec="deflate")  # small on the wire, large decoded


def other_survey(name: str) -> bytes:
    """A ZTF-like alert under another survey's writer schema (PGIR, WINTER, ZUDS, ATLAS)."""
    schema, rec = _ztf()
    schema = copy.deepcopy(schema)
    schema["name"] = f"{name}.alert"
    schema.pop("namespace", None)
    return _container(schema, [rec])


MAKERS = {
    "random_bytes": (random_bytes, {"unknown_framing", "truncated"}),
    "truncated": (truncated, {"truncated"}),
    "empty": (empty, {"empty"}),
    "huge_20MB": (huge, {"too_large"}),
    "unknown_schema_id": (unknown_schema_id, {"unknown_schema_id"}),
    "corrupt_deflate": (corrupt_deflate, {"corrupt", "truncated"}),
    "corrupt_snappy": (corrupt_snappy, {"corrupt", "truncated"}),
    "deflate_bomb": (deflate_bomb, {"decompressed_too_large"}),
    "huge_record_count": (huge_record_count, {"corrupt", "too_many_records"}),
    "null_array": (null_array, {"invalid_schema"}),
    "non_record_schema": (non_record_schema, {"invalid_schema"}),
    "non_utf8_metadata": (non_utf8_metadata, {"corrupt"}),
    "non_utf8_schema": (non_utf8_schema, {"invalid_schema"}),
    "bad_values": (bad_values, {ANNOTATED}),
    "history_25k": (long_history, {"history_too_long"}),
    "history_100k": (lambda: long_history(100_000), {"decompressed_too_large"}),
    "pgir": (lambda: other_survey("pgir"), {"unsupported_survey"}),
    "winter": (lambda: other_survey("winter"), {"unsupported_survey"}),
    "zuds": (lambda: other_survey("zuds"), {"unsupported_survey"}),
    "atlas": (lambda: other_survey("atlas"), {"unsupported_survey"}),
}


@lru_cache(maxsize=None)
def build(kind: str) -> bytes:
    return MAKERS[kind][0]()


def expected(kind: str) -> set[str]:
    return MAKERS[kind][1]
