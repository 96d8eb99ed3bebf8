"""Exposure runs: the company an alert keeps is a function of the input, not of batching."""
from __future__ import annotations

import numpy as np
from confluent_kafka import TIMESTAMP_CREATE_TIME, Message

from broker.batch import NormalisedAlert
from broker.exposure_runs import ExposureRuns
from broker.ingest import Decoded


def _stream(exposures: list[int], partition: int = 0, start: int = 0, written_s: float = 0.0) -> tuple[list, Decoded]:
    messages, decoded = [], Decoded()
    for k, e in enumerate(exposures):
        m = Message(topic="in", partition=partition, offset=start + k, value=b"",
                    timestamp=(TIMESTAMP_CREATE_TIME, int(written_s * 1000)))
        alert = NormalisedAlert("ztf", "o", partition * 10**6 + start + k, "4.02",
                                {"exposure_id": float(e) if e >= 0 else np.nan}, "r")
        messages.append(m)
        decoded.alerts.append(alert)
        decoded.forward.append(b"")
        decoded.source.append(m)
    return messages, decoded


def _groups(released) -> set[frozenset]:
    """Which alert ids were grouped together (group ids themselves are arbitrary)."""
    out: dict[int, set] = {}
    for a, g in zip(released.decoded.alerts, released.groups):
        out.setdefault(int(g) if g >= 0 else -a.alert_id - 1, set()).add(a.alert_id)
    return {frozenset(v) for v in out.values()}


def test_last_run_is_held_until_the_next_exposure_and_commits_stop_before_it():
    runs = ExposureRuns(True, quiet_s=2.0, max_hold_s=60.0, max_alerts=1000)
    messages, decoded = _stream([1] * 30 + [2] * 10)
    runs.add(decoded, messages, now=0.0)
    first = runs.release(now=0.0)
    assert len(first.decoded.alerts) == 30 and runs.held == 10
    assert [(tp.partition, tp.offset) for tp in runs.commit_offsets()] == [(0, 30)]
    messages, decoded = _stream([3], start=40)
    runs.add(decoded, messages, now=1.0)
    second = runs.release(now=1.0)
    assert len(second.decoded.alerts) == 10 and runs.held == 1
    assert len(set(second.groups)) == 1 and set(second.groups).isdisjoint(first.groups)
    assert [tp.offset for tp in runs.commit_offsets()] == [40]


def test_quiet_partition_old_run_or_large_run_is_released():
    runs = ExposureRuns(True, quiet_s=2.0, max_hold_s=60.0, max_alerts=1000)
    messages, decoded = _stream([1] * 5)
    runs.add(decoded, messages, now=0.0)
    assert not runs.release(now=100.0 - 99.0).decoded.alerts  # processing time is not quiet
    runs.waited(2.5)
    assert len(runs.release(now=1.0).decoded.alerts) == 5 and runs.held == 0
    assert [tp.offset for tp in runs.commit_offsets()] == [5]

    runs = ExposureRuns(True, quiet_s=2.0, max_hold_s=10.0, max_alerts=3)
    messages, decoded = _stream([7] * 4)
    runs.add(decoded, messages, now=0.0)
    assert len(runs.release(now=0.0).decoded.alerts) == 4  # more than max_alerts


def test_partition_end_long_after_the_last_alert_was_written_closes_the_run():
    runs = ExposureRuns(True, quiet_s=2.0, max_hold_s=60.0, max_alerts=1000)
    messages, decoded = _stream([1] * 3 + [2] * 4, written_s=1000.0)
    runs.reached_end([(("in", 0), 7)], wall_s=1000.5)  # the end seen while the batch decodes
    runs.add(decoded, messages, now=0.0)
    assert len(runs.release(now=0.0).decoded.alerts) == 3  # written 0.5 s before: may still grow
    runs.reached_end([(("in", 0), 7)], wall_s=1002.0)
    assert len(runs.release(now=0.0).decoded.alerts) == 4 and runs.held == 0
    assert [tp.offset for tp in runs.commit_offsets()] == [7]


def test_an_end_that_is_not_right_after_the_run_or_a_message_without_timestamp_closes_nothing():
    runs = ExposureRuns(True, quiet_s=2.0, max_hold_s=60.0, max_alerts=1000)
    messages, decoded = _stream([5] * 4, written_s=10.0)
    runs.reached_end([(("in", 0), 3)], wall_s=500.0)  # an end before the last alert: stale
    runs.reached_end([(("in", 1), 4)], wall_s=500.0)  # another partition's end
    runs.add(decoded, messages, now=0.0)
    assert not runs.release(now=0.0).decoded.alerts and runs.held == 4

    runs = ExposureRuns(True, quiet_s=2.0, max_hold_s=60.0, max_alerts=1000)
    messages, decoded = _stream([5] * 4)
    messages = [Message(topic="in", partition=0, offset=m.offset(), value=b"") for m in messages]
    decoded.source = messages
    runs.add(decoded, messages, now=0.0)
    runs.reached_end([(("in", 0), 4)], wall_s=500.0)
    assert not runs.release(now=0.0).decoded.alerts and runs.held == 4


def test_disabled_releases_everything_and_forget_drops_a_revoked_partition():
    runs = ExposureRuns(False, quiet_s=2.0, max_hold_s=60.0, max_alerts=1000)
    messages, decoded = _stream([1, 1, 2])
    runs.add(decoded, messages, now=0.0)
    out = runs.release(now=0.0)
    assert len(out.decoded.alerts) == 3 and out.groups is None

    runs = ExposureRuns(True, quiet_s=2.0, max_hold_s=60.0, max_alerts=1000)
    messages, decoded = _stream([1, 1, 2, 2], partition=3)
    runs.add(decoded, messages, now=0.0)
    runs.release(now=0.0)
    runs.forget([("in", 3)])
    assert runs.held == 0 and runs.commit_offsets() == []


def test_groups_do_not_depend_on_where_batches_are_cut_or_how_partitions_interleave():
    rng = np.random.default_rng(5)
    streams = {p: list(np.repeat(np.arange(p * 100, p * 100 + 6), rng.integers(1, 40, 6))) + [-1, p * 100 + 99]
               for p in range(3)}

    def run(cuts_seed: int | None) -> set[frozenset]:
        runs = ExposureRuns(True, quiet_s=2.0, max_hold_s=1e9, max_alerts=10**6)
        queues = []
        for p, exposures in streams.items():
            msgs, dec = _stream(exposures, partition=p)
            items = list(zip(msgs, dec.alerts))
            if cuts_seed is None:
                queues.append([items])
                continue
            cuts = sorted(np.random.default_rng(cuts_seed + p).choice(np.arange(1, len(items)), 5, replace=False))
            queues.append([items[a:b] for a, b in zip([0, *cuts], [*cuts, len(items)])])
        r = np.random.default_rng(cuts_seed or 0)
        pieces = []  # partitions interleaved at random, each in its own order
        while any(queues):
            left = [q for q in queues if q]
            pieces.append(left[r.integers(len(left))].pop(0))
        groups: set[frozenset] = set()
        for piece in pieces:
            d = Decoded(alerts=[a for _, a in piece], forward=[b""] * len(piece), source=[m for m, _ in piece])
            runs.add(d, [m for m, _ in piece], now=0.0)
            groups |= _groups(runs.release(now=0.0))
        runs.waited(10.0)
        return groups | _groups(runs.release(now=0.0))

    whole = run(None)
    assert sum(len(g) for g in whole) == sum(len(s) for s in streams.values())
    for seed in range(5):
        assert run(seed) == whole
