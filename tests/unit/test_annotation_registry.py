"""Annotations framed with the id a schema registry gives their schema (issue #15): registered
at start-up under ``<annotations topic>-value``, refused writes a clear start-up error unless an
id is configured, the fixed id without a registry."""
from __future__ import annotations

import pytest

from broker.annotations import ANNOTATION_SCHEMA_ID, decode_annotation, encode_annotation
from broker.pipeline import Pipeline, StartupError
from broker.settings import Settings
from broker.tools.embedded import free_port
from tests.faults.registry import LocalRegistry


def _pipeline(**registry) -> Pipeline:
    return Pipeline(Settings.load(None, kafka={"bootstrap": "127.0.0.1:1"}, input_topics=["in"],
                                  annotations_topic="ann.topic", filters=["quality"], schema_registry=registry))


@pytest.fixture()
def registry():
    r = LocalRegistry(free_port(), {}).start()
    yield r
    r.stop()


def test_registered_under_the_topic_subject_and_the_same_id_again(registry):
    first = _pipeline(url=registry.url).register_annotation_schema()
    again = _pipeline(url=registry.url).register_annotation_schema()
    assert first == again and registry.subjects == {"ann.topic-value": [first]}
    framed = encode_annotation(_record(), first)
    assert int.from_bytes(framed[1:5], "big") == first and decode_annotation(framed)["alert_id"] == 7


def test_a_read_only_registry_is_a_start_up_error_unless_an_id_is_given(registry):
    registry.writable = False
    with pytest.raises(StartupError, match="annotation_schema_id"):
        _pipeline(url=registry.url).register_annotation_schema()
    assert _pipeline(url=registry.url, annotation_schema_id=55).register_annotation_schema() == 55


def test_without_a_registry_the_fixed_id_frames_annotations():
    assert _pipeline().register_annotation_schema() == ANNOTATION_SCHEMA_ID


def _record() -> dict:
    return {"survey": "ztf", "object_id": "ZTF1", "alert_id": 7, "schema_version": "4.02", "source_topic": "in",
            "source_partition": 0, "source_offset": 3, "kafka_timestamp_ms": None, "processed_at_ms": 0,
            "broker_version": "t", "filters": {}}


def test_without_a_registry_annotations_can_be_self_describing_containers():
    import io

    import fastavro

    from broker.annotations import encode_annotation_container

    data = encode_annotation_container(_record())
    (plain,) = list(fastavro.reader(io.BytesIO(data)))  # any Avro reader, no schema at hand
    assert plain["alert_id"] == 7 and decode_annotation(data) == decode_annotation(encode_annotation(_record()))


def test_an_unreachable_registry_is_transient_not_a_start_up_error():
    from broker.codec import TransientError

    with pytest.raises(TransientError):
        _pipeline(url=f"http://127.0.0.1:{free_port()}").register_annotation_schema()
