"""The benchmark's CPU accounting counts a process's descendants, keeps a descendant's CPU after
it exits, and gives the CPU of a window, not of the whole run."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from broker.tools.bench_cpu import CpuWatch, cpu_seconds, descendants

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

# A parent that sleeps 0.5 s, then waits on a child that spins for 1 s of CPU and exits, then
# sleeps 1 s more.
PARENT = """
import subprocess, sys, time
time.sleep(0.5)
subprocess.run([sys.executable, "-c", "import time\\nt = time.process_time()\\nwhile time.process_time() - t < 1.0: pass"])
time.sleep(1.0)
"""


def test_window_counts_a_descendant_that_has_exited():
    proc = subprocess.Popen([sys.executable, "-c", PARENT])
    tree, alone = CpuWatch(proc.pid, every_s=0.05).start(), CpuWatch(proc.pid, tree=False, every_s=0.05).start()
    start = time.time()
    proc.wait(30)
    end = time.time()
    tree.stop()
    alone.stop()
    assert 0.9 <= tree.between(start, end) <= 1.6  # the child's second, plus the interpreters' start-up
    assert alone.between(start, end) < 0.6  # the parent itself mostly sleeps
    # the last second the parent only sleeps: its window holds almost nothing
    assert tree.between(end - 0.8, end) < 0.3


def test_readings_of_a_process_and_its_children():
    proc = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; subprocess.run(['sleep', '2'])"])
    try:
        deadline = time.monotonic() + 10
        while not descendants(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(descendants(proc.pid)) == 1
        assert cpu_seconds(proc.pid) >= 0.0
    finally:
        proc.kill()
        proc.wait()
    assert cpu_seconds(proc.pid) is None  # reaped: no reading
    assert CpuWatch(proc.pid).between(0.0, 1.0) != CpuWatch(proc.pid).between(0.0, 1.0)  # NaN without readings
