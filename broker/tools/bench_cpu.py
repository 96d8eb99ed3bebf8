"""CPU seconds a process and its descendants spent in a window of wall-clock time.

For ``bench e2e``: on a small machine a rate can be bound by the cores, not by the code (the
embedded broker, the pipeline and the load generator share them), and the table says so with
figures: CPU per alert of the pipeline and of the broker, and how many cores were busy.

A thread reads ``/proc`` every ``every_s`` seconds and keeps each process's cumulative CPU
(user + system, every thread), so a descendant that exits (a decode worker) still counts up to
its last reading; the CPU in a window is interpolated between readings. Linux only: elsewhere
every reading is empty and the figures come out as NaN.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of ``pid`` (all its threads) so far, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime: fields 14 and 15 of stat(5)


def descendants(pid: int) -> list[int]:
    """``pid``'s children, their children, and so on (read from each thread's children list)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


class CpuWatch:
    """Cumulative CPU of ``pid`` (with its descendants when ``tree``) against wall-clock time."""

    def __init__(self, pid: int, tree: bool = True, every_s: float = 0.2):
        self.pid, self.tree, self.every_s = pid, tree, every_s
        self._last: dict[int, float] = {}  # each process's latest reading
        self._times: list[float] = []
        self._cpu: list[float] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"cpu-watch-{pid}")

    def start(self) -> "CpuWatch":
        self._read()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()
        self._thread.join(5)
        self._read()

    def _read(self) -> None:
        for p in [self.pid] + (descendants(self.pid) if self.tree else []):
            c = cpu_seconds(p)
            if c is not None:
                self._last[p] = c
        if self._last:
            self._times.append(time.time())
            self._cpu.append(sum(self._last.values()))

    def _run(self) -> None:
        while not self._done.wait(self.every_s):
            self._read()

    def between(self, t0: float | None, t1: float | None) -> float:
        """CPU seconds spent from ``t0`` to ``t1`` (epoch seconds); NaN without readings."""
        if len(self._times) < 2 or t0 is None or t1 is None:
            return float("nan")
        a, b = np.interp([t0, t1], self._times, self._cpu)
        return float(b - a)
