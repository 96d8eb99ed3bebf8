"""consume -> decode -> filters -> route -> produce -> commit, at least once.

The only module that knows the order of the steps. A batch's offsets are committed only
after every output of that batch (annotations, filtered copies, dead letters) is
acknowledged by Kafka. Faults are sorted by whose they are:
* a message's own (undecodable, too large, an alert a filter fails on): a dead letter or a
  null score with a reason, and the stream goes on;
* the world's, for a while (schema registry unreachable, Kafka unreachable): consumption
  pauses, ``/readyz`` says why, the same batch is tried again with backoff;
* final for the process (an output Kafka refused after librdkafka's retries, or no
  acknowledgement within ``timeouts.delivery_s``): :class:`DeliveryFailed`, exit non-zero
  without committing, and the batch is reprocessed after the restart (duplicates, never loss).
Batches overlap by one step: N+1 is consumed and handed to the decode workers before N is
scored, delivered and committed; a stop or revocation meanwhile costs N+1 a re-read.
"""
from __future__ import annotations

import gc
import logging
import signal
import time
from collections import Counter

import numpy as np
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from broker import metrics
from broker.annotations import register_annotation_schema
from broker.batch import AlertBatch
from broker.codec import DecodeError, TransientError
from broker.exposure_runs import ExposureRuns
from broker.filter_runner import FilterRunner
from broker.decode_pool import DecodePool, PendingDecode
from broker.ingest import Decoded
from broker.lag import publish_lag, unread
from broker.kafka_io import (PER_MESSAGE_ERRORS, DeliveryTimeout, DeliveryTracker, leave_group, make_consumer,
                             make_producer, sort_consumed)
from broker.outputs import OutputBuilder, RunSummary
from broker.schema_store import RegistryRefused
from broker.settings import Settings
from broker.shutdown import Shutdown

log = logging.getLogger(__name__)

_REBALANCE_ERRORS = {
    KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS, KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError._NO_OFFSET, KafkaError._STATE,
}
EXIT_DELIVERY_FAILED = 3  # outputs not acknowledged: nothing committed, restart reprocesses
MIN_LIVENESS_S = 60.0  # /healthz never fails sooner than this after the loop last turned


class DeliveryFailed(RuntimeError):
    pass


class StartupError(RuntimeError):
    pass


class Pipeline:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.filters = FilterRunner(settings.enabled_filters(), settings.resolved_device(), settings.filter_options,
                                    deadline_s=settings.timeouts.filter_s, threads=settings.resolved_compute_threads())
        self.decoding = DecodePool(settings, settings.batch.decode_workers,
                                   keep_cutouts=any(f.impl.cutouts for f in self.filters.filters))
        self.decoder = self.decoding.decoder
        self._pending: PendingDecode | None = None  # consumed, decoding, scored next
        self._behind_since: float | None = None  # idle with messages unread, since
        self.summary = RunSummary()
        b = settings.batch
        self.runs = ExposureRuns(any(f.impl.exposure_context for f in self.filters.filters),
                                 b.exposure_quiet_s, b.exposure_max_hold_s, b.exposure_max_alerts)
        self.outputs = OutputBuilder(settings, [(f.name, f.version) for f in self.filters.filters], self.summary,
                                     self.decoder)
        self.shutdown = Shutdown(settings.shutdown_deadline_s)
        self._assigned: set[tuple[str, int]] = set()
        self._joined = False  # the idle clock starts once the group has given us a share
        self._last_activity = self._started = time.monotonic()
        self.last_loop = time.monotonic()  # for /healthz
        self.fault: str | None = None  # a transient fault in progress, for /readyz
        self._kafka_ok_at = time.monotonic()
        self.consumer = make_consumer(settings.kafka, settings.group_id)
        self.producer = make_producer(settings.kafka, settings.timeouts.delivery_s,
                                      settings.limits.producer_queue_messages)
        self.tracker = DeliveryTracker(self.producer)

    # -- lifecycle -------------------------------------------------------------------------
    def request_stop(self, *_args) -> None:
        """Finish the batch in flight, flush, commit, leave the group (broker/shutdown.py)."""
        self.shutdown.request()

    @property
    def _stop(self) -> bool:
        return self.shutdown.requested

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    @property
    def assigned(self) -> set[tuple[str, int]]:
        return set(self._assigned)

    def _on_assign(self, consumer, partitions) -> None:
        metrics.REBALANCES.labels(kind="assign").inc()
        if self.summary.join_seconds is None:
            self.summary.join_seconds = time.monotonic() - self._started
        self._joined = True
        self._assigned.update((p.topic, p.partition) for p in partitions)
        metrics.ASSIGNED_PARTITIONS.set(len(self._assigned))
        self._last_activity = time.monotonic()
        log.info("partitions assigned", extra={"partitions": sorted(self._assigned)})

    def _on_revoke(self, consumer, partitions) -> None:
        # Revocation runs inside poll. A batch is committed before the poll after next; the
        # batch consumed but not yet scored, and one waiting out a transient fault, are
        # dropped uncommitted for the revoked partitions.
        metrics.REBALANCES.labels(kind="revoke").inc()
        self._assigned.difference_update((p.topic, p.partition) for p in partitions)
        metrics.ASSIGNED_PARTITIONS.set(len(self._assigned))
        self.runs.forget([(p.topic, p.partition) for p in partitions])
        if self._pending is not None:  # consumed, not yet scored: the next owner reads it again
            self._pending.drop((p.topic, p.partition) for p in partitions)
        self._last_activity = time.monotonic()
        log.info("partitions revoked", extra={"partitions": sorted((p.topic, p.partition) for p in partitions)})

    def _heartbeat(self) -> None:
        self.last_loop = time.monotonic()

    @property
    def liveness_budget_s(self) -> float:
        """How long the loop may go without turning before /healthz fails: the longest single
        wait it can be in (one filter call, one delivery), plus a margin, and never below 60 s."""
        t = self.settings.timeouts
        return max(MIN_LIVENESS_S, max(t.filter_s, t.delivery_s) + 30.0)

    def check_kafka(self) -> None:
        """Fail at start-up, in one clear line, when Kafka does not answer."""
        s = self.settings
        try:
            self.consumer.list_topics(timeout=s.timeouts.startup_s)
        except KafkaException as exc:
            raise StartupError(f"kafka.bootstrap {s.kafka.bootstrap}: no answer within "
                               f"{s.timeouts.startup_s:.0f}s ({exc.args[0].str()})") from None

    def register_annotation_schema(self) -> int:
        """The id that frames annotations: configured, else the registry's for the subject
        ``<annotations_topic>-value`` (registered now), else the fixed one. A registry that
        refuses is a :class:`StartupError`; one that does not answer a :class:`TransientError`
        (the first batch then waits for it, paused, like any registry outage)."""
        reg = self.settings.schema_registry
        if reg.annotation_schema_id is not None:
            return reg.annotation_schema_id
        if not reg.url:
            return self.outputs.annotation_schema_id
        try:
            return register_annotation_schema(reg, f"{self.settings.annotations_topic}-value",
                                              self.settings.timeouts.startup_s)
        except RegistryRefused as exc:
            raise StartupError(f"schema_registry: {exc}; set schema_registry.annotation_schema_id to the id "
                               "of the annotation schema registered by hand") from None

    def run(self) -> RunSummary:
        s = self.settings
        start = self._started = time.monotonic()
        self.check_kafka()
        # Start-up's objects (torch, xgboost, models) are never garbage: full collections skip them.
        gc.collect()
        gc.freeze()
        try:
            self.outputs.annotation_schema_id = self.register_annotation_schema()
        except TransientError as exc:
            log.warning("schema registry unreachable; the annotation schema is registered before the first "
                        "batch is produced", extra={"error": str(exc)})
            self.outputs.annotation_schema_id = None
        self.consumer.subscribe(list(s.input_topics), on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_revoke)
        try:
            while not self._stop:
                self.last_loop = time.monotonic()
                t0 = time.perf_counter()
                # With a batch pending, take only what has already arrived: it waits for no one.
                wait_s = 0.0 if self._pending is not None else s.batch.max_wait_ms / 1000
                consumed = self.consumer.consume(s.batch.max_alerts, wait_s)
                waited = time.perf_counter() - t0
                messages, ends = sort_consumed(consumed)
                self.runs.waited(waited)
                self.runs.reached_end(ends, time.time())
                if not messages and self._pending is None and self.runs.held:  # an end event is no message
                    self.summary.holding_seconds += waited
                metrics.STAGE_SECONDS.labels(stage="poll").observe(waited)
                incoming = self.decoding.submit(messages) if messages else None  # decodes meanwhile
                if messages:
                    self._kafka_ok_at, self._behind_since = time.monotonic(), None
                    self._kafka_reachable()
                    if self.summary.first_message_at is None:
                        self.summary.first_message_at = time.time()
                pending, self._pending = self._pending, incoming
                if pending is not None or self.runs.held:
                    t1 = time.monotonic()
                    if not messages:  # Kafka may have stalled meanwhile
                        self._probe_kafka()
                    self.process(pending)
                    self._last_activity = time.monotonic()
                    self.summary.processing_seconds += self._last_activity - t1
                    continue
                if incoming is not None:
                    continue
                self._probe_kafka()
                if self._idle_for() > (s.exit_when_idle_s if s.exit_when_idle_s is not None else float("inf")):
                    if self._caught_up():
                        log.info("inputs idle, stopping", extra={"idle_s": s.exit_when_idle_s})
                        break
        finally:
            self.close()
            gc.unfreeze()  # for a caller that goes on (the demo, tests)
            self.summary.seconds = time.monotonic() - start
        return self.summary

    def _probe_kafka(self) -> None:
        """While idle, ask for metadata now and then: /readyz must see a broker that stalls."""
        if time.monotonic() - self._kafka_ok_at < self.settings.timeouts.broker_probe_s:
            return
        try:
            self.consumer.list_topics(self.settings.input_topics[0], timeout=2.0)
        except KafkaException as exc:
            if self.fault is None or self.fault.startswith("kafka"):
                self.fault = f"kafka unreachable: {exc.args[0].str()}"
            self._kafka_ok_at = time.monotonic() - self.settings.timeouts.broker_probe_s + 1.0
            return
        self._kafka_ok_at = time.monotonic()
        self._kafka_reachable()

    def _kafka_reachable(self) -> None:
        if self.fault and self.fault.startswith("kafka"):
            log.info("kafka reachable again")
            self.fault = None

    def _idle_for(self) -> float:
        """Seconds with partitions but no new messages. Waiting for the group (a first join, or
        a share after a revocation) counts only past ``timeouts.group_wait_s``: leaving mid-
        rebalance disturbs the others, but a join that never completes must not keep
        ``--exit-when-idle`` from ending the process."""
        waited = time.monotonic() - self._last_activity
        return waited if self._assigned else max(0.0, waited - self.settings.timeouts.group_wait_s)

    def _caught_up(self) -> bool:
        """Nothing left unread in the partitions held, or no progress for ``group_wait_s`` while
        behind (a fetch that never starts; a transactional input's last commit marker)."""
        behind = unread(self.consumer, self._assigned)
        if not behind:
            return True
        if self._behind_since is None:
            self._behind_since = time.monotonic()
        given_up = time.monotonic() - self._behind_since > self.settings.timeouts.group_wait_s
        log.warning("idle with messages left unread" + ("; stopping anyway" if given_up else "; reading on"),
                    extra={"unread": {f"{t}/{p}": n for (t, p), n in sorted(behind.items())}})
        self._last_activity = time.monotonic()  # look again after another idle period
        return given_up

    def close(self) -> None:
        # A batch consumed but not scored when the loop stopped stays uncommitted: the next
        # owner of its partitions reads it again.
        def steps() -> None:
            self.decoding.close()
            self.producer.flush(min(5.0, self.settings.shutdown_deadline_s))
            leave_group(self.consumer, lambda: bool(self._assigned), min(5.0, self.settings.shutdown_deadline_s / 3))
            self.consumer.close()  # partitions move on at once

        self.shutdown.close(steps)

    # -- one batch -------------------------------------------------------------------------
    def process(self, pending: PendingDecode | None) -> None:
        """One batch: the ``pending`` messages plus any exposure runs held from earlier ones."""
        messages = pending.messages if pending is not None else []
        for topic, count in Counter(m.topic() for m in messages).items():
            metrics.CONSUMED.labels(topic=topic).inc(count)
        metrics.BATCH_SIZE.observe(len(messages))
        t0 = time.perf_counter()
        decoded = self._decode_or_wait(pending) if messages else Decoded()
        if decoded is None:
            return  # stopped or revoked while waiting: uncommitted, the owner reprocesses
        self.runs.add(decoded, messages, time.monotonic())
        released = self.runs.release(time.monotonic())
        metrics.HELD_ALERTS.set(self.runs.held)
        decoded = released.decoded
        batch = AlertBatch(decoded.alerts, decoded.forward)
        if released.groups is not None:
            batch.exposure_group = released.groups
        for survey, count in Counter(batch.survey.tolist()).items():
            metrics.DECODED.labels(survey=survey).inc(count)
        metrics.STAGE_SECONDS.labels(stage="decode").observe(time.perf_counter() - t0)

        results = self.filters.run(batch, heartbeat=self._heartbeat) if batch.n else {}
        self._heartbeat()
        outgoing = self.outputs.annotated(batch, decoded.source, results, int(time.time() * 1000))
        outgoing += [self.outputs.dead_letter(m, exc) for m, exc in decoded.dead]
        t0 = time.perf_counter()
        self._heartbeat()
        self._deliver(outgoing)
        metrics.STAGE_SECONDS.labels(stage="produce").observe(time.perf_counter() - t0)
        acked = time.time()
        done = {id(m): m for m in decoded.source} | {id(m): m for m, _ in decoded.dead}
        stamps = [ts for ts_type, ts in (m.timestamp() for m in done.values()) if ts_type and ts > 0]
        metrics.observe_many(metrics.END_TO_END_SECONDS, np.maximum(0.0, acked - np.asarray(stamps, float) / 1000))

        t0 = time.perf_counter()
        self._commit(self.runs.commit_offsets())
        metrics.STAGE_SECONDS.labels(stage="commit").observe(time.perf_counter() - t0)
        self.summary.consumed += len(messages)
        if not (batch.n or decoded.dead):
            return
        metrics.BATCHES.inc()
        self.summary.batches += 1
        self.summary.last_commit_at = time.time()
        log.info("batch committed", extra={"messages": len(messages), "alerts": batch.n,
                                           "dead_letters": len(decoded.dead), "held": self.runs.held})

    def _decode_or_wait(self, pending: PendingDecode) -> Decoded | None:
        """The batch decoded; on a transient fault pause consumption and try again with backoff."""
        delay = self.settings.timeouts.backoff_initial_s
        partitions = {(m.topic(), m.partition()) for m in pending.messages}
        while True:
            try:
                decoded = self.decoding.result(pending)
                if self.outputs.annotation_schema_id is None:  # unreachable at start-up
                    self.outputs.annotation_schema_id = self.register_annotation_schema()
            except TransientError as exc:
                metrics.TRANSIENT_FAULTS.labels(kind="schema_registry").inc()
                log.warning("transient fault; pausing", extra={"error": str(exc), "retry_in_s": delay})
                self.fault = f"schema registry: {exc}"
                if not self._wait_paused(delay) or not partitions <= self._assigned:
                    log.warning("batch dropped uncommitted while waiting", extra={"stopping": self._stop})
                    return None
                delay = min(delay * 2, self.settings.timeouts.backoff_max_s)
                pending = self.decoding.submit(pending.messages)
                continue
            if self.fault and self.fault.startswith("schema registry"):
                log.info("transient fault over", extra={"fault": self.fault})
                self.fault = None
            return decoded

    def _wait_paused(self, seconds: float) -> bool:
        """Sleep with every partition paused, still serving the group; False if stopping."""
        assignment = self.consumer.assignment()
        self.consumer.pause(assignment)
        try:
            end = time.monotonic() + seconds
            while time.monotonic() < end and not self._stop:
                self.last_loop = time.monotonic()  # waiting on purpose is not a stalled loop
                m = self.consumer.poll(min(0.2, max(0.0, end - time.monotonic())))
                if m is not None and m.error() is None:  # fetched before the pause: read it again later
                    self.consumer.seek(TopicPartition(m.topic(), m.partition(), m.offset()))
        finally:
            self.consumer.resume(self.consumer.assignment())
        return not self._stop

    def _deliver(self, outgoing: list) -> None:
        """Every output acknowledged, or :class:`DeliveryFailed`. An output Kafka refuses for
        itself (too large for its topic) is replaced by a dead letter of its input."""
        deadline_s = self.settings.timeouts.delivery_s
        try:
            failed = self.tracker.send_all(outgoing, timeout_s=deadline_s)
            refused = [(o, e) for o, e in failed if e.code() in PER_MESSAGE_ERRORS and o.source is not None
                       and o.topic != self.settings.dlq_topic]
            if len(refused) == len(failed) and refused:
                letters = [self.outputs.dead_letter(o.source, DecodeError("output_refused", f"{o.topic}: {e.str()}"))
                           for o, e in refused]
                failed = self.tracker.send_all(letters, timeout_s=deadline_s)
        except DeliveryTimeout as exc:
            self.fault = f"giving up: {exc}"  # not ready while the process closes
            raise DeliveryFailed(f"{exc}; offsets not committed") from None
        if failed:
            self.fault = f"giving up: {len(failed)} outputs not acknowledged"
            raise DeliveryFailed(f"{len(failed)} outputs not acknowledged ({failed[0][1].str()}); "
                                 "offsets not committed")

    def _commit(self, offsets: list[TopicPartition]) -> None:
        if not offsets:
            return
        try:
            with self.tracker.blocked():
                self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() not in _REBALANCE_ERRORS:
                # Kafka unreachable for a moment: the next batch's commit of these partitions
                # covers this one; after a crash meanwhile the cost is duplicates, not loss.
                metrics.TRANSIENT_FAULTS.labels(kind="commit").inc()
                log.warning("commit failed; the next commit covers it", extra={"error": str(exc)})
                return
            # The group moved on while this batch was in flight: its partitions now belong to
            # another member, which re-reads from the last commit. Outputs were acknowledged,
            # so the cost is duplicates, never loss.
            metrics.REBALANCES.labels(kind="commit_lost").inc()
            log.warning("commit refused after a rebalance; the new owner will reprocess",
                        extra={"error": str(exc), "offsets": str([(o.topic, o.partition, o.offset) for o in offsets])})
            return
        self._kafka_ok_at = time.monotonic()
        for tp in offsets:
            metrics.COMMITTED_OFFSET.labels(topic=tp.topic, partition=str(tp.partition)).set(tp.offset)
        publish_lag(self.consumer, offsets)

