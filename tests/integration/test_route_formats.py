"""Filtered topics in the formats subscribers' tools read (issue #15): fink_client's
AlertConsumer with its usual arguments decodes every alert of a ``format: fink`` route, and
fastavro alone every alert of a ``format: ocf`` route, LSST alerts from Confluent frames included
(and lsst-alert-packet validates those against their schema version)."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

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
    pytest.importorskip("fink_client.consumer")
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

    readers = [fastavro.reader(io.BytesIO(m.value())) for m in read_topic(kafka.bootstrap, "fmt.ocf")]
    ocf = [(r.writer_schema["name"], list(r)) for r in readers]
    assert len(ocf) == annotated and all(len(records) == 1 for _, records in ocf)
    assert {type(r[0].get("candidate") or r[0].get("diaSource")) for _, r in ocf} == {dict}
    # Rubin's own package validates the forwarded LSST alerts against their schema version.
    packet = pytest.importorskip("lsst.alert.packet")
    lsst = [(name, r[0]) for name, r in ocf if name.startswith("lsst.v")]
    assert len(lsst) == 5
    for name, record in lsst:
        major, minor = name.split(".")[1][1:].split("_")
        schema = packet.Schema.from_file(str(Path(packet.get_schema_path(int(major), int(minor))) / f"{name}.avsc"))
        assert schema.validate(record), name

    # The README's fink snippet, verbatim.
    from tests.integration.test_subscribe_snippets import snippet

    script = tmp_path / "fink_subscribe.py"
    script.write_text(snippet("fink"))
    env = dict(os.environ, BOOTSTRAP=kafka.bootstrap, TOPIC="fmt.fink")
    run = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert len(lines) == annotated and all(x.startswith("fmt.fink ") for x in lines)

    # tail --save: files that fastavro and fink_client's AlertReader read.
    from fink_client.avro_utils import AlertReader

    for topic in ("fmt.fink", "fmt.ocf"):
        saved = tmp_path / topic
        cli = [sys.executable, "-m", "broker.tools.cli", "tail", "--bootstrap", kafka.bootstrap, "--topic", topic,
               "--from-beginning", "--exit-when-idle", "5", "--save", str(saved)]
        subprocess.run(cli, check=True, capture_output=True, timeout=180, cwd=REPO)
        files = sorted(saved.glob("*.avro"))
        assert len(files) == annotated
        assert sum(len(list(fastavro.reader(f.open("rb")))) for f in files) == annotated
        assert len(AlertReader(str(saved)).to_list()) == annotated
