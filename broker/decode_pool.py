"""Decoding in worker processes, so that the next batch decodes while this one is scored.

Avro decoding is Python-object work that holds the GIL, and it is most of what a batch
costs (``alert-broker bench e2e``: decode ~60% of the pipeline's time on ZTF). With
``batch.decode_workers`` > 0 the pipeline hands a batch's message bytes to worker
processes as soon as it has consumed them and scores the previous batch meanwhile; a batch
is split across the workers when there are several. With 0, decoding happens in the
pipeline's own process, one batch after another.

A worker's death (a message that crashes the decoder library, the kernel's OOM killer)
costs that batch a retry in fresh workers, then a message-by-message pass in which the
message that kills a worker is dead-lettered (``decoder_crashed``): the stream goes on.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections import OrderedDict
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import shared_memory

from broker import metrics
from broker.ingest import Decoded, MessageOutcome, assemble, build_decoder, decode_value
from broker.settings import Settings
from broker.shutdown import die_with_parent

log = logging.getLogger(__name__)

# One decoder per worker process: its schema caches live as long as the worker.
_worker: tuple | None = None
SHM_DIR = "/dev/shm"
SHM_RESERVE_BYTES = 16 * 2**20  # left free in /dev/shm for everyone else
SEGMENT_STEP = 2**20  # segments are sized in whole MiB


def _init_worker(settings: Settings, keep_cutouts: bool, parent: int | None = None) -> None:
    global _worker
    # Ctrl-C reaches the whole process group; the pipeline decides when its workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A pipeline killed outright (SIGKILL, the OOM killer) takes its workers with it: an orphan
    # kept ~70 MB and, through the resource tracker it holds open, the batch's segment in
    # /dev/shm (five of each were left by the kill -9 fault test, 2026-12-07).
    die_with_parent()
    if parent is not None and os.getppid() != parent:  # it died before the line above
        os._exit(1)
    _worker = (build_decoder(settings), settings, keep_cutouts)


def _decode_values(values: list[bytes | None]) -> list[MessageOutcome]:
    decoder, settings, keep_cutouts = _worker
    return [decode_value(decoder, v, settings, keep_cutouts) for v in values]


def _decode_shared(name: str, spans: list[tuple[int, int] | None], live: tuple[str, ...] = ()) -> list[MessageOutcome]:
    """The messages of a chunk read from a shared-memory segment (``_SharedChunk``); ``live``:
    the pipeline's segments now, so that mappings of the ones it dropped are closed."""
    segment = _attach(name, live)
    values = [None if span is None else bytes(segment.buf[span[0]:span[1]]) for span in spans]
    return _decode_values(values)


# A worker keeps the segments it has opened mapped: the pipeline reuses them batch after batch
# (``_SegmentPool``), and mapping one afresh costs a page fault per 4 KiB read. A segment the
# pipeline has dropped stays allocated (in /dev/shm's limit) while mapped here: closed at once.
_attached: OrderedDict[str, shared_memory.SharedMemory] = OrderedDict()
ATTACHED_KEEP = 8  # a bound in any case


def _attach(name: str, live: tuple[str, ...]) -> shared_memory.SharedMemory:
    for gone in [n for n in _attached if n != name and n not in live]:
        _attached.pop(gone).close()
    segment = _attached.pop(name, None) or shared_memory.SharedMemory(name=name)
    _attached[name] = segment  # the newest last
    while len(_attached) > ATTACHED_KEEP:
        _attached.popitem(last=False)[1].close()
    return segment


class _SharedChunk:
    """A chunk's message bytes in one shared-memory segment, so that a worker reads them in
    place. Pickled through a pipe instead (one copy into the pickle, two through the kernel,
    one out), LSST's ~136 KB messages made two workers slower than none: the pipeline
    process's queue thread spent its time copying (``bench e2e``: LSST consume+decode 2,638
    alerts/s with two workers against 3,724 in process). The segment comes from the pool and
    goes back to it once the chunk's result is in."""

    def __init__(self, values: list[bytes | None], segment: shared_memory.SharedMemory, pool: "_SegmentPool"):
        self.segment, self.pool = segment, pool
        self.spans: list[tuple[int, int] | None] = []
        pos, buf = 0, segment.buf
        for v in values:
            if v is None:
                self.spans.append(None)
                continue
            buf[pos:pos + len(v)] = v
            self.spans.append((pos, pos + len(v)))
            pos += len(v)
        del buf

    def release(self) -> None:
        if self.segment is not None:
            self.pool.give_back(self.segment)
            self.segment = None


class _SegmentPool:
    """Shared-memory segments kept for later batches. The first write into a fresh segment
    costs a page fault and a zeroed page per 4 KiB (ZTF alerts, ~41 KB: 23 us per message into
    a fresh segment, 4 us into one written before; under the pipeline's load the fresh
    segments took a quarter of its main process's GIL time, py-spy --gil). A chunk takes the
    smallest free segment it fits in, else a new one with a little room to spare; at most
    ``keep`` wait free (the smallest go first), and all are unlinked at close."""

    def __init__(self, keep: int):
        self.keep = keep
        self.free: list[shared_memory.SharedMemory] = []
        self.live: dict[str, shared_memory.SharedMemory] = {}  # free or in use, by name

    def take(self, needed: int) -> shared_memory.SharedMemory | None:
        """A segment of at least ``needed`` bytes, or None: no room in /dev/shm for a new one."""
        fits = [s for s in self.free if s.size >= needed]
        if fits:
            segment = min(fits, key=lambda s: s.size)
            self.free.remove(segment)
            return segment
        size = -(-max(needed * 9 // 8, 1) // SEGMENT_STEP) * SEGMENT_STEP  # the next batch may be larger
        if not _shared_memory_room(size):
            return None
        segment = shared_memory.SharedMemory(create=True, size=size)
        self.live[segment.name] = segment
        return segment

    def give_back(self, segment: shared_memory.SharedMemory) -> None:
        self.free.append(segment)
        self.free.sort(key=lambda s: s.size)
        while len(self.free) > self.keep:
            self._unlink(self.free.pop(0))

    def names(self) -> tuple[str, ...]:
        return tuple(self.live)

    def close(self) -> None:
        for segment in self.free:
            self._unlink(segment)
        self.free = []

    def _unlink(self, segment: shared_memory.SharedMemory) -> None:
        self.live.pop(segment.name, None)
        try:
            segment.close()
            segment.unlink()
        except (FileNotFoundError, BufferError):  # already gone
            pass


def _shared_memory_room(needed: int) -> bool:
    """Whether /dev/shm has room for ``needed`` bytes with a margin. Writing past a full
    tmpfs is a SIGBUS, not an exception; containers often get 64 MB there (the Helm chart
    mounts a larger one): below the margin a batch goes through the pipe instead."""
    try:
        st = os.statvfs(SHM_DIR)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize >= 2 * needed + SHM_RESERVE_BYTES


def peak_rss_mib(pid: int | str = "self") -> float:
    """A process's peak resident memory in MiB: Linux's VmHWM, which starts afresh at exec
    (``ru_maxrss`` does not: a child started from a 1.5 GB parent reads 1.5 GB); 0 where
    unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return max([0.0] + [int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM")])
    except OSError:
        return 0.0


def _chunks(items: list, n: int) -> list[list]:
    size = -(-len(items) // n)
    return [items[i:i + size] for i in range(0, len(items), size)]


@dataclass
class PendingDecode:
    """A batch whose decoding has started: its messages and the workers' futures."""
    consumed: list
    futures: list[Future]
    dropped: set = field(default_factory=set)  # (topic, partition) revoked meanwhile
    chunks: list = field(default_factory=list)  # _SharedChunk segments to release

    def release(self) -> None:
        for chunk in self.chunks:
            chunk.release()
        self.chunks = []

    def drop(self, partitions) -> None:
        self.dropped.update(partitions)

    def _kept(self, m) -> bool:
        return (m.topic(), m.partition()) not in self.dropped

    @property
    def messages(self) -> list:
        return [m for m in self.consumed if self._kept(m)]

    def assemble(self, outcomes: list[MessageOutcome]) -> Decoded:
        kept = [(m, o) for m, o in zip(self.consumed, outcomes, strict=True) if self._kept(m)]
        return assemble([m for m, _ in kept], [o for _, o in kept])


class DecodePool:
    def __init__(self, settings: Settings, workers: int, keep_cutouts: bool = True):
        self.settings = settings
        self.workers = workers
        self.keep_cutouts = keep_cutouts
        self.decoder = build_decoder(settings)  # in-process: the outputs' and, with 0 workers, the batches'
        self._pool: ProcessPoolExecutor | None = None
        self.worker_peak_rss_mib = 0.0  # read when the workers are closed
        # Message bytes go to workers through /dev/shm while it takes segments (_shared_memory_room
        # finds no room where there is no /dev/shm); off for good once it refuses one.
        self.shared_memory = True
        self._shared: set = set()  # chunks of batches submitted and not yet read back
        # Batch N's chunks are read back just after N+1's are written: a chunk per worker free.
        self._segments = _SegmentPool(keep=workers)
        if workers:
            self._pool = self._new_pool()
            self._pool.submit(_decode_values, []).result()  # start-up (imports) before the first batch

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: the parent holds threads (librdkafka, torch) a fork would copy mid-lock.
        return ProcessPoolExecutor(self.workers, multiprocessing.get_context("spawn"),
                                   initializer=_init_worker,
                                   initargs=(self.settings, self.keep_cutouts, os.getpid()))

    def submit(self, messages: list) -> PendingDecode:
        if self._pool is None or not messages:
            return PendingDecode(messages, [])
        values = [m.value() for m in messages]
        pending = PendingDecode(messages, [])
        for chunk in _chunks(values, self.workers):
            shared = self._share(chunk)
            if shared is None:
                pending.futures.append(self._pool.submit(_decode_values, chunk))
                continue
            pending.chunks.append(shared)
            self._shared.add(shared)
            pending.futures.append(self._pool.submit(_decode_shared, shared.segment.name, shared.spans,
                                                     self._segments.names()))
        return pending

    def _share(self, values: list[bytes | None]) -> "_SharedChunk | None":
        """The chunk in shared memory, or None (no room, or no shared memory here: the pipe)."""
        if not self.shared_memory:
            return None
        try:
            segment = self._segments.take(sum(len(v) for v in values if v))
            return None if segment is None else _SharedChunk(values, segment, self._segments)
        except OSError as exc:
            log.warning("shared memory refused; decoding through the pipe", extra={"error": str(exc)})
            self.shared_memory = False
            return None

    def result(self, pending: PendingDecode) -> Decoded:
        """The decoded batch; raises :class:`~broker.codec.TransientError` for a fault outside
        the messages (the caller waits and calls :meth:`decode` again)."""
        messages = pending.messages
        if self._pool is None or not messages:
            self._release(pending)
            return assemble(messages, [decode_value(self.decoder, m.value(), self.settings, self.keep_cutouts)
                                       for m in messages])
        try:
            return pending.assemble([o for f in pending.futures for o in f.result()])
        except BrokenProcessPool:
            log.error("a decode worker died; decoding the batch again in fresh workers",
                      extra={"messages": len(messages)})
            self._restart()
            return self._decode_isolating(messages)
        except OSError as exc:  # a worker could not open the batch's segment (decode_value raises none)
            log.warning("a decode worker could not read shared memory; decoding through the pipe from now on",
                        extra={"error": str(exc)[:200]})
            self.shared_memory = False
            return self._decode_isolating(messages)
        finally:
            self._release(pending)

    def _release(self, pending: PendingDecode) -> None:
        self._shared.difference_update(pending.chunks)
        pending.release()

    def decode(self, messages: list) -> Decoded:
        return self.result(self.submit(messages))

    def _restart(self) -> None:
        metrics.TRANSIENT_FAULTS.labels(kind="decode_worker").inc()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()

    def _decode_isolating(self, messages: list) -> Decoded:
        """Once more, whole; if a worker dies again, one message at a time, and the message
        that kills its worker is a dead letter."""
        try:
            return assemble(messages, self._pool.submit(_decode_values, [m.value() for m in messages]).result())
        except BrokenProcessPool:
            self._restart()
        outcomes = []
        for m in messages:
            try:
                outcomes += self._pool.submit(_decode_values, [m.value()]).result()
            except BrokenProcessPool:
                self._restart()
                log.error("a message crashed the decoder", extra={"topic": m.topic(), "partition": m.partition(),
                                                                 "offset": m.offset()})
                outcomes.append(MessageOutcome([], dead=("decoder_crashed", "decoding it killed a worker process")))
        return assemble(messages, outcomes)

    def peak_rss_mib(self) -> float:
        """The largest peak RSS among the live workers (0 where unreadable)."""
        return max([0.0] + [peak_rss_mib(pid) for pid in list(getattr(self._pool, "_processes", None) or {})])

    def close(self) -> None:
        if self._pool is not None:
            self.worker_peak_rss_mib = self.peak_rss_mib()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for chunk in self._shared:  # a batch consumed but never read back (stopped, revoked)
            chunk.release()
        self._shared.clear()
        self._segments.close()
