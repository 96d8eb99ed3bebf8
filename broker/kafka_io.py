"""confluent-kafka clients as the pipeline uses them: manual commits, tracked deliveries."""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from broker import metrics
from broker.settings import KafkaSettings

log = logging.getLogger(__name__)

HEADER_DLQ_REASON = "alert-broker.dlq.reason"
HEADER_DLQ_ERROR = "alert-broker.dlq.error"
HEADER_DLQ_TOPIC = "alert-broker.dlq.topic"
HEADER_DLQ_PARTITION = "alert-broker.dlq.partition"
HEADER_DLQ_OFFSET = "alert-broker.dlq.offset"
HEADER_DLQ_TIMESTAMP = "alert-broker.dlq.timestamp_ms"
HEADER_DLQ_ORIGINAL_BYTES = "alert-broker.dlq.original_bytes"  # set when the value was cut

# Delivery errors that concern one message, not the connection: retrying cannot help.
PER_MESSAGE_ERRORS = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE,
                      KafkaError.INVALID_RECORD}


class _Once(logging.Filter):
    """librdkafka repeats a failing connection's error many times a second: keep one a minute."""

    def __init__(self, every_s: float = 60.0):
        super().__init__()
        self.every_s = every_s
        self._seen: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = record.getMessage()[:200]
        now = time.monotonic()
        if now - self._seen.get(key, -1e9) < self.every_s:
            return False
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[key] = now
        return True


_client_log = logging.getLogger("librdkafka")
_client_log.addFilter(_Once())


def _common(kafka: KafkaSettings) -> dict:
    conf = kafka.client_config()
    # librdkafka's own log lines go through our JSON logs, deduplicated.
    conf.update({"logger": _client_log, "log.connection.close": False})
    return conf


def make_consumer(kafka: KafkaSettings, group_id: str, **extra) -> Consumer:
    return Consumer(consumer_config(kafka, group_id, **extra))


def consumer_config(kafka: KafkaSettings, group_id: str, **extra) -> dict:
    conf = _common(kafka)
    conf.update(
        {
            "group.id": group_id,
            "enable.auto.commit": False,  # we commit after every output of a batch is acked
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": kafka.session_timeout_ms,
            "heartbeat.interval.ms": max(100, kafka.session_timeout_ms // 10),
            "fetch.message.max.bytes": 20_000_000,
            "fetch.wait.max.ms": kafka.fetch_wait_max_ms,
            # Prefetch room for about a batch of the largest alerts: librdkafka's default 64 MB
            # holds ~480 LSST alerts with stamps (136 KB), less than one 500-alert batch, and
            # the fetcher then waits on the pipeline (bench, in-process decode: 650 -> 1,100
            # LSST alerts/s; 192 MB: 1,170 for ~60 MB more resident memory).
            "queued.max.messages.kbytes": 131_072,
            # Once that queue is full librdkafka postpones the next fetch by this much (default
            # 1 s): with 136 KB alerts it fills every batch or two, and the pipeline then sat
            # 0.4-0.6 s at a time with nothing to read (LSST, bench: 1,250 -> 1,630 alerts/s).
            "fetch.queue.backoff.ms": 10,
            # Eager rebalancing: every member gives up everything and gets a fresh share. The
            # incremental (cooperative) protocol left a revoked partition unowned on Tansu.
            "partition.assignment.strategy": "roundrobin",
            # End-of-partition events close a backlog's last exposure run (broker/exposure_runs.py).
            "enable.partition.eof": True,
        }
    )
    conf.update(kafka.consumer_extra)
    conf.update(extra)
    return conf


def make_producer(kafka: KafkaSettings, delivery_timeout_s: float = 30.0,
                  queue_messages: int = 100_000, **extra) -> Producer:
    conf = _common(kafka)
    conf.update(
        {
            # librdkafka retries within delivery.timeout.ms, in order and without duplicates
            # (idempotence, acks=all); after it, a failure is final.
            "enable.idempotence": True,
            "acks": "all",
            "delivery.timeout.ms": int(delivery_timeout_s * 1000),
            "queue.buffering.max.messages": queue_messages,
            "linger.ms": 5,
            "compression.type": "none",
            "message.max.bytes": 20_000_000,
        }
    )
    conf.update(kafka.producer_extra)
    conf.update(extra)
    return Producer(conf)


@dataclass
class Outgoing:
    topic: str
    value: bytes
    key: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    on_ack: Callable[[], None] | None = None
    source: object = None  # the input message behind it, to dead-letter it if it cannot go out


class DeliveryTracker:
    """Produces a batch's outputs and reports which were not acknowledged, and why.

    It never produces a message twice: retries are librdkafka's (idempotent, ordered), so a
    failure reported here is final for that message.
    """

    def __init__(self, producer: Producer):
        self.producer = producer
        self.waiting_since: float | None = None  # monotonic start of the current wait on Kafka

    @contextmanager
    def blocked(self):
        """Mark a call that waits on Kafka (acks, a synchronous commit): /readyz reads it."""
        self.waiting_since = time.monotonic()
        try:
            yield
        finally:
            self.waiting_since = None

    def send_all(self, messages: list[Outgoing], timeout_s: float) -> list[tuple[Outgoing, KafkaError]]:
        failed: list[tuple[Outgoing, KafkaError]] = []
        deadline = time.monotonic() + timeout_s
        with self.blocked():
            for msg in messages:
                self._produce(msg, failed, deadline)
            metrics.PRODUCER_QUEUE.set(len(self.producer))  # the batch's outputs waiting for acks
            while self.producer.flush(min(1.0, max(0.0, deadline - time.monotonic()))) > 0:
                if time.monotonic() >= deadline:
                    break
        if len(self.producer) > 0:
            # Unknown outcome past the deadline: the caller must not commit.
            log.error("producer flush timed out", extra={"queued": len(self.producer)})
            raise DeliveryTimeout(f"{len(self.producer)} outputs unacknowledged after {timeout_s:.0f}s")
        return failed

    def waiting_for(self) -> float:
        """Seconds the loop has waited on Kafka in its current call: a batch's acks or its
        synchronous commit, which a stalled broker can hold for a minute (0 if none)."""
        since = self.waiting_since
        return 0.0 if since is None else time.monotonic() - since

    def _produce(self, msg: Outgoing, failed: list, deadline: float) -> None:
        def on_delivery(err, _m, msg=msg):
            if err is not None:
                metrics.DELIVERY_ERRORS.labels(topic=msg.topic).inc()
                log.error("delivery failed", extra={"topic": msg.topic, "error": str(err)})
                failed.append((msg, err))
            elif msg.on_ack is not None:
                msg.on_ack()

        while True:
            try:
                self.producer.produce(msg.topic, value=msg.value, key=msg.key,
                                      headers=msg.headers, on_delivery=on_delivery)
                return
            except BufferError:  # local queue full: let deliveries drain
                if time.monotonic() >= deadline:
                    raise DeliveryTimeout("producer queue stayed full past the deadline") from None
                self.producer.poll(0.5)
            except KafkaException as exc:  # refused locally (e.g. larger than message.max.bytes)
                failed.append((msg, exc.args[0]))
                return


class DeliveryTimeout(RuntimeError):
    pass


def ensure_topics(kafka: KafkaSettings, topics: list[str], partitions: int = 1) -> None:
    admin = AdminClient(_common(kafka))
    existing = set(admin.list_topics(timeout=10).topics)
    new = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics if t not in existing]
    if not new:
        return
    for topic, fut in admin.create_topics(new).items():
        try:
            fut.result()
        except Exception as exc:
            if getattr(exc.args[0], "code", lambda: None)() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def sort_consumed(consumed: list) -> tuple[list, list[tuple[tuple[str, int], int]]]:
    """The messages, and ``((topic, partition), next offset)`` for each partition read to its
    end (``enable.partition.eof``); other errors are logged and dropped."""
    messages, ends = [], []
    for m in consumed:
        err = m.error()
        if err is None:
            messages.append(m)
        elif err.code() == KafkaError._PARTITION_EOF:
            ends.append(((m.topic(), m.partition()), m.offset()))
        else:
            log.warning("consumer error", extra={"error": str(err)})
    return messages, ends


def leave_group(consumer: Consumer, still_assigned: Callable[[], bool], within_s: float,
                settle_s: float = 0.2) -> None:
    """Unsubscribe and serve the revocation with our own polls, before ``close()``.

    Left to ``close()``, the revocation's unassign can wait forever when a rebalance is under
    way (librdkafka #4884, open), and confluent-kafka makes that call holding the GIL: a CI run
    of 2026-12-07 left a pipeline stopping beside another of its group stuck there for 20
    minutes. Made here, outside close, the unassign is answered, and close has nothing left to
    unassign (the workaround given in librdkafka #4527). ``still_assigned``: whether the
    pipeline's revoke callback has yet to run; messages polled meanwhile are dropped
    uncommitted (the next owner reads them)."""
    try:
        consumer.unsubscribe()
        start = time.monotonic()
        while time.monotonic() - start < within_s:
            consumer.consume(100, 0.05)  # serves the callbacks: a late assignment, then the revocation
            if not still_assigned() and time.monotonic() - start >= settle_s:
                return
        log.warning("partitions still assigned when closing the consumer", extra={"waited_s": within_s})
    except KafkaException as exc:  # close() does what it can
        log.warning("leaving the group before close failed", extra={"error": str(exc)})
