"""/healthz and /readyz decisions, on a stand-in for the pipeline's state."""
from __future__ import annotations

import time
from types import SimpleNamespace

from confluent_kafka import Producer

from broker.http import HealthServer
from broker.kafka_io import DeliveryTracker
from broker.settings import Settings


def _server(**state) -> HealthServer:
    server = object.__new__(HealthServer)  # the decisions only, no socket
    pipeline = SimpleNamespace(last_loop=time.monotonic(), fault=None, assigned={("t", 0)},
                               filters=SimpleNamespace(failing_for=lambda: 0.0, filters=[]),
                               liveness_budget_s=90.0, tracker=SimpleNamespace(waiting_for=lambda: 0.0),
                               settings=Settings.load(None))
    pipeline.__dict__.update(state)
    server.pipeline = pipeline
    return server


def test_liveness_allows_the_longest_single_wait():
    assert _server(last_loop=time.monotonic() - 80).health()[0]  # within a 90 s budget
    assert not _server(last_loop=time.monotonic() - 100).health()[0]


def test_the_budget_covers_a_filter_call_and_a_delivery():
    from broker.pipeline import Pipeline

    budget = Pipeline.liveness_budget_s.fget(SimpleNamespace(settings=Settings.load(
        None, timeouts={"filter_s": 120, "delivery_s": 30})))
    assert budget == 150.0


def test_readiness_reports_a_fault_first():
    ok, why = _server(fault="schema registry: unreachable").ready()
    assert not ok and why.startswith("schema registry")
    assert not _server(assigned=set()).ready()[0]
    assert _server().ready()[0]


def test_outputs_waiting_past_the_probe_interval_make_it_unready():
    """Kafka stalls while a batch's outputs wait for acks: the loop is busy, not idle, so no
    metadata probe runs; the wait itself must turn /readyz (probe interval 5 s by default)."""
    assert _server(tracker=SimpleNamespace(waiting_for=lambda: 1.0)).ready()[0]
    ok, why = _server(tracker=SimpleNamespace(waiting_for=lambda: 6.0)).ready()
    assert not ok and "waiting on Kafka" in why


def test_a_synchronous_commit_counts_as_waiting_on_kafka():
    """A stopped broker holds a synchronous commit for minutes (measured: over 120 s with the
    embedded broker under SIGSTOP); the commit runs inside ``blocked()`` so /readyz sees it."""
    tracker = DeliveryTracker(Producer({"bootstrap.servers": "127.0.0.1:1"}))
    assert tracker.waiting_for() == 0.0
    with tracker.blocked():
        time.sleep(0.05)
        assert tracker.waiting_for() >= 0.05
    assert tracker.waiting_for() == 0.0
