"""consume -> decode -> filters -> route -> produce -> commit, at least once.

The only module that knows the order of the steps. A batch's offsets are committed only
after every output of that batch (annotations, filtered copies, dead letters) is
acknowledged by Kafka; if any delivery fails for good the process stops without committing,
so a restart reprocesses the batch (duplicates possible, losses not).
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from broker import metrics
from broker.annotations import (
    BROKER_VERSION, RouteCondition, annotation_headers, encode_annotation, filter_output,
)
from broker.batch import AlertBatch, NormalisedAlert
from broker.codec import DecodeError, Decoder, encode_container
from broker.filter_runner import FilterRunner
from broker.kafka_io import (
    HEADER_DLQ_ERROR, HEADER_DLQ_OFFSET, HEADER_DLQ_PARTITION, HEADER_DLQ_REASON,
    HEADER_DLQ_TIMESTAMP, HEADER_DLQ_TOPIC, DeliveryTracker, Outgoing, make_consumer, make_producer,
)
from broker.schema_store import RegistryClient, SchemaResolver
from broker.settings import Settings
from broker.surveys import normalise

log = logging.getLogger(__name__)


_REBALANCE_ERRORS = {
    KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS, KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError._NO_OFFSET, KafkaError._STATE,
}


class DeliveryFailed(RuntimeError):
    pass


@dataclass
class RunSummary:
    consumed: int = 0
    annotated: int = 0
    dead_lettered: Counter = field(default_factory=Counter)
    routed: Counter = field(default_factory=Counter)
    scored: Counter = field(default_factory=Counter)
    nulls: Counter = field(default_factory=Counter)
    batches: int = 0
    seconds: float = 0.0


@dataclass
class _Decoded:
    alerts: list[NormalisedAlert] = field(default_factory=list)
    forward: list[bytes] = field(default_factory=list)  # bytes to forward, per alert
    source: list = field(default_factory=list)  # the Kafka message, per alert
    dead: list[tuple] = field(default_factory=list)  # (message, DecodeError)


def build_decoder(settings: Settings) -> Decoder:
    reg = settings.schema_registry
    registry = RegistryClient(reg.url, reg.username, reg.secret()) if reg.url else None
    return Decoder(SchemaResolver(registry), max_message_bytes=settings.max_message_bytes)


def decode_messages(decoder: Decoder, messages: list) -> _Decoded:
    out = _Decoded()
    for m in messages:
        value = m.value()
        try:
            decoded = decoder.decode(value)
            alerts = [normalise(r, decoded) for r in decoded.records]
        except DecodeError as exc:
            out.dead.append((m, exc))
            continue
        multi = len(alerts) > 1
        for j, alert in enumerate(alerts):
            out.alerts.append(alert)
            if multi:  # one alert of a multi-record file: its own single-record container
                a, b, raw = decoded.record_spans[j]
                out.forward.append(encode_container(decoded.schema_text, [raw[a:b]]))
            else:
                out.forward.append(value)
            out.source.append(m)
    return out


class Pipeline:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.decoder = build_decoder(settings)
        self.filters = FilterRunner(settings.filters, settings.resolved_device(), settings.filter_options)
        self.routes = [(r.topic, RouteCondition(r.condition)) for r in settings.routes]
        self.summary = RunSummary()
        self._stop = False
        self._assigned: set[tuple[str, int]] = set()
        self._joined = False  # the idle clock starts once the group has given us a share
        self._last_activity = time.monotonic()
        self.last_loop = time.monotonic()  # for /healthz
        self.consumer = make_consumer(settings.kafka, settings.group_id)
        self.producer = make_producer(settings.kafka)
        self.tracker = DeliveryTracker(self.producer)

    # -- lifecycle -------------------------------------------------------------------------
    def request_stop(self, *_args) -> None:
        """Finish the batch in flight, flush, commit, leave the group; abandon at the deadline."""
        if self._stop:
            return
        self._stop = True
        log.info("stop requested", extra={"deadline_s": self.settings.shutdown_deadline_s})
        timer = threading.Timer(self.settings.shutdown_deadline_s, self._abandon)
        timer.daemon = True
        timer.start()

    def _abandon(self) -> None:
        # Nothing uncommitted is lost: the next owner of these partitions reprocesses it.
        log.warning("shutdown deadline passed; abandoning the batch in flight uncommitted")
        logging.shutdown()
        os._exit(0)

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    @property
    def assigned(self) -> set[tuple[str, int]]:
        return set(self._assigned)

    def _on_assign(self, consumer, partitions) -> None:
        metrics.REBALANCES.labels(kind="assign").inc()
        self._joined = True
        self._assigned.update((p.topic, p.partition) for p in partitions)
        metrics.ASSIGNED_PARTITIONS.set(len(self._assigned))
        self._last_activity = time.monotonic()
        log.info("partitions assigned", extra={"partitions": sorted(self._assigned)})

    def _on_revoke(self, consumer, partitions) -> None:
        # Batches are processed and committed before the next poll, and revocation runs
        # inside poll: nothing acknowledged-but-uncommitted exists for these partitions.
        metrics.REBALANCES.labels(kind="revoke").inc()
        self._assigned.difference_update((p.topic, p.partition) for p in partitions)
        metrics.ASSIGNED_PARTITIONS.set(len(self._assigned))

    def run(self) -> RunSummary:
        s = self.settings
        start = time.monotonic()
        self.consumer.subscribe(list(s.input_topics), on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_revoke)
        try:
            while not self._stop:
                self.last_loop = time.monotonic()
                t0 = time.perf_counter()
                messages = self.consumer.consume(s.batch.max_alerts, s.batch.max_wait_ms / 1000)
                metrics.STAGE_SECONDS.labels(stage="poll").observe(time.perf_counter() - t0)
                messages = [m for m in messages if self._usable(m)]
                if messages:
                    self.process(messages)
                    self._last_activity = time.monotonic()
                elif self._idle_for() > (s.exit_when_idle_s if s.exit_when_idle_s is not None else float("inf")):
                    log.info("inputs idle, stopping", extra={"idle_s": s.exit_when_idle_s})
                    break
        finally:
            self.close()
            self.summary.seconds = time.monotonic() - start
        return self.summary

    def _idle_for(self) -> float:
        return time.monotonic() - self._last_activity if self._joined else 0.0

    def close(self) -> None:
        self.producer.flush(self.settings.shutdown_deadline_s)
        self.consumer.close()  # leaves the group so partitions move on at once

    @staticmethod
    def _usable(m) -> bool:
        err = m.error()
        if err is None:
            return True
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer error", extra={"error": str(err)})
        return False

    # -- one batch -------------------------------------------------------------------------
    def process(self, messages: list) -> None:
        s = self.settings
        for m in messages:
            metrics.CONSUMED.labels(topic=m.topic()).inc()
        metrics.BATCH_SIZE.observe(len(messages))
        t0 = time.perf_counter()
        decoded = decode_messages(self.decoder, messages)
        batch = AlertBatch(decoded.alerts, decoded.forward)
        for survey in batch.survey:
            metrics.DECODED.labels(survey=survey).inc()
        metrics.STAGE_SECONDS.labels(stage="decode").observe(time.perf_counter() - t0)

        results = self.filters.run(batch) if batch.n else {}
        now_ms = int(time.time() * 1000)
        outgoing = self._annotated_outputs(batch, decoded, results, now_ms)
        outgoing += [self._dead_letter(m, exc) for m, exc in decoded.dead]

        t0 = time.perf_counter()
        failed = self.tracker.send_all(outgoing, timeout_s=s.shutdown_deadline_s)
        metrics.STAGE_SECONDS.labels(stage="produce").observe(time.perf_counter() - t0)
        if failed:
            raise DeliveryFailed(f"{len(failed)} outputs not acknowledged; offsets not committed")
        acked = time.time()
        for m in messages:
            ts_type, ts = m.timestamp()
            if ts_type and ts > 0:
                metrics.END_TO_END_SECONDS.observe(max(0.0, acked - ts / 1000))

        t0 = time.perf_counter()
        self._commit(messages)
        metrics.STAGE_SECONDS.labels(stage="commit").observe(time.perf_counter() - t0)
        metrics.BATCHES.inc()
        self.summary.batches += 1
        self.summary.consumed += len(messages)
        log.info("batch committed", extra={"messages": len(messages), "alerts": batch.n,
                                           "dead_letters": len(decoded.dead)})

    def _annotated_outputs(self, batch: AlertBatch, decoded: _Decoded, results: dict, now_ms: int) -> list[Outgoing]:
        out: list[Outgoing] = []
        s = self.settings
        for i in range(batch.n):
            src = decoded.source[i]
            ts_type, ts = src.timestamp()
            ann = {
                "survey": str(batch.survey[i]),
                "object_id": str(batch.object_id[i]),
                "alert_id": int(batch.alert_id[i]),
                "schema_version": batch.schema_version[i],
                "source_topic": src.topic(),
                "source_partition": src.partition(),
                "source_offset": src.offset(),
                "kafka_timestamp_ms": ts if ts_type and ts > 0 else None,
                "processed_at_ms": now_ms,
                "broker_version": BROKER_VERSION,
                "filters": {
                    f.name: filter_output(
                        results[f.name].score[i], f.version, results[f.name].reason[i],
                        results[f.name].details[i] if results[f.name].details else None,
                    )
                    for f in self.filters.filters
                },
            }
            key = ann["object_id"].encode() or None
            out.append(Outgoing(s.annotations_topic, encode_annotation(ann), key,
                                on_ack=self._count_annotated(ann)))
            headers = None
            for topic, cond in self.routes:
                if cond(ann):
                    headers = headers or annotation_headers(ann)
                    out.append(Outgoing(topic, decoded.forward[i], key, headers,
                                        on_ack=self._count_routed(topic)))
        return out

    def _count_annotated(self, ann: dict):
        def ack():
            metrics.ANNOTATED.labels(survey=ann["survey"]).inc()
            self.summary.annotated += 1
            for name, fo in ann["filters"].items():
                if fo["score"] is None:
                    self.summary.nulls[(name, fo["reason"])] += 1
                else:
                    self.summary.scored[name] += 1
        return ack

    def _count_routed(self, topic: str):
        def ack():
            metrics.ROUTED.labels(topic=topic).inc()
            self.summary.routed[topic] += 1
        return ack

    def _dead_letter(self, m, exc: DecodeError) -> Outgoing:
        ts_type, ts = m.timestamp()
        headers = list(m.headers() or []) + [
            (HEADER_DLQ_REASON, exc.reason.encode()),
            (HEADER_DLQ_ERROR, str(exc)[:1000].encode()),
            (HEADER_DLQ_TOPIC, m.topic().encode()),
            (HEADER_DLQ_PARTITION, str(m.partition()).encode()),
            (HEADER_DLQ_OFFSET, str(m.offset()).encode()),
            (HEADER_DLQ_TIMESTAMP, str(ts if ts_type else -1).encode()),
        ]
        log.warning("dead-lettered", extra={"reason": exc.reason, "error": str(exc)[:200],
                                            "topic": m.topic(), "partition": m.partition(), "offset": m.offset()})

        def ack(reason=exc.reason):
            metrics.DEAD_LETTERED.labels(reason=reason).inc()
            self.summary.dead_lettered[reason] += 1

        return Outgoing(self.settings.dlq_topic, m.value() or b"", m.key(), headers, on_ack=ack)

    def _commit(self, messages: list) -> None:
        last: dict[tuple[str, int], int] = {}
        for m in messages:
            k = (m.topic(), m.partition())
            last[k] = max(last.get(k, -1), m.offset())
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() not in _REBALANCE_ERRORS:
                raise
            # The group moved on while this batch was in flight: its partitions now belong to
            # another member, which re-reads from the last commit. Outputs were acknowledged,
            # so the cost is duplicates, never loss.
            metrics.REBALANCES.labels(kind="commit_lost").inc()
            log.warning("commit refused after a rebalance; the new owner will reprocess",
                        extra={"error": str(exc), "offsets": str([(o.topic, o.partition, o.offset) for o in offsets])})
            return
        for tp in offsets:
            metrics.COMMITTED_OFFSET.labels(topic=tp.topic, partition=str(tp.partition)).set(tp.offset)
        self._update_lag(offsets)

    def _update_lag(self, offsets: list[TopicPartition]) -> None:
        for tp in offsets:
            try:
                _low, high = self.consumer.get_watermark_offsets(tp, timeout=0.5, cached=True)
            except Exception:
                continue
            if high >= 0:
                metrics.CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, high - tp.offset))
