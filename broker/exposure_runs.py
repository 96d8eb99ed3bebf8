"""Whole exposure runs, for filters whose scores depend on the other alerts of an exposure.

A failing amplifier is seen in the company an alert keeps: how many detections its readout
channel produced in the same exposure compared with the others. If that company were "what
this process happened to have seen", the same alert would score differently with one pod or
four, with another partition assignment, or on a replay. So the company is defined by the
input alone: a *run* is the alerts of one exposure that follow one another in one partition,
and a filter that declares ``exposure_context`` sees each run whole, as one group.

The last run of each partition may still be growing, so it is held back (neither scored nor
committed) until it is closed by one of:
* an alert of another exposure after it in the same partition: the run is complete, and its
  content depends on the partition's content only (a backlog and a replay always end here);
* the partition staying quiet for ``batch.exposure_quiet_s`` of waiting for messages (a
  live stream between exposures; time spent processing does not count, so a slow batch
  never makes a backlogged partition look quiet), or the run being held longer than ``batch.exposure_max_hold_s``, or holding
  more than ``batch.exposure_max_alerts``: the run is what had arrived, and an exposure whose
  alerts pause mid-way for longer than that is split in two;
* the consumer reaching the partition's end right after the run (librdkafka's end-of-partition
  event) at least ``batch.exposure_quiet_s`` after the run's last alert was written (its Kafka
  timestamp): nothing followed it for that long, the same quiet measured on the writer's clock.
  A backlog's last run is read long after it was written, so it is scored at once instead of
  after ``exposure_quiet_s`` more of waiting (``bench e2e``: the end-of-backlog wait). A writer
  clock behind ours by more than the quiet time could close a run early; an NTP-synchronised
  survey is well inside that. So could a writer whose queue backs up (timestamps taken at its
  produce call, seconds before the broker has the alert): the bench's load generator stamped a
  10,048-alert visit within 2.2 s that the co-located broker took in over 9.8 s, and the visit
  was scored in pieces as it arrived.
What a run cannot see: the same exposure's alerts in other partitions. A topic keyed by
exposure id (or a single partition) gives each run the whole exposure.
Committed offsets never pass a held alert, so after a crash, a stop or a rebalance the next
owner reads the held run again: holding costs latency, never alerts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from confluent_kafka import TopicPartition

from broker.ingest import Decoded

TP = tuple[str, int]


@dataclass
class _Held:
    alert: object
    forward: bytes
    source: object
    key: tuple | None
    since: float


@dataclass
class Released:
    decoded: Decoded
    groups: np.ndarray | None  # exposure group per alert; None: the batch's default grouping


class ExposureRuns:
    def __init__(self, enabled: bool, quiet_s: float, max_hold_s: float, max_alerts: int):
        self.enabled = enabled and quiet_s > 0
        self.quiet_s, self.max_hold_s, self.max_alerts = quiet_s, max_hold_s, max_alerts
        self._pending: dict[TP, list[_Held]] = {}
        self._seen_at: dict[TP, float] = {}  # on the waiting clock
        self._waited = 0.0  # seconds spent waiting for messages, summed
        self._next_offset: dict[TP, int] = {}  # one past the last offset consumed
        self._committed: dict[TP, int] = {}
        self._dead: list[tuple] = []
        self._next_group = 0
        self._end: dict[TP, tuple[int, float]] = {}  # partition end reached: (offset, wall clock s)

    @property
    def held(self) -> int:
        return sum(len(v) for v in self._pending.values())

    def waited(self, seconds: float) -> None:
        """The consumer spent ``seconds`` waiting for messages."""
        self._waited += seconds

    def reached_end(self, ends: list[tuple[TP, int]], wall_s: float) -> None:
        """The consumer read these partitions to their ends (the next offset to be written) at
        ``wall_s``. Their messages may reach :meth:`add` a batch later (the next batch decodes
        while this one is scored): the offset says which message an end comes after."""
        for tp, offset in ends:
            self._end[tp] = (offset, wall_s)

    def add(self, decoded: Decoded, messages: list, now: float) -> None:
        for m in messages:
            tp = (m.topic(), m.partition())
            self._seen_at[tp] = self._waited
            self._next_offset[tp] = max(self._next_offset.get(tp, 0), m.offset() + 1)
        for alert, forward, m in zip(decoded.alerts, decoded.forward, decoded.source):
            e = alert.columns.get("exposure_id", np.nan)
            key = (alert.survey, float(e)) if np.isfinite(e) else None
            self._pending.setdefault((m.topic(), m.partition()), []).append(_Held(alert, forward, m, key, now))
        self._dead.extend(decoded.dead)  # a dead letter needs no company: out at once

    def release(self, now: float) -> Released:
        """Everything but the still-open last run of each partition, grouped by run."""
        out, groups = Decoded(dead=self._dead), []
        self._dead = []
        for tp, items in list(self._pending.items()):
            cut = self._open_run_start(tp, items, now)
            run_key, group = object(), -1
            for h in items[:cut]:
                if h.key != run_key:
                    run_key, group = h.key, self._next_group
                    self._next_group += 1
                out.alerts.append(h.alert)
                out.forward.append(h.forward)
                out.source.append(h.source)
                groups.append(group if h.key is not None else -1)
            if cut < len(items):
                self._pending[tp] = items[cut:]
            else:
                del self._pending[tp]
        return Released(out, np.array(groups, dtype=np.int64) if self.enabled else None)

    def _open_run_start(self, tp: TP, items: list[_Held], now: float) -> int:
        """Index where the held (still open) run of this partition starts; len(items) if none."""
        last = items[-1].key
        if not self.enabled or last is None or self._waited - self._seen_at.get(tp, self._waited) >= self.quiet_s:
            return len(items)
        if self._quiet_at_end(tp, items[-1].source):
            return len(items)
        start = len(items)
        while start > 0 and items[start - 1].key == last:
            start -= 1
        if now - items[start].since >= self.max_hold_s or len(items) - start >= self.max_alerts:
            return len(items)
        return start

    def _quiet_at_end(self, tp: TP, last_message) -> bool:
        """The partition ended right after ``last_message``, written ``quiet_s`` or more before."""
        end = self._end.get(tp)
        if end is None or end[0] != last_message.offset() + 1:
            return False
        kind, written_ms = last_message.timestamp()
        return bool(kind) and written_ms > 0 and end[1] - written_ms / 1000 >= self.quiet_s

    def commit_offsets(self) -> list[TopicPartition]:
        """Per partition, the first held alert's offset or one past the last consumed; only
        those that moved since the last call."""
        out = []
        for tp, nxt in self._next_offset.items():
            held = self._pending.get(tp)
            offset = min(h.source.offset() for h in held) if held else nxt
            if offset > self._committed.get(tp, -1):
                out.append(TopicPartition(tp[0], tp[1], offset))
                self._committed[tp] = offset
        return out

    def forget(self, partitions: list[TP]) -> None:
        """Partitions revoked: their held alerts are the next owner's to read again."""
        for tp in partitions:
            for d in (self._pending, self._seen_at, self._next_offset, self._committed, self._end):
                d.pop(tp, None)
