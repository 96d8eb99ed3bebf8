"""Framing detection and Avro decoding with a schema cache.

Two framings reach us:
* Avro Object Container File (ZTF): ``Obj\\x01`` + metadata map (writer schema, codec) + sync
  marker + blocks. Every message repeats the writer schema, so parsed schemas are cached by
  a digest of the schema text: a schema is parsed once per process, however many messages.
* Confluent wire format (LSST): ``0x00`` + 4-byte big-endian schema id + schemaless body.
  Ids resolve through a :class:`SchemaSource` (registry first, bundled copies second).

Every failure raises :class:`DecodeError` with a short machine reason (a metric label and a
dead-letter header) and a human message; no other exception leaves :meth:`Decoder.decode`.
Hostile or broken input is bounded before it is expanded (:class:`DecodeLimits`): message
size, decompressed size, records per message, and writer schemas whose arrays could hold
items of zero bytes (an array of 2^36 nulls fits in a few bytes).
"""
from __future__ import annotations

import hashlib
import io
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import cramjam
import fastavro
from fastavro import schemaless_reader

from broker.avro_records import ReaderCache, StrayBytes
from broker.schema_safety import schema_problem

OCF_MAGIC = b"Obj\x01"
CONFLUENT_MAGIC = 0

_HEADER_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "org.apache.avro.file.Header",
        "fields": [
            {"name": "magic", "type": {"type": "fixed", "name": "Magic", "size": 4}},
            {"name": "meta", "type": {"type": "map", "values": "bytes"}},
            {"name": "sync", "type": {"type": "fixed", "name": "Sync", "size": 16}},
        ],
    }
)


@dataclass(frozen=True)
class DecodeLimits:
    max_message_bytes: int = 10_000_000
    max_decompressed_bytes: int = 16_000_000  # all blocks of one message together
    max_records: int = 10_000  # records in one container file


class TransientError(Exception):
    """A fault outside the message (schema registry unreachable): retry, never dead-letter."""


class DecodeError(Exception):
    """A message that cannot be turned into alert records; ``reason`` is a stable label."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class DecodedMessage:
    """Records decoded from one Kafka message, with what is known about their schema."""

    framing: str  # "ocf" or "confluent"
    schema: dict  # the writer schema (parsed form)
    schema_name: str
    schema_version: str | None  # the writer schema's own "version"/id-derived version
    records: list[dict]
    # Each record's encoded bytes inside its (decompressed) block, to split files losslessly.
    record_spans: list[tuple[int, int, bytes]] = field(default_factory=list)
    schema_text: bytes = b""


def _read_long(buf: io.BytesIO) -> int:
    """Avro zig-zag varint."""
    shift = 0
    acc = 0
    while True:
        b = buf.read(1)
        if not b:
            raise DecodeError("truncated", "unexpected end of data in a block header")
        byte = b[0]
        acc |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 63:
            raise DecodeError("corrupt", "varint too long in a block header")
    return (acc >> 1) ^ -(acc & 1)


def _too_large(limit: int) -> DecodeError:
    return DecodeError("decompressed_too_large", f"a block decompresses past {limit} bytes")


def _decompress(codec: str, data: bytes, limit: int) -> bytes:
    """One block, never expanded past ``limit`` bytes (a deflate bomb stops at the limit)."""
    if codec == "null":
        return data
    if codec == "deflate":
        inflater = zlib.decompressobj(-15)
        try:
            raw = inflater.decompress(data, limit + 1)
        except zlib.error as exc:
            raise DecodeError("corrupt", f"deflate block: {exc}") from exc
        if len(raw) > limit or inflater.unconsumed_tail:
            raise _too_large(limit)
        return raw
    if codec == "snappy":
        if len(data) < 5:
            raise DecodeError("corrupt", "snappy block shorter than its checksum")
        body = data[:-4]
        try:
            # The raw format states its length up front: check it before allocating.
            too_large = cramjam.snappy.decompress_raw_len(body) > limit
            raw = None if too_large else bytes(cramjam.snappy.decompress_raw(body))
        except Exception as exc:  # cramjam raises its own DecompressionError
            raise DecodeError("corrupt", f"snappy block: {exc}") from exc
        if raw is None:
            raise _too_large(limit)
        # Avro's snappy blocks end with a 4-byte CRC32 of the uncompressed data.
        if struct.unpack(">I", data[-4:])[0] != (zlib.crc32(raw) & 0xFFFFFFFF):
            raise DecodeError("corrupt", "snappy block CRC mismatch")
        return raw
    raise DecodeError("unsupported_codec", f"unsupported Avro codec {codec!r}")


def schema_version_of(schema: dict) -> str | None:
    """The version a writer schema declares, from a ``version`` key or a ``vX_Y`` namespace."""
    if isinstance(schema, dict):
        if schema.get("version"):
            return str(schema["version"])
        name = f'{schema.get("namespace") or ""}.{schema.get("name", "")}'
        for part in name.split("."):
            if part.startswith("v") and "_" in part:
                major, _, minor = part[1:].partition("_")
                if major.isdigit() and minor.isdigit():
                    return f"{int(major)}.{int(minor)}"
    return None


class SchemaCache:
    """Parsed writer schemas keyed by a digest of their text; failures are cached too."""

    def __init__(self, max_entries: int = 256):
        self._parsed: dict[bytes, dict | DecodeError] = {}
        self._max = max_entries
        self._last_text: bytes | None = None
        self._last_hit: dict | DecodeError | None = None
        self.parses = 0  # how many times a schema text was actually parsed (tests read it)

    def get(self, schema_text: bytes) -> dict:
        # A stream repeats one schema: comparing with the last text (a memcmp) is cheaper than
        # hashing it again (tens of us for LSST's schema text, on every message).
        if schema_text == self._last_text:
            hit = self._last_hit
        else:
            key = hashlib.blake2b(schema_text, digest_size=16).digest()
            hit = self._parsed.get(key)
            if hit is None:
                hit = self._parse(schema_text)
                if len(self._parsed) >= self._max:
                    self._parsed.pop(next(iter(self._parsed)))
                self._parsed[key] = hit
            self._last_text, self._last_hit = schema_text, hit
        if isinstance(hit, DecodeError):
            raise hit
        return hit

    def _parse(self, schema_text: bytes) -> dict | DecodeError:
        import json

        self.parses += 1
        try:
            raw = json.loads(schema_text)
        except ValueError as exc:
            return DecodeError("invalid_schema", f"writer schema is not JSON: {exc}")
        try:
            # A fresh namespace per schema: versions reuse names like ztf.alert.candidate.
            parsed = fastavro.parse_schema(raw, named_schemas={})
        except Exception as exc:  # fastavro raises several types for bad schemas
            return DecodeError("invalid_schema", f"writer schema rejected: {exc}")
        problem = schema_problem(parsed)
        return DecodeError("invalid_schema", problem) if problem else parsed


class Decoder:
    """Turns message bytes into records. ``resolve_id`` maps a Confluent id to a parsed schema."""

    def __init__(
        self,
        resolve_id: Callable[[int], tuple[dict, str | None]],
        limits: DecodeLimits | None = None,
        cache: SchemaCache | None = None,
        check_schema_name: Callable[[str], None] | None = None,
        readers: ReaderCache | None = None,
        project: Callable[[dict], dict | None] | None = None,
    ):
        self.cache = cache or SchemaCache()
        # Records are read by a reader per schema; ``project`` gives the reader schema for a
        # writer schema (the fields a caller reads; see avro_records.project_arrays), or None.
        self.readers = readers or ReaderCache(project=project)
        self._resolve_id = resolve_id
        self.limits = limits or DecodeLimits()
        # Raises DecodeError for a writer schema we will not read, before its records are
        # decoded: another survey's alerts cost a header read, not a full decode.
        self._check_name = check_schema_name or (lambda name: None)

    def decode(self, data: bytes | None) -> DecodedMessage:
        """The message's records, or :class:`DecodeError`; never any other exception."""
        try:
            return self._decode(data)
        except (DecodeError, TransientError):
            raise
        except MemoryError as exc:
            raise DecodeError("decompressed_too_large", "decoding ran out of memory") from exc
        except RecursionError as exc:
            raise DecodeError("invalid_schema", "writer schema or data nested too deeply") from exc
        except Exception as exc:  # a decoder library's own error on input it did not expect
            raise DecodeError("corrupt", f"{type(exc).__name__}: {str(exc)[:300]}") from exc

    def _decode(self, data: bytes | None) -> DecodedMessage:
        if not data:
            raise DecodeError("empty", "message value is empty")
        limit = self.limits.max_message_bytes
        if len(data) > limit:
            raise DecodeError("too_large", f"message is {len(data)} bytes, limit {limit}")
        if data[:4] == OCF_MAGIC:
            return self._decode_ocf(data)
        if data[0] == CONFLUENT_MAGIC and len(data) > 5:
            return self._decode_confluent(data)
        if data[:3] == OCF_MAGIC[:3] or (data[0] == CONFLUENT_MAGIC and len(data) <= 5):
            raise DecodeError("truncated", f"message of {len(data)} bytes ends inside its header")
        raise DecodeError("unknown_framing", f"first bytes {data[:4].hex()} are neither OCF nor Confluent")

    def _decode_confluent(self, data: bytes) -> DecodedMessage:
        schema_id = struct.unpack(">I", data[1:5])[0]
        schema, version = self._resolve_id(schema_id)
        self._check_name(_name(schema))
        try:
            record = self.readers.get(schema).read_one(memoryview(data)[5:])
        except StrayBytes as exc:
            raise DecodeError("corrupt", f"schema id {schema_id}: {exc}") from exc
        except Exception as exc:
            raise DecodeError(_classify(exc), f"schema id {schema_id}: {exc}") from exc
        return DecodedMessage("confluent", schema, _name(schema), version, [record])

    def _decode_ocf(self, data: bytes) -> DecodedMessage:
        buf = io.BytesIO(data)
        try:
            header = schemaless_reader(buf, _HEADER_SCHEMA, None)
        except Exception as exc:
            raise DecodeError("truncated", f"container header unreadable: {exc}") from exc
        meta = header["meta"]
        schema_text = meta.get("avro.schema")
        if not schema_text:
            raise DecodeError("corrupt", "container header has no avro.schema")
        try:
            codec = meta.get("avro.codec", b"null").decode("ascii") or "null"
        except UnicodeDecodeError as exc:
            raise DecodeError("corrupt", "avro.codec metadata is not ASCII") from exc
        schema = self.cache.get(schema_text)
        self._check_name(_name(schema))
        sync = header["sync"]
        records: list[dict] = []
        spans: list[tuple[int, int]] = []
        end = len(data)
        budget = self.limits.max_decompressed_bytes
        while buf.tell() < end:
            count = _read_long(buf)
            size = _read_long(buf)
            if count < 0 or size < 0 or buf.tell() + size + 16 > end:
                raise DecodeError("truncated", "block runs past the end of the message")
            if len(records) + count > self.limits.max_records:
                raise DecodeError("too_many_records",
                                  f"container holds over {self.limits.max_records} records")
            block = buf.read(size)
            if buf.read(16) != sync:
                raise DecodeError("corrupt", "sync marker mismatch after a block")
            raw = _decompress(codec, block, budget)
            budget -= len(raw)
            if count > len(raw):  # every record of a checked schema takes at least one byte
                raise DecodeError("corrupt", f"block claims {count} records in {len(raw)} bytes")
            try:
                block_records, block_spans = self.readers.get(schema).read_block(raw, count)
            except StrayBytes as exc:
                raise DecodeError("corrupt", f"{exc} in a block") from exc
            except Exception as exc:
                n = len(records) + getattr(exc, "records_read", 0)
                raise DecodeError(_classify(exc), f"record {n}: {exc}") from exc
            records.extend(block_records)
            spans.extend((start, stop, raw) for start, stop in block_spans)
        if not records:
            raise DecodeError("empty", "container holds no records")
        return DecodedMessage(
            "ocf", schema, _name(schema), schema_version_of(schema), records, spans, schema_text
        )


def _name(schema: Any) -> str:
    return str(schema.get("name", "")) if isinstance(schema, dict) else str(schema)


def _classify(exc: Exception) -> str:
    if isinstance(exc, (EOFError, IndexError, struct.error)):
        return "truncated"
    return "corrupt"


def encode_container(schema_text: bytes, record_bytes: list[bytes]) -> bytes:
    """A null-codec container holding already-encoded records under the given writer schema.

    Used to split a multi-record file into one message per alert without re-encoding: the
    bytes of each record are kept exactly as the writer produced them.
    """
    out = io.BytesIO()
    sync = hashlib.md5(schema_text).digest()
    fastavro.schemaless_writer(
        out,
        _HEADER_SCHEMA,
        {"magic": OCF_MAGIC, "meta": {"avro.schema": schema_text, "avro.codec": b"null"}, "sync": sync},
    )
    body = b"".join(record_bytes)
    _write_long(out, len(record_bytes))
    _write_long(out, len(body))
    out.write(body)
    out.write(sync)
    return out.getvalue()


def _write_long(out: io.BytesIO, n: int) -> None:
    n = (n << 1) ^ (n >> 63)
    while n & ~0x7F:
        out.write(bytes([(n & 0x7F) | 0x80]))
        n >>= 7
    out.write(bytes([n]))


def split_container(data: bytes, decoder: Decoder) -> list[bytes]:
    """One single-record container per record of an OCF message (the original if only one)."""
    msg = decoder.decode(data)
    if msg.framing != "ocf" or len(msg.records) == 1:
        return [data]
    return [encode_container(msg.schema_text, [raw[a:b]]) for a, b, raw in msg.record_spans]


def encode_confluent(schema_id: int, schema: dict, record: dict) -> bytes:
    out = io.BytesIO()
    out.write(struct.pack(">bI", CONFLUENT_MAGIC, schema_id))
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()
