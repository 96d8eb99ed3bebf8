"""How far the consumer is behind its input: the lag gauge after each commit, and, before
``--exit-when-idle`` ends the process, whether it has really read what it was given.

Idle is not the same as caught up: a member whose fetch has not started yet (its share
just moved to it; a broker slow to answer) sees no messages for a while with a backlog
waiting. Exiting then leaves that backlog to whoever comes next, or to no one.

The embedded broker (Tansu) reports a high watermark one past the *first* record of the
last record batch, so there lag reads low by up to a batch; Apache Kafka's is exact.
"""
from __future__ import annotations

import logging

from confluent_kafka import OFFSET_INVALID, KafkaException, TopicPartition

from broker import metrics

log = logging.getLogger(__name__)


def publish_lag(consumer, committed: list[TopicPartition]) -> None:
    """The lag gauge for just-committed partitions, from the locally cached high watermarks."""
    for tp in committed:
        try:
            _low, high = consumer.get_watermark_offsets(tp, timeout=0.5, cached=True)
        except Exception:  # a gauge never stops a commit
            continue
        if high >= 0:
            metrics.CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, high - tp.offset))


def unread(consumer, assigned: set[tuple[str, int]], timeout_s: float = 2.0) -> dict[tuple[str, int], int | None]:
    """Per assigned partition with something left to read: how many messages (None when
    Kafka did not say). Where no fetch has started, reading begins at the committed
    offset, or at the earliest one when nothing was committed (auto.offset.reset)."""
    tps = [TopicPartition(t, p) for t, p in sorted(assigned)]
    if not tps:
        return {}
    try:
        positions = {(tp.topic, tp.partition): tp.offset for tp in consumer.position(tps)}
        if any(o == OFFSET_INVALID for o in positions.values()):
            for tp in consumer.committed(tps, timeout=timeout_s):
                if positions[(tp.topic, tp.partition)] == OFFSET_INVALID:
                    positions[(tp.topic, tp.partition)] = tp.offset
    except KafkaException as exc:
        log.warning("could not read the consumer's positions", extra={"error": str(exc)})
        return {k: None for k in assigned}
    out: dict[tuple[str, int], int | None] = {}
    for (topic, partition), start in positions.items():
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
        except KafkaException:
            out[(topic, partition)] = None
            continue
        left = high - (start if start >= 0 else low)
        if left > 0:
            out[(topic, partition)] = left
    return out
