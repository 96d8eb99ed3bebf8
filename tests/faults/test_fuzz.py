"""A short mutation-fuzzing run of the decode stage (the long run: ``python -m tests.faults.fuzz``)."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.faults.fuzz import run


def test_short_mutation_run():
    figures = run(3000, seed=1)
    assert figures["slowest_s"] < 1.0 and figures["rss_growth_mb"] < 300
    assert figures["outcomes"].get("decoded", 0) > 0 and len(figures["outcomes"]) > 3


@settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_escape_as_exceptions(data):
    from broker.ingest import build_decoder, decode_messages
    from broker.settings import Settings
    from tests.faults.fuzz import Message

    s = Settings.load(None)
    out = decode_messages(build_decoder(s), [Message(b"Obj\x01" + data), Message(b"\x00" + data)], s)
    assert len(out.alerts) + len(out.dead) >= 2 or out.alerts
