"""confluent-kafka clients as the pipeline uses them: manual commits, tracked deliveries."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from confluent_kafka import Consumer, KafkaError, Producer
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


def make_consumer(kafka: KafkaSettings, group_id: str, **extra) -> Consumer:
    conf = kafka.client_config()
    conf.update(
        {
            "group.id": group_id,
            "enable.auto.commit": False,  # we commit after every output of a batch is acked
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": kafka.session_timeout_ms,
            "heartbeat.interval.ms": max(100, kafka.session_timeout_ms // 10),
            "fetch.message.max.bytes": 20_000_000,
            # Eager rebalancing: every member gives up everything and gets a fresh share. The
            # incremental (cooperative) protocol left a revoked partition unowned on Tansu.
            "partition.assignment.strategy": "roundrobin",
            "log.connection.close": False,
        }
    )
    conf.update(kafka.consumer_extra)
    conf.update(extra)
    return Consumer(conf)


def make_producer(kafka: KafkaSettings, **extra) -> Producer:
    conf = kafka.client_config()
    conf.update(
        {
            "enable.idempotence": True,  # with acks=all: no duplicates from producer retries
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "none",
            "message.max.bytes": 20_000_000,
            "log.connection.close": False,
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


class DeliveryTracker:
    """Produces a batch's outputs and reports which were not acknowledged."""

    def __init__(self, producer: Producer):
        self.producer = producer

    def send_all(self, messages: list[Outgoing], timeout_s: float, retries: int = 3) -> list[Outgoing]:
        pending = messages
        for attempt in range(retries + 1):
            failed: list[Outgoing] = []
            for msg in pending:
                self._produce(msg, failed)
            metrics.PRODUCER_QUEUE.set(len(self.producer))  # the batch's outputs waiting for acks
            deadline = time.monotonic() + timeout_s
            while self.producer.flush(1.0) > 0:
                if time.monotonic() > deadline:
                    break
            if len(self.producer) > 0:
                # Still queued after the deadline: unknown outcome, treat as failed.
                log.error("producer flush timed out", extra={"queued": len(self.producer)})
                return pending
            if not failed:
                return []
            log.warning("retrying failed deliveries", extra={"failed": len(failed), "attempt": attempt})
            pending = failed
        return pending

    def _produce(self, msg: Outgoing, failed: list[Outgoing]) -> None:
        def on_delivery(err, _m, msg=msg):
            if err is not None:
                metrics.DELIVERY_ERRORS.labels(topic=msg.topic).inc()
                log.error("delivery failed", extra={"topic": msg.topic, "error": str(err)})
                failed.append(msg)
            elif msg.on_ack is not None:
                msg.on_ack()

        while True:
            try:
                self.producer.produce(msg.topic, value=msg.value, key=msg.key,
                                      headers=msg.headers, on_delivery=on_delivery)
                return
            except BufferError:
                self.producer.poll(0.5)  # local queue full: let deliveries drain


def ensure_topics(kafka: KafkaSettings, topics: list[str], partitions: int = 1) -> None:
    admin = AdminClient(kafka.client_config())
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
