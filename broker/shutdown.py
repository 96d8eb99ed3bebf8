"""How a pipeline stops: within ``shutdown_deadline_s`` of the request, whatever hangs.

A stop (SIGTERM, SIGINT, or an idle stream) lets the batch in flight finish, then closes:
decoders stopped, producer flushed, consumer group left. Two things bound it:
* the batch in flight: past the deadline the process exits ``EXIT_ABANDONED`` with that
  batch uncommitted (the next owner of its partitions reads it again);
* the close: leaving the group can wait on a rebalance the broker is slow to finish (seen
  once in CI: an idle pipeline that had committed everything did not exit in 180 s). Past
  the deadline the process goes on without it and the group expires the member.
Both are Python timers, and a Python timer needs the GIL. A C call that blocks holding it
(confluent-kafka's rebalance callback waiting on librdkafka, #4884: a CI run of 2026-12-07
left a pipeline in it for 20 minutes) would stop them too, so each is backed by one that
needs no GIL (``faulthandler``'s watchdog thread): ``BACKSTOP_GRACE_S`` after the deadline
it writes every thread's stack to stderr and ends the process with status 1.
"""
from __future__ import annotations

import ctypes
import faulthandler
import io
import logging
import os
import signal
import sys
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)

EXIT_ABANDONED = 4  # shutdown deadline passed mid-batch: nothing committed for it
PR_SET_PDEATHSIG = 1
BACKSTOP_GRACE_S = 5.0  # the GIL-free exit comes this long after a Python timer's


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """In a child process: Linux sends it ``sig`` when the thread that started it dies, however
    it dies (SIGKILL, the OOM killer), so no helper outlives the process it serves. Elsewhere
    a no-op: the parent's own stop still closes its children."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    except OSError:  # not Linux
        pass


class Shutdown:
    def __init__(self, deadline_s: float):
        self.deadline_s = deadline_s
        self.requested = False
        self.closed_cleanly = True
        self._by: float | None = None  # monotonic deadline once a stop is requested
        self._abandon_timer: threading.Timer | None = None

    def request(self) -> None:
        """Finish the batch in flight, then close; abandon the batch at the deadline."""
        if self.requested:
            return
        self.requested = True
        log.info("stop requested", extra={"deadline_s": self.deadline_s})
        self._by = time.monotonic() + self.deadline_s
        self._abandon_timer = threading.Timer(self.deadline_s, self._abandon)
        self._abandon_timer.daemon = True
        self._abandon_timer.start()
        backstop(self.deadline_s + BACKSTOP_GRACE_S)

    @staticmethod
    def _abandon() -> None:
        # Nothing uncommitted is lost: the next owner of these partitions reprocesses it.
        log.warning("shutdown deadline passed; abandoning the batch in flight uncommitted")
        logging.shutdown()
        os._exit(EXIT_ABANDONED)

    def close(self, steps: Callable[[], None]) -> bool:
        """Run the closing ``steps`` within what is left of the deadline (all of it after
        an idle stop); False, and the steps left running in a daemon thread, past it."""
        if self._abandon_timer is not None:  # the batch in flight is done: only the close is left
            self._abandon_timer.cancel()
        left = self.deadline_s if self._by is None else self._by - time.monotonic()
        closing = threading.Thread(target=steps, name="close", daemon=True)
        backstop(max(1.0, left) + BACKSTOP_GRACE_S)  # first: once started, the steps may keep the GIL
        closing.start()
        try:
            closing.join(max(1.0, left))
        finally:  # the main thread runs again: the Python deadlines hold from here
            faulthandler.cancel_dump_traceback_later()
        self.closed_cleanly = not closing.is_alive()
        if not self.closed_cleanly:
            log.warning("closing took longer than the shutdown deadline; exiting without it",
                        extra={"deadline_s": self.deadline_s})
        return self.closed_cleanly

    def exit_within_deadline(self, code: int) -> int:
        """The process must end now that everything is committed or given up. A close still
        running would block the interpreter's exit (the client's destructor leaves the group
        too): exit at once. Otherwise exit normally, but at most ``deadline_s`` later (a
        thread or an exit hook that hangs)."""
        def exit_now() -> None:
            logging.shutdown()
            os._exit(code)

        if not self.closed_cleanly:
            exit_now()
        watchdog = threading.Timer(self.deadline_s, exit_now)
        watchdog.daemon = True
        watchdog.start()
        backstop(self.deadline_s + BACKSTOP_GRACE_S)
        return code


def backstop(seconds: float) -> None:
    """End the process ``seconds`` from now, stacks to stderr, whatever holds the GIL then;
    the next call (or ``faulthandler.cancel_dump_traceback_later``) replaces it."""
    stream = sys.__stderr__
    if stream is None:  # no stderr to write the stacks to (pythonw)
        return
    try:
        faulthandler.dump_traceback_later(seconds, exit=True, file=stream)
    except (ValueError, OSError, io.UnsupportedOperation):  # a stderr without a file descriptor
        pass
