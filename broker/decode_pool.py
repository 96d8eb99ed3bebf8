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
import signal
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from broker import metrics
from broker.ingest import Decoded, MessageOutcome, assemble, build_decoder, decode_value
from broker.settings import Settings

log = logging.getLogger(__name__)

# One decoder per worker process: its schema caches live as long as the worker.
_worker: tuple | None = None


def _init_worker(settings: Settings, keep_cutouts: bool) -> None:
    global _worker
    # Ctrl-C reaches the whole process group; the pipeline decides when its workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker = (build_decoder(settings), settings, keep_cutouts)


def _decode_values(values: list[bytes | None]) -> list[MessageOutcome]:
    decoder, settings, keep_cutouts = _worker
    return [decode_value(decoder, v, settings, keep_cutouts) for v in values]


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
        if workers:
            self._pool = self._new_pool()
            self._pool.submit(_decode_values, []).result()  # start-up (imports) before the first batch

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: the parent holds threads (librdkafka, torch) a fork would copy mid-lock.
        return ProcessPoolExecutor(self.workers, multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(self.settings, self.keep_cutouts))

    def submit(self, messages: list) -> PendingDecode:
        if self._pool is None or not messages:
            return PendingDecode(messages, [])
        values = [m.value() for m in messages]
        return PendingDecode(messages, [self._pool.submit(_decode_values, c) for c in _chunks(values, self.workers)])

    def result(self, pending: PendingDecode) -> Decoded:
        """The decoded batch; raises :class:`~broker.codec.TransientError` for a fault outside
        the messages (the caller waits and calls :meth:`decode` again)."""
        messages = pending.messages
        if self._pool is None or not messages:
            return assemble(messages, [decode_value(self.decoder, m.value(), self.settings, self.keep_cutouts)
                                       for m in messages])
        try:
            return pending.assemble([o for f in pending.futures for o in f.result()])
        except BrokenProcessPool:
            log.error("a decode worker died; decoding the batch again in fresh workers",
                      extra={"messages": len(messages)})
            self._restart()
            return self._decode_isolating(messages)

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
