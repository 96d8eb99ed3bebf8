"""`alert-broker demo` from a clean directory: every filter scores, the transit filter finds
K2-3 b in the real K2 light curve replayed as an alert history, and the pictures are written."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration


def test_demo_shows_every_filter_at_work(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-m", "broker.tools.cli", "demo"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    for name in ("anomaly", "badamp", "quality", "transit"):
        scored = re.search(rf"^{name}: (\d+) scored", out, flags=re.M)
        assert scored and int(scored.group(1)) > 0, name
    k2_3 = re.search(r"^\s+(\d\.\d+)\s+lsst 900000000000000000\s+flux=total, period_days=(\d+\.\d+)", out, flags=re.M)
    assert k2_3 and float(k2_3.group(1)) >= 0.5 and abs(float(k2_3.group(2)) - 10.05) < 0.05, out[-2000:]
    assert "alerts/s while processing" in out and "seconds to join the consumer group" in out
    for png in ("demo_scores.png", "demo_best_transit.png"):
        assert (tmp_path / "demo-output" / png).stat().st_size > 5000
