from __future__ import annotations

import json

import pytest

from broker.annotations import (
    HEADER_ANNOTATION, RouteCondition, annotation_headers, decode_annotation, encode_annotation,
    filter_output,
)


def _ann(score=0.8, reason=None):
    return {
        "survey": "ztf", "object_id": "ZTF18abc", "alert_id": 123, "schema_version": "3.3",
        "source_topic": "t", "source_partition": 0, "source_offset": 5, "kafka_timestamp_ms": None,
        "processed_at_ms": 1, "broker_version": "0.1.0",
        "filters": {"quality": filter_output(score, "1.0.0", reason, {"failed": "rb", "n": 2})},
    }


def test_annotation_round_trip():
    ann = _ann()
    data = encode_annotation(ann)
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == 1_000_001
    assert decode_annotation(data) == ann


def test_null_score_carries_reason():
    out = filter_output(float("nan"), "1", "missing:rb", None)
    assert out["score"] is None and out["reason"] == "missing:rb"
    assert filter_output(float("nan"), "1", None, None)["reason"] == "unscored"


@pytest.mark.parametrize("cond,expected", [
    ("quality.score > 0.5", True),
    ("quality.score > 0.9", False),
    ("quality.score >= 0.8 and survey == 'ztf'", True),
    ("survey == 'lsst' or quality.score < 0.1", False),
    ("not quality.score > 0.9", True),
    ("0.5 < quality.score <= 0.8", True),
    ("transit.score > 0.5", False),  # filter not present: null, comparisons are false
])
def test_route_conditions(cond, expected):
    assert RouteCondition(cond)(_ann()) is expected


def test_null_scores_never_route():
    assert RouteCondition("quality.score < 2")(_ann(float("nan"), "missing:rb")) is False


@pytest.mark.parametrize("bad", ["__import__('os')", "quality.score + 1 > 2", "[x for x in y]", "f(1)"])
def test_route_conditions_reject_code(bad):
    with pytest.raises(ValueError):
        RouteCondition(bad)


def test_headers_carry_annotation_json():
    h = dict(annotation_headers(_ann()))
    assert h["alert-broker.alert_id"] == b"123"
    assert json.loads(h[HEADER_ANNOTATION])["filters"]["quality"]["score"] == 0.8
