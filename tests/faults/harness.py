"""What the fault suite is built from: pipelines as subprocesses, and the ledger.

The ledger reads the input topic, the annotations and the dead-letter topic, and checks
that every input message (partition, offset) came out as at least one annotation or a dead
letter; it counts duplicates (outputs for the same input more than once).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from broker.annotations import decode_annotation
from broker.tools.embedded import free_port
from tests.integration.conftest import read_topic

REPO = Path(__file__).resolve().parents[2]


@dataclass
class LedgerLine:
    scenario: str
    inputs: int
    annotated: int
    dead_lettered: int
    lost: int
    duplicates: int
    restarts: int = 0

    def __str__(self) -> str:
        return (f"ledger {self.scenario}: inputs {self.inputs}, annotated {self.annotated}, "
                f"dead-lettered {self.dead_lettered}, lost {self.lost}, duplicates {self.duplicates}, "
                f"restarts {self.restarts}")


def ledger(scenario: str, bootstrap: str, topic: str, ann: str, dlq: str, restarts: int = 0) -> tuple[LedgerLine, list, list]:
    inputs = {(m.partition(), m.offset()) for m in read_topic(bootstrap, topic)}
    annotations = [decode_annotation(m.value()) for m in read_topic(bootstrap, ann)]
    dead = read_topic(bootstrap, dlq)
    ann_keys = Counter((a["source_partition"], a["source_offset"], a["alert_id"]) for a in annotations)
    dlq_keys = Counter((int(dict(m.headers())["alert-broker.dlq.partition"]),
                        int(dict(m.headers())["alert-broker.dlq.offset"])) for m in dead)
    covered = {(p, o) for p, o, _ in ann_keys} | set(dlq_keys)
    line = LedgerLine(scenario, len(inputs), len(annotations), len(dead), len(inputs - covered),
                      sum(c - 1 for c in ann_keys.values()) + sum(c - 1 for c in dlq_keys.values()), restarts)
    print(line, flush=True)
    return line, annotations, dead


class PipelineProc:
    """``alert-broker run`` in a subprocess; its JSON log lines are collected as they come."""

    def __init__(self, bootstrap: str, topic: str, group: str, ann: str, dlq: str, config: Path | None = None,
                 filters: str = "quality", env: dict | None = None, idle_s: float = 4.0, metrics: bool = False):
        self.metrics_port = free_port() if metrics else None
        cmd = [sys.executable, "-m", "broker.tools.cli", "run", "--bootstrap", bootstrap, "--input-topic", topic,
               "--group", group, "--annotations-topic", ann, "--dlq-topic", dlq, "--filters", filters,
               "--exit-when-idle", str(idle_s)]
        if config:
            cmd += ["--config", str(config)]
        if self.metrics_port:
            cmd += ["--metrics-port", str(self.metrics_port)]
        full_env = dict(os.environ, ALERT_BROKER__KAFKA__SESSION_TIMEOUT_MS="6000",
                        ALERT_BROKER__BATCH__MAX_ALERTS="40", ALERT_BROKER__BATCH__MAX_WAIT_MS="100",
                        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        full_env.update(env or {})
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                     env=full_env, cwd=REPO)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))

    def events(self, msg: str) -> list[dict]:
        out = []
        for line in list(self.lines):
            if f'"msg": "{msg}"' in line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def assigned_at(self) -> float | None:
        """When (epoch seconds) this member was last given partitions; None if it holds none now."""
        assigned, revoked = self.events("partitions assigned"), self.events("partitions revoked")
        if not assigned or (revoked and revoked[-1]["ts"] >= assigned[-1]["ts"]):
            return None
        return assigned[-1]["ts"]

    def assigned_for(self) -> float:
        """Seconds since this member was last given partitions, or -1 if it holds none now."""
        at = self.assigned_at()
        return -1.0 if at is None else time.time() - at

    def wait_for(self, text: str, n: int = 1, timeout_s: float = 120.0) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.count(text) >= n:
                return True
            if self.proc.poll() is not None:
                return self.count(text) >= n
            time.sleep(0.05)
        return False

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout_s: float = 180.0) -> int:
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"pipeline still running after {timeout_s}s:\n{self.log_tail(6000)}") from None
        self._reader.join(5)
        return rc

    def log_tail(self, n: int = 3000) -> str:
        return "".join(self.lines)[-n:]

    def http(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=3) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return -1


def where_lost(bootstrap: str, topic: str, group: str, ann: str, procs: list[PipelineProc]) -> str:
    """For a failed ledger: per partition, the group's committed offset, the last input and
    the inputs with no annotation; then each member's partition events."""
    from confluent_kafka import Consumer, TopicPartition

    inputs = read_topic(bootstrap, topic)
    annotated = {(a["source_partition"], a["source_offset"]) for a in
                 (decode_annotation(m.value()) for m in read_topic(bootstrap, ann))}
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = sorted({m.partition() for m in inputs})
        committed = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in parts], 10)}
    finally:
        c.close()
    out = []
    for part in parts:
        missing = sorted(m.offset() for m in inputs if m.partition() == part and (part, m.offset()) not in annotated)
        last = max(m.offset() for m in inputs if m.partition() == part)
        span = f"{missing[0]}..{missing[-1]} ({len(missing)})" if missing else "none"
        out.append(f"partition {part}: committed {committed.get(part)}, last input {last}, unannotated {span}")
    for i, p in enumerate(procs):
        events = [(e["ts"], e["msg"], e.get("partitions")) for e in p.events("partitions assigned") + p.events("partitions revoked")]
        out.append(f"member {i} (rc {p.proc.returncode}): " + "; ".join(
            f"{ts:.1f} {msg.split()[1]} {sorted(q for _, q in parts_ or [])}" for ts, msg, parts_ in sorted(events)))
    return "\n".join(out)


def supervise(make, max_restarts: int = 10, timeout_s: float = 300.0) -> tuple[int, list[PipelineProc]]:
    """Run pipelines until one exits 0, restarting on a non-zero exit as Kubernetes would."""
    procs = []
    for _ in range(max_restarts + 1):
        p = make()
        procs.append(p)
        if p.wait(timeout_s) == 0:
            return len(procs) - 1, procs
    raise AssertionError(f"no clean exit after {max_restarts} restarts:\n{procs[-1].log_tail()}")


def kill9(p: PipelineProc) -> None:
    p.signal(signal.SIGKILL)
    p.wait(30)
