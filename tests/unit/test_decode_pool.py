"""Decoding in worker processes gives exactly what decoding in the pipeline's process gives,
survives a worker's death, and leaves out the partitions revoked while a batch decoded."""
from __future__ import annotations

import os
import signal

import pytest

from broker.decode_pool import DecodePool
from broker.ingest import build_decoder, decode_messages
from broker.settings import Settings
from broker.tools.replay import iter_payloads, messages_for
from tests.faults.fuzz import Message
from tests.faults.poison import MAKERS, build

FIXTURES = "tests/fixtures/alerts"


class PartitionedMessage(Message):
    def __init__(self, value: bytes, partition: int):
        super().__init__(value)
        self._partition = partition

    def partition(self):
        return self._partition


@pytest.fixture(scope="module")
def batch() -> list[PartitionedMessage]:
    """Real alerts of both surveys and every poison message, spread over two partitions."""
    values = [v for _, data in iter_payloads([FIXTURES]) for v in messages_for(data, build_decoder(Settings.load(None)))]
    values += [build(kind) for kind in sorted(MAKERS) if kind != "huge"]
    return [PartitionedMessage(v, i % 2) for i, v in enumerate(values)]


def _summary(decoded) -> tuple:
    return ([(a.survey, a.alert_id, len(a.lc_time)) for a in decoded.alerts], decoded.forward,
            [m.partition() for m in decoded.source], [(m.value(), e.reason) for m, e in decoded.dead])


@pytest.fixture(scope="module")
def pool():
    pool = DecodePool(Settings.load(None), workers=2)
    yield pool
    pool.close()


def test_workers_decode_as_the_pipeline_process_does(batch, pool):
    settings = Settings.load(None)
    local = decode_messages(build_decoder(settings), batch, settings)
    assert local.alerts and local.dead  # the batch has both kinds
    assert _summary(pool.decode(batch)) == _summary(local)


def test_a_dead_worker_costs_a_retry_not_the_batch(batch, pool):
    pending = pool.submit(batch)
    for pid in list(pool._pool._processes):  # what the kernel's OOM killer would do
        os.kill(pid, signal.SIGKILL)
    settings = Settings.load(None)
    assert _summary(pool.result(pending)) == _summary(decode_messages(build_decoder(settings), batch, settings))
    assert pool.decode(batch[:3]).alerts  # the fresh workers go on


def test_revoked_partitions_leave_the_pending_batch(batch, pool):
    pending = pool.submit(batch)
    pending.drop([("fuzz", 1)])
    decoded = pool.result(pending)
    out = {id(m) for m in decoded.source} | {id(m) for m, _ in decoded.dead}
    assert out == {id(m) for m in batch if m.partition() == 0}


def test_stamps_are_size_checked_then_dropped_when_no_filter_reads_them(batch):
    settings = Settings.load(None, limits={"max_cutout_bytes": 2000})
    kept = decode_messages(build_decoder(settings), batch, settings)
    pool = DecodePool(settings, workers=1, keep_cutouts=False)
    try:
        dropped = pool.decode(batch)
    finally:
        pool.close()
    assert any(e.reason == "cutout_too_large" for _, e in kept.dead)
    assert _summary(dropped)[0] == _summary(kept)[0] and _summary(dropped)[3] == _summary(kept)[3]
    assert any(a.cutouts for a in kept.alerts) and not any(a.cutouts for a in dropped.alerts)
    assert pool.worker_peak_rss_mib > 0


def _segments() -> set[str]:
    return {n for n in os.listdir("/dev/shm") if not n.startswith("sem.")} if os.path.isdir("/dev/shm") else set()


def test_message_bytes_reach_workers_through_shared_memory_reused_batch_after_batch(batch):
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here: the pipe carries the messages")
    settings = Settings.load(None)
    expected = _summary(decode_messages(build_decoder(settings), batch, settings))
    before = _segments()
    pool = DecodePool(settings, workers=2)
    try:
        pending = pool.submit(batch)
        assert len(pending.chunks) == 2  # one segment per worker's chunk
        created = _segments() - before
        assert len(created) == 2
        assert _summary(pool.result(pending)) == expected
        assert not pool._shared and len(pool._segments.free) == 2  # read back: free for the next batch
        for _ in range(3):  # later batches write into the same segments; the workers keep them mapped
            assert _summary(pool.decode(batch)) == expected
        assert pool.decode(batch[::2]).alerts
        assert _segments() - before == created
    finally:
        pool.close()
    assert _segments() == before  # unlinked at close


def test_a_larger_batch_gets_a_larger_segment_and_the_free_ones_stay_bounded(batch):
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here: the pipe carries the messages")
    before = _segments()
    pool = DecodePool(Settings.load(None), workers=1)
    try:
        small = pool.submit(batch[:2])
        pool.result(small)
        first = pool._segments.free[0].size
        big = batch * (first // sum(len(m.value()) for m in batch) + 2)  # past the first segment's size
        pendings = [pool.submit(big) for _ in range(6)]  # more in flight than the pool keeps free
        for p in pendings:
            assert pool.result(p).alerts
        assert len(pool._segments.free) == pool._segments.keep == 1  # a chunk per worker waits free
        assert pool._segments.free[0].size > first  # the small one was dropped first
        assert len(_segments() - before) == 1
        assert pool.decode(batch[:3]).alerts
        # The worker has closed its mappings of the segments dropped meanwhile: they no longer
        # hold memory in /dev/shm.
        mapped = {line.rsplit("/", 1)[-1].split()[0] for pid in pool._pool._processes
                  for line in open(f"/proc/{pid}/maps") if "/psm_" in line}
        assert mapped and mapped <= set(pool._segments.names())
    finally:
        pool.close()
    assert _segments() == before


def test_without_room_in_shared_memory_the_pipe_carries_the_batch(batch, monkeypatch):
    import broker.decode_pool as decode_pool

    monkeypatch.setattr(decode_pool, "SHM_RESERVE_BYTES", 2**62)  # never room for a new segment
    settings = Settings.load(None)
    pool = DecodePool(settings, workers=1)
    try:
        pending = pool.submit(batch)
        assert not pending.chunks
        assert _summary(pool.result(pending)) == _summary(decode_messages(build_decoder(settings), batch, settings))
    finally:
        pool.close()


def test_a_batch_never_read_back_leaves_no_segment_behind(batch):
    before = _segments()
    pool = DecodePool(Settings.load(None), workers=1)
    pool.submit(batch)  # stopped before its turn: consumed, never scored
    pool.close()
    assert _segments() == before


def test_a_segment_a_worker_cannot_open_costs_a_pass_through_the_pipe(batch):
    from broker.decode_pool import PendingDecode, _decode_shared

    settings = Settings.load(None)
    pool = DecodePool(settings, workers=1)
    try:
        gone = PendingDecode(batch, [pool._pool.submit(_decode_shared, "psm_never_created", [(0, 1)] * len(batch))])
        assert _summary(pool.result(gone)) == _summary(decode_messages(build_decoder(settings), batch, settings))
        assert not pool.shared_memory and not pool.submit(batch[:3]).chunks  # the pipe from now on
    finally:
        pool.close()


_KILLED_PARENT = """
import json, sys, time
from broker.decode_pool import DecodePool
from broker.ingest import build_decoder
from broker.settings import Settings
from broker.tools.replay import iter_payloads, messages_for
from tests.unit.test_decode_pool import PartitionedMessage
settings = Settings.load(None)
values = [v for _, d in iter_payloads([sys.argv[1]]) for v in messages_for(d, build_decoder(settings))]
pool = DecodePool(settings, workers=1)
pool.submit([PartitionedMessage(v, 0) for v in values])  # a segment in /dev/shm, never read back
print(json.dumps([list(pool._pool._processes), list(pool._segments.names())]), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False


def test_a_pipeline_killed_outright_takes_its_decode_workers_and_segments_with_it():
    """SIGKILL (the OOM killer) runs no cleanup in the pipeline: its workers must not live on,
    holding memory and, through the resource tracker, the batch's shared-memory segment."""
    import json
    import subprocess
    import sys
    import time

    if not os.path.isdir("/proc"):
        pytest.skip("Linux only: the parent-death signal")
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_PARENT, FIXTURES], stdout=subprocess.PIPE, text=True)
    try:
        workers, segments = json.loads(proc.stdout.readline())
        assert workers and all(_alive(pid) for pid in workers)
    finally:
        proc.kill()
        proc.wait(10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (any(_alive(pid) for pid in workers)
                                           or any(os.path.exists(f"/dev/shm/{s}") for s in segments)):
        time.sleep(0.2)
    assert not [pid for pid in workers if _alive(pid)]
    assert not [s for s in segments if os.path.exists(f"/dev/shm/{s}")]
