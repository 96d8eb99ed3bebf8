"""How a filtered topic carries each alert: the format a route names.

* ``original``: the bytes the survey sent (a ZTF container file, an LSST Confluent frame).
* ``ocf``: a self-describing Avro container file per alert, LSST alerts included, so offline
  tools (fastavro, ``fink_client``'s ``AlertReader``, ``ztf``-style readers) need no registry.
* ``fink``: Fink's live convention, key = the writer schema as JSON, value = the schemaless
  Avro record: ``fink_client.AlertConsumer`` reads it with its usual arguments. Kafka places
  messages by key, so such a topic's messages of one schema share a partition.
"""
from __future__ import annotations

import fastavro

from broker.codec import OCF_MAGIC, Decoder, encode_container

FORMATS = ("original", "ocf", "fink")


def _schema_and_body(raw: bytes, decoder: Decoder) -> tuple[bytes, bytes]:
    """(writer schema as JSON, the record's Avro bytes) of one forwarded alert."""
    decoded = decoder.decode(raw)
    if decoded.framing == "ocf":
        start, end, block = decoded.record_spans[0]
        return decoded.schema_text, block[start:end]
    return fastavro.schema.to_parsing_canonical_form(decoded.schema).encode(), raw[5:]


def reframe(raw: bytes, fmt: str, decoder: Decoder) -> tuple[bytes, bytes | None]:
    """(value, key) of a forwarded alert in ``fmt``; key None keeps the object id."""
    if fmt == "original" or (fmt == "ocf" and raw[:4] == OCF_MAGIC):
        return raw, None
    schema_text, body = _schema_and_body(raw, decoder)
    if fmt == "ocf":
        return encode_container(schema_text, [body]), None
    if fmt == "fink":
        return body, schema_text
    raise ValueError(f"unknown output format {fmt!r}; one of {FORMATS}")
