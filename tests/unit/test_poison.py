"""Every poison message becomes a dead letter with its reason (or an annotated alert), in
bounded time and memory, and nothing else escapes the decode stage."""
from __future__ import annotations

import resource
import time

import pytest

from broker.ingest import build_decoder, decode_messages
from broker.settings import Settings
from tests.faults.fuzz import Message as FakeMessage
from tests.faults.poison import ANNOTATED, MAKERS, build, expected


SETTINGS = Settings.load(None)
DECODER = build_decoder(SETTINGS)


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_poison_is_dead_lettered_with_its_reason(kind):
    data = build(kind)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    out = decode_messages(DECODER, [FakeMessage(data)], SETTINGS)
    assert time.perf_counter() - t0 < 5.0
    # Peak memory grows by far less than the GBs these inputs would expand to.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 400_000  # KiB
    if expected(kind) == {ANNOTATED}:
        assert len(out.alerts) == 1 and not out.dead
    else:
        assert not out.alerts and len(out.dead) == 1
        assert out.dead[0][1].reason in expected(kind), out.dead[0][1]


def test_poison_among_good_alerts_costs_only_itself():
    good = build("bad_values")
    msgs = [FakeMessage(build(k), i) for i, k in enumerate(sorted(MAKERS))] + [FakeMessage(good, 99)]
    out = decode_messages(DECODER, msgs, SETTINGS)
    assert len(out.alerts) + len(out.dead) == len(msgs)
    assert [m.offset() for m in out.source] == [sorted(MAKERS).index("bad_values"), 99]


def test_other_surveys_are_named_in_the_reason():
    out = decode_messages(DECODER, [FakeMessage(build("pgir"))], SETTINGS)
    assert "pgir.alert" in str(out.dead[0][1])


def test_a_batch_of_dead_letters_only_has_no_annotations():
    """The pipeline runs no filter on a batch whose every message is a dead letter (the
    results are empty); building its outputs must not look for them (a KeyError once)."""
    from broker.batch import AlertBatch
    from broker.outputs import OutputBuilder, RunSummary

    out = decode_messages(DECODER, [FakeMessage(build(kind)) for kind in sorted(MAKERS)
                                    if expected(kind) != {ANNOTATED}][:3], SETTINGS)
    assert out.dead and not out.alerts
    builder = OutputBuilder(SETTINGS, [("badamp", "1"), ("anomaly", "1")], RunSummary(), DECODER)
    assert builder.annotated(AlertBatch(out.alerts, out.forward), out.source, {}, 0) == []
