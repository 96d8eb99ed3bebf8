"""How a pipeline stops: within ``shutdown_deadline_s`` of the request, whatever hangs.

A stop (SIGTERM, SIGINT, or an idle stream) lets the batch in flight finish, then closes:
decoders stopped, producer flushed, consumer group left. Two things bound it:
* the batch in flight: past the deadline the process exits ``EXIT_ABANDONED`` with that
  batch uncommitted (the next owner of its partitions reads it again);
* the close: leaving the group can wait on a rebalance the broker is slow to finish (seen
  once in CI: an idle pipeline that had committed everything did not exit in 180 s). Past
  the deadline the process goes on without it and the group expires the member.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)

EXIT_ABANDONED = 4  # shutdown deadline passed mid-batch: nothing committed for it
PR_SET_PDEATHSIG = 1


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
        closing.start()
        closing.join(max(1.0, left))
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
        return code
