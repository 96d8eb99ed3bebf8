"""`alert-broker kafka` leaves no Tansu behind, however it is stopped."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from broker.tools.embedded import free_port


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_kafka_command_stops_tansu(sig, tmp_path):
    port = free_port()
    # A file, not a pipe: Tansu logs to the same stdout, and a full pipe nobody reads would
    # block both processes.
    out = (tmp_path / "stdout").open("w")
    cli = subprocess.Popen([sys.executable, "-m", "broker.tools.cli", "kafka", "--port", str(port)],
                           stdout=out, stderr=subprocess.DEVNULL, text=True)
    try:
        end = time.monotonic() + 30
        while "tansu listening on" not in (tmp_path / "stdout").read_text() and time.monotonic() < end:
            time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        tansu = _children(cli.pid)
        assert tansu and all(_alive(p) for p in tansu)
        cli.send_signal(sig)
        cli.wait(20)
        end = time.monotonic() + 10
        while any(_alive(p) for p in tansu) and time.monotonic() < end:
            time.sleep(0.1)
        assert not any(_alive(p) for p in tansu), f"tansu {tansu} survived {sig!r}"
    finally:
        if cli.poll() is None:
            cli.kill()
        out.close()
