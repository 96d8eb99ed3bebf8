"""The README's subscribe snippets, extracted and run verbatim against the embedded broker."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.faults.harness import PipelineProc
from tests.integration.conftest import read_topic

pytestmark = pytest.mark.integration


def snippet(name: str) -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(rf"<!-- snippet: {name} -->\n```\w+\n(.*?)```", text, flags=re.S)
    assert m, f"README has no snippet {name!r}"
    return m.group(1)


@pytest.fixture(scope="module")
def annotated(kafka):
    """A pipeline's annotations of the bundled ZTF alerts."""
    from broker.kafka_io import ensure_topics
    from broker.settings import KafkaSettings
    from broker.tools.replay import replay
    from broker.codec import Decoder
    from broker.schema_store import SchemaResolver

    ensure_topics(KafkaSettings(bootstrap=kafka.bootstrap), ["sub.alerts"], partitions=2)
    replay([str(REPO / "tests/fixtures/alerts/ztf/fink-broker_local")], kafka.bootstrap, "sub.alerts",
           Decoder(SchemaResolver()), progress=False)
    p = PipelineProc(kafka.bootstrap, "sub.alerts", "sub", "sub.annotations", "sub.dlq", filters="quality")
    assert p.wait(180) == 0, p.log_tail()
    n = len(read_topic(kafka.bootstrap, "sub.annotations"))
    assert n > 0
    return n


def _env(kafka) -> dict:
    bin_dir = os.path.dirname(sys.executable)  # alert-broker lives beside this Python
    return dict(os.environ, BOOTSTRAP=kafka.bootstrap, TOPIC="sub.annotations",
                PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]))


def test_tail_snippet(kafka, annotated, tmp_path):
    run = subprocess.run(["bash", "-c", snippet("tail")], env=_env(kafka), cwd=tmp_path,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [json.loads(x) for x in run.stdout.splitlines()]
    assert len(lines) == annotated and all("quality" in x["filters"] for x in lines)


def test_python_snippet(kafka, annotated, tmp_path):
    script = tmp_path / "subscribe.py"
    script.write_text(snippet("python"))
    run = subprocess.run([sys.executable, str(script)], env=_env(kafka), cwd=tmp_path,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert len(lines) == annotated and all(x.startswith("ztf ") and "'quality'" in x for x in lines)


def test_registry_snippet_reads_every_annotation_with_confluents_deserializer(kafka, tmp_path):
    """The standard Confluent path: the pipeline registers the annotation schema under
    ``<topic>-value`` and frames with that id; the real SchemaRegistryClient + AvroDeserializer
    (over HTTP, against a small in-process registry) decode every annotation."""
    pytest.importorskip("authlib")
    from broker.codec import Decoder
    from broker.kafka_io import ensure_topics
    from broker.schema_store import SchemaResolver
    from broker.settings import KafkaSettings
    from broker.tools.embedded import free_port
    from broker.tools.replay import replay
    from tests.faults.registry import LocalRegistry

    registry = LocalRegistry(free_port(), {}).start()
    try:
        ensure_topics(KafkaSettings(bootstrap=kafka.bootstrap), ["reg.alerts"], partitions=2)
        sent = replay([str(REPO / "tests/fixtures/alerts/ztf/ampel_2021_nocutouts")], kafka.bootstrap, "reg.alerts",
                      Decoder(SchemaResolver()), progress=False)
        p = PipelineProc(kafka.bootstrap, "reg.alerts", "reg", "reg.annotations", "reg.dlq", filters="quality",
                         env={"ALERT_BROKER__SCHEMA_REGISTRY__URL": registry.url})
        assert p.wait(180) == 0, p.log_tail()
        assert list(registry.subjects) == ["reg.annotations-value"]
        n = len(read_topic(kafka.bootstrap, "reg.annotations"))
        assert n == sent
        script = tmp_path / "subscribe_registry.py"
        script.write_text(snippet("registry"))
        env = dict(_env(kafka), TOPIC="reg.annotations", REGISTRY=registry.url)
        run = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=180)
        assert run.returncode == 0, run.stderr[-2000:]
        lines = run.stdout.splitlines()
        assert len(lines) == n and all(x.startswith("ztf ") and "'quality'" in x for x in lines)
    finally:
        registry.stop()
