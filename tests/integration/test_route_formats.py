"""Filtered topics in the formats subscribers' tools read (issue #15): fink_client's
AlertConsumer with its usual arguments decodes every alert of a ``format: fink`` route, and
fastavro alone every alert of a ``format: ocf`` route, LSST alerts from Confluent frames included."""
from __future__ import annotations

import io
import time

import fastavro
import pytest

from broker.codec import Decoder
from broker.kafka_io import ensure_topics
from broker.schema_store import SchemaResolver
from broker.settings import KafkaSettings
from broker.tools.replay import replay
from tests.conftest import REPO
from tests.faults.harness import PipelineProc
from tests.integration.conftest import read_topic

pytestmark = pytest.mark.integration
SAMPLES = [REPO / "tests/fixtures/alerts/ztf/fink-broker_local", REPO / "tests/fixtures/alerts/lsst/alerce_confluent_v7.4",
           REPO / "tests/fixtures/alerts/lsst/fink_lsstcam_v9.0"]


def test_fink_and_ocf_routes_are_read_by_fink_client_and_fastavro(kafka, tmp_path):
    fink_client = pytest.importorskip("fink_client.consumer")
    ensure_topics(KafkaSettings(bootstrap=kafka.bootstrap), ["fmt.alerts"], partitions=2)
    sent = replay([str(p) for p in SAMPLES], kafka.bootstrap, "fmt.alerts", Decoder(SchemaResolver()), progress=False)
    cfg = tmp_path / "routes.yaml"
    cfg.write_text("routes:\n"
                   "  - {topic: fmt.fink, condition: 'quality.score >= 0', format: fink}\n"
                   "  - {topic: fmt.ocf, condition: 'quality.score >= 0', format: ocf}\n")
    p = PipelineProc(kafka.bootstrap, "fmt.alerts", "fmt", "fmt.annotations", "fmt.dlq", config=cfg, filters="quality")
    assert p.wait(180) == 0, p.log_tail()
    annotated = len(read_topic(kafka.bootstrap, "fmt.annotations"))
    assert annotated == sent

    ocf = [list(fastavro.reader(io.BytesIO(m.value()))) for m in read_topic(kafka.bootstrap, "fmt.ocf")]
    assert len(ocf) == annotated and all(len(records) == 1 for records in ocf)
    assert {type(r[0].get("candidate") or r[0].get("diaSource")) for r in ocf} == {dict}

    consumer = fink_client.AlertConsumer(["fmt.fink"], {"bootstrap.servers": kafka.bootstrap, "group.id": "fink-reader"},
                                         survey="ztf")
    alerts, end = [], time.monotonic() + 120  # its default session timeout makes the join slow
    while time.monotonic() < end and len(alerts) < annotated:
        topic, alert, key = consumer.poll(0.5)
        if alert is not None:
            alerts.append(alert)
    consumer._consumer.close()
    assert len(alerts) == annotated
    assert sum("candidate" in a for a in alerts) == 10 and sum("diaSource" in a for a in alerts) == annotated - 10
