from __future__ import annotations

import json

import numpy as np
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


@pytest.mark.parametrize("cond", [
    "not quality.score >= 1", "not quality.score < 0", "not (quality.score > 0.5 and survey == 'ztf')",
    "quality.score > 0.5 or not quality.score > 0.5", "-quality.score < 0", "quality.score != 0.3",
])
def test_a_null_score_never_matches_in_any_form(cond):
    assert RouteCondition(cond)(_ann(float("nan"), "missing:rb")) is False


def test_values_of_another_type_are_unknown_at_run_time():
    ann = _ann()
    ann["filters"]["quality"]["details"]["failed"] = "rb"
    assert RouteCondition("quality.details.failed > 1")(ann) is False
    assert RouteCondition("not quality.details.failed > 1")(ann) is False


@pytest.mark.parametrize("bad,message", [
    ("quality.score > 'high'", "compares a number with a string"),
    ("survey > 3", "compares a number with a string"),
    ("transit.score > 0.5", "unknown name 'transit.score'"),
    ("quality.scor > 0.5", "unknown name 'quality.scor'"),
    ("quality.score > True", "not a number or a string"),
    ("quality.score >", "does not parse"),
])
def test_rules_are_type_checked_when_the_config_loads(bad, message):
    from broker.settings import Settings

    with pytest.raises(ValueError, match=message):
        RouteCondition(bad, filters=["quality"])
    with pytest.raises(ValueError, match=r"routes\.0|routes\[0\]"):
        Settings.load(None, filters=["quality"], routes=[{"topic": "t", "condition": bad}])


def test_annotation_values_are_finite():
    out = filter_output(float("inf"), "1", None, {"a": np.float32(2.5), "b": np.int64(3), "c": float("nan"), "d": True})
    assert out["score"] is None and out["reason"] == "unscored"
    assert out["details"] == {"a": 2.5, "b": 3.0, "c": "nan", "d": "True"}
    assert decode_annotation(encode_annotation({**_ann(), "filters": {"q": out}}))["filters"]["q"] == out


def _fastavro_annotation(record: dict, schema_id: int = 1_000_001) -> bytes:
    import io
    import struct

    import fastavro

    from broker.annotations import ANNOTATION_SCHEMA

    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(out, ANNOTATION_SCHEMA, record)
    return out.getvalue()


def _varied_annotations():
    rng = np.random.default_rng(7)
    for k in range(300):
        filters = {}
        for j in range(int(rng.integers(0, 5))):
            score = None if rng.random() < 0.3 else float(rng.normal(0, 10.0 ** rng.integers(-3, 6)))
            details = {f"k{d}é": (f"v{d}ü" if rng.random() < 0.4 else float(rng.normal(0, 1e6)))
                       for d in range(int(rng.integers(0, 12)))}
            filters[f"f{j}"] = {"score": score, "version": "1.2.3", "reason": None if score is not None else "why:ünïcode",
                                "details": details}
        yield {"survey": "lsst" if k % 2 else "ztf", "object_id": "" if k % 7 == 0 else f"ZTF{k}ßα",
               "alert_id": int(rng.integers(-2**63, 2**63 - 1)) if k % 3 else k,
               "schema_version": "4.02", "source_topic": "t" * (k % 200), "source_partition": int(rng.integers(0, 2**31 - 1)),
               "source_offset": int(rng.integers(0, 2**62)), "kafka_timestamp_ms": None if k % 4 == 0 else 1_700_000_000_000 + k,
               "processed_at_ms": -k, "broker_version": "0.1.0", "filters": filters}


def test_annotation_encoder_writes_fastavros_bytes():
    """The hand-written encoder is only a faster way to the same bytes as fastavro's writer."""
    for record in _varied_annotations():
        for schema_id in (1_000_001, 7):
            assert encode_annotation(record, schema_id) == _fastavro_annotation(record, schema_id)
    special = dict(next(_varied_annotations()), filters={"q": {"score": float("inf"), "version": "1", "reason": None,
                                                                "details": {"x": float("nan")}}})
    assert encode_annotation(special) == _fastavro_annotation(special)


@pytest.mark.parametrize("field,value", [("alert_id", 2**63), ("alert_id", -2**63 - 1), ("object_id", None),
                                         ("source_partition", "0"), ("alert_id", "12"), ("survey", 3)])
def test_annotation_encoder_refuses_what_the_schema_refuses(field, value):
    record = {**_ann(), field: value}
    with pytest.raises(Exception):
        _fastavro_annotation(record)
    with pytest.raises((TypeError, ValueError, AttributeError)):
        encode_annotation(record)


def test_annotation_string_cache_stays_bounded_and_skips_object_ids():
    """Repeated strings are encoded once; object ids never enter the cache, and past its bound
    strings are encoded each time, to the same bytes."""
    from broker import annotations

    for k in range(annotations._ENCODED_MAX + 50):
        record = {**_ann(), "object_id": f"ZTF{k:09d}",
                  "filters": {"q": {"score": None, "version": "1", "reason": f"why {k}", "details": {}}}}
        assert encode_annotation(record) == _fastavro_annotation(record)
    assert len(annotations._ENCODED) <= annotations._ENCODED_MAX
    assert not any(s.startswith("ZTF0") for s in annotations._ENCODED)
