"""The shutdown deadline holds even when a C call keeps the GIL (broker/shutdown.py)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from broker.shutdown import BACKSTOP_GRACE_S
from tests.conftest import REPO

# A close step that blocks in C holding the GIL, as confluent-kafka's rebalance callback did
# when librdkafka never answered its unassign (#4884): ctypes.PyDLL calls keep the GIL, so no
# Python thread, timer or signal handler runs until it returns.
HANGING_CLOSE = """
import ctypes
from broker.shutdown import Shutdown
hold_the_gil = ctypes.PyDLL(None).sleep
Shutdown(deadline_s={deadline}).close(lambda: hold_the_gil(120))
print("returned", flush=True)
"""


def _run(code: str, timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)),
                         capture_output=True, text=True, timeout=timeout)
    return run, time.monotonic() - t0


def test_a_close_that_hangs_holding_the_gil_still_ends_the_process_past_the_deadline():
    run, took = _run(HANGING_CLOSE.format(deadline=1.0), timeout=60)
    assert run.returncode == 1 and "returned" not in run.stdout
    assert took < 1.0 + BACKSTOP_GRACE_S + 20  # the interpreter's start-up on a busy machine
    # The operator gets every thread's stack: what hung, and where.
    assert "Timeout" in run.stderr and "close" in run.stderr


def test_a_close_that_finishes_leaves_no_exit_armed():
    code = """
import time
from broker.shutdown import Shutdown, BACKSTOP_GRACE_S
s = Shutdown(deadline_s=0.5)
assert s.close(lambda: None)
time.sleep(0.5 + BACKSTOP_GRACE_S + 1)
print("still running", flush=True)
"""
    run, _ = _run(code, timeout=60)
    assert run.returncode == 0 and "still running" in run.stdout, run.stderr
