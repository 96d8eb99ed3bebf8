"""What one batch publishes: an annotation per alert, filtered copies, dead letters.

Building an output never raises for one alert: an annotation that cannot be encoded
becomes a dead letter (``annotation_failed``) so its alert is still accounted for.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from broker import metrics
from broker.annotations import (
    ANNOTATION_SCHEMA_ID, BROKER_VERSION, RouteCondition, annotation_headers, encode_annotation,
    encode_annotation_container, filter_output,
)
from broker.batch import AlertBatch
from broker.codec import DecodeError, Decoder
from broker.output_formats import reframe
from broker.kafka_io import (
    HEADER_DLQ_ERROR, HEADER_DLQ_OFFSET, HEADER_DLQ_ORIGINAL_BYTES, HEADER_DLQ_PARTITION,
    HEADER_DLQ_REASON, HEADER_DLQ_TIMESTAMP, HEADER_DLQ_TOPIC, Outgoing,
)
from broker.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    consumed: int = 0
    annotated: int = 0
    dead_lettered: Counter = field(default_factory=Counter)
    routed: Counter = field(default_factory=Counter)
    scored: Counter = field(default_factory=Counter)
    nulls: Counter = field(default_factory=Counter)
    batches: int = 0
    seconds: float = 0.0  # the whole run, from start to stop
    processing_seconds: float = 0.0  # inside batches: decode to commit
    join_seconds: float | None = None  # from start to the group's first share
    first_message_at: float | None = None  # wall clock (epoch s): first message consumed
    last_commit_at: float | None = None  # wall clock: the last batch committed
    # Seconds spent waiting for input with nothing to score but exposure runs held open
    # (broker/exposure_runs.py): at a backlog's end, batch.exposure_quiet_s before the last
    # runs are released. Latency, not work: the bench takes it out of the sustained rate.
    holding_seconds: float = 0.0


class OutputBuilder:
    def __init__(self, settings: Settings, filter_names: list[tuple[str, str]], summary: RunSummary,
                 decoder: Decoder | None = None):
        self.settings = settings
        self.filter_names = filter_names  # (name, version) of each loaded filter
        self.routes = [(r.topic, RouteCondition(r.condition), r.format) for r in settings.routes]
        self.decoder = decoder  # re-reads forwarded bytes for the ocf and fink formats
        self.summary = summary
        # The registry's id, set by the pipeline at start-up (None while an unreachable registry is awaited).
        self.annotation_schema_id: int | None = ANNOTATION_SCHEMA_ID

    def annotated(self, batch: AlertBatch, sources: list, results: dict, now_ms: int) -> list[Outgoing]:
        out: list[Outgoing] = []
        if not batch.n:  # every message a dead letter: no filter ran
            return out
        columns = self._as_lists(batch, results)
        for i in range(batch.n):
            src = sources[i]
            try:
                ann = self._annotation(columns, i, src, now_ms)
                value = (encode_annotation_container(ann) if self.settings.annotations_format == "ocf"
                         else encode_annotation(ann, self.annotation_schema_id))
            except Exception as exc:  # a value the annotation schema refuses
                exc = DecodeError("annotation_failed", f"{type(exc).__name__}: {str(exc)[:300]}")
                out.append(self.dead_letter(src, exc, value=batch.raw[i]))
                continue
            key = ann["object_id"].encode() or None
            out.append(Outgoing(self.settings.annotations_topic, value, key,
                                on_ack=self._count_annotated(ann), source=src))
            headers = None
            for topic, cond, fmt in self.routes:
                if cond(ann):
                    headers = headers or annotation_headers(ann)
                    value, route_key = self._in_format(batch.raw[i], fmt)
                    out.append(Outgoing(topic, value, route_key or key, headers,
                                        on_ack=self._count_routed(topic), source=src))
        return out

    def _in_format(self, raw: bytes, fmt: str) -> tuple[bytes, bytes | None]:
        if fmt == "original" or self.decoder is None:
            return raw, None
        try:
            return reframe(raw, fmt, self.decoder)
        except Exception as exc:  # decoded once already, so not expected: keep the original bytes
            log.warning("route format failed; original bytes forwarded", extra={"format": fmt, "error": str(exc)[:200]})
            return raw, None

    def _as_lists(self, batch: AlertBatch, results: dict) -> tuple:
        """The batch's columns and results as Python lists: indexing numpy per alert costs more."""
        scores = {name: (results[name].score.tolist(), results[name].reason, results[name].details or None)
                  for name, _ in self.filter_names}
        return (batch.survey.tolist(), batch.object_id.tolist(), batch.alert_id.tolist(), batch.schema_version,
                scores)

    def _annotation(self, columns: tuple, i: int, src, now_ms: int) -> dict:
        survey, object_id, alert_id, schema_version, scores = columns
        ts_type, ts = src.timestamp()
        return {
            "survey": str(survey[i]),
            "object_id": str(object_id[i]),
            "alert_id": int(alert_id[i]),
            "schema_version": str(schema_version[i]),
            "source_topic": src.topic(),
            "source_partition": src.partition(),
            "source_offset": src.offset(),
            "kafka_timestamp_ms": ts if ts_type and ts > 0 else None,
            "processed_at_ms": now_ms,
            "broker_version": BROKER_VERSION,
            "filters": {
                name: filter_output(scores[name][0][i], version, scores[name][1][i],
                                    scores[name][2][i] if scores[name][2] else None)
                for name, version in self.filter_names
            },
        }

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

    def dead_letter(self, m, exc: DecodeError, value: bytes | None = None) -> Outgoing:
        """The original bytes (cut to ``max_dead_letter_bytes``) with the reason in headers."""
        ts_type, ts = m.timestamp()
        value = m.value() if value is None else value
        value = value or b""
        cap = self.settings.limits.max_dead_letter_bytes
        headers = [(k, v) for k, v in (m.headers() or []) if not k.startswith("alert-broker.dlq.")]
        headers += [
            (HEADER_DLQ_REASON, exc.reason.encode()),
            (HEADER_DLQ_ERROR, str(exc)[:1000].encode()),
            (HEADER_DLQ_TOPIC, m.topic().encode()),
            (HEADER_DLQ_PARTITION, str(m.partition()).encode()),
            (HEADER_DLQ_OFFSET, str(m.offset()).encode()),
            (HEADER_DLQ_TIMESTAMP, str(ts if ts_type else -1).encode()),
        ]
        if len(value) > cap:  # the whole message stays in the input topic at that offset
            headers.append((HEADER_DLQ_ORIGINAL_BYTES, str(len(value)).encode()))
            value = value[:cap]
        log.warning("dead-lettered", extra={"reason": exc.reason, "error": str(exc)[:200],
                                            "topic": m.topic(), "partition": m.partition(), "offset": m.offset()})

        def ack(reason=exc.reason):
            metrics.DEAD_LETTERED.labels(reason=reason).inc()
            self.summary.dead_lettered[reason] += 1

        key = m.key()
        return Outgoing(self.settings.dlq_topic, value, key[:1024] if key else key, headers, on_ack=ack)
