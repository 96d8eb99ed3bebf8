"""Read a topic back as JSON lines: annotations, filtered alerts or dead letters."""
from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from broker.annotations import HEADER_ANNOTATION, decode_annotation
from broker.codec import OCF_MAGIC, Decoder, encode_container
from broker.kafka_io import (
    HEADER_DLQ_ERROR, HEADER_DLQ_OFFSET, HEADER_DLQ_PARTITION, HEADER_DLQ_REASON, HEADER_DLQ_TOPIC,
    make_consumer,
)
from broker.output_formats import reframe
from broker.schema_store import SchemaResolver
from broker.settings import KafkaSettings


def describe(value: bytes | None, headers: list[tuple[str, bytes]] | None) -> dict:
    """The JSON view of one message, by what it carries."""
    h = {k: v for k, v in (headers or [])}
    if HEADER_DLQ_REASON in h:
        return {
            "reason": h[HEADER_DLQ_REASON].decode(),
            "error": h.get(HEADER_DLQ_ERROR, b"").decode(errors="replace"),
            "topic": h.get(HEADER_DLQ_TOPIC, b"").decode(),
            "partition": int(h.get(HEADER_DLQ_PARTITION, b"-1")),
            "offset": int(h.get(HEADER_DLQ_OFFSET, b"-1")),
            "bytes": len(value or b""),
        }
    if HEADER_ANNOTATION in h:
        ann = json.loads(h[HEADER_ANNOTATION])
        ann["bytes"] = len(value or b"")
        return ann
    return decode_annotation(value or b"")


def read_topic(bootstrap: str, topic: str, idle_s: float = 3.0, timeout_s: float = 60.0) -> list:
    """Every message of ``topic``, by direct assignment (no group join): until each partition
    has reached the last record batch written before the call, and then a quiet ``idle_s``.

    A quiet period alone ends too soon when a partition's fetch starts late (a loaded
    machine, a broker with many topics). Tansu's high watermark is one past the last
    batch's *first* record, so reaching it is not the end: the rest of that batch comes
    in the same fetch, and the quiet period covers it.
    """
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False,
                  "log.connection.close": False})
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        last_batch = {}
        for p in meta.partitions:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                last_batch[p] = high - 1
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        out = []
        start = last = time.monotonic()
        while time.monotonic() - start < timeout_s and (last_batch or time.monotonic() - last < idle_s):
            got = [m for m in c.consume(500, 0.5) if m.error() is None]
            for m in got:
                if m.partition() in last_batch and m.offset() >= last_batch[m.partition()]:
                    del last_batch[m.partition()]
            if got:
                out.extend(got)
                last = time.monotonic()
        return out
    finally:
        c.close()


def alert_container(value: bytes, key: bytes | None, decoder) -> bytes:
    """A forwarded alert as an Avro container file, whatever its route's format."""
    if key and key[:1] == b"{" and value[:4] != OCF_MAGIC:  # format fink: the writer schema is the key
        return encode_container(key, [value])
    return reframe(value, "ocf", decoder)[0]  # a container already, or a Confluent frame


def save_message(m, directory: Path, obj: dict, decoder) -> Path:
    """A filtered topic's alert as ``.avro`` (fastavro, fink_client's AlertReader read it), any
    other message (annotation, dead letter) as the ``.json`` that tail prints."""
    stem = f"{m.topic()}-{m.partition()}-{m.offset()}"  # topic names hold dots: no with_suffix
    headers = {k: v for k, v in (m.headers() or [])}
    if HEADER_ANNOTATION in headers and m.value():
        path = directory / f"{stem}.avro"
        path.write_bytes(alert_container(m.value(), m.key(), decoder))
    else:
        path = directory / f"{stem}.json"
        path.write_text(json.dumps(obj, default=str))
    return path


def tail(bootstrap: str, topic: str, from_beginning: bool = False,
         exit_when_idle_s: float | None = None, out=sys.stdout, kafka: KafkaSettings | None = None,
         save_dir: str | None = None) -> int:
    kafka = kafka or KafkaSettings(bootstrap=bootstrap, session_timeout_ms=6000)
    consumer = make_consumer(
        kafka, f"alert-broker-tail-{uuid.uuid4().hex[:8]}",
        **{"auto.offset.reset": "earliest" if from_beginning else "latest"},
    )
    assigned = []
    consumer.subscribe([topic], on_assign=lambda c, ps: assigned.append(time.monotonic()))
    count = 0
    start = last = time.monotonic()
    decoder = Decoder(SchemaResolver()) if save_dir else None
    if save_dir:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
    join_grace_s = 60.0  # a topic nobody can be assigned (missing, or the group is full)
    try:
        while True:
            msgs = consumer.consume(500, 0.5)
            got = [m for m in msgs if m.error() is None]
            for m in got:
                try:
                    obj = describe(m.value(), m.headers())
                except Exception as exc:
                    obj = {"undecodable": str(exc), "bytes": len(m.value() or b"")}
                out.write(json.dumps(obj, default=str) + "\n")
                if save_dir:
                    try:
                        save_message(m, Path(save_dir), obj, decoder)
                    except Exception as exc:  # one unreadable message must not end the tail
                        out.write(json.dumps({"not_saved": str(exc)[:200], "offset": m.offset()}) + "\n")
                count += 1
            if got:
                last = time.monotonic()
            elif assigned:
                last = max(last, assigned[0])
            if exit_when_idle_s is not None:
                if assigned and time.monotonic() - last > exit_when_idle_s:
                    break
                if not assigned and time.monotonic() - start > join_grace_s + exit_when_idle_s:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        out.flush()
        consumer.close()
    return count
