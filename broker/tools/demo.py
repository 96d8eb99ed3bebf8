"""``alert-broker demo``: embedded broker, replay of the bundled real alerts, every filter."""
from __future__ import annotations

import gc
from pathlib import Path

from broker.codec import Decoder
from broker.tools.embedded import EmbeddedBroker
from broker.kafka_io import ensure_topics
from broker.outputs import RunSummary
from broker.pipeline import Pipeline
from broker.tools.replay import replay
from broker.schema_store import SchemaResolver
from broker.settings import KafkaSettings, Settings
from filters.base import discover

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
SAMPLES = FIXTURES / "alerts"
LIGHT_CURVES = FIXTURES / "lightcurves"  # real K2 light curves, replayed as alert histories
LSST_TEMPLATE = SAMPLES / "lsst" / "alerce_lsstcam_v9.0" / "sample_v9.avro"
INPUT_TOPIC = "demo.alerts"
OUTPUT_DIR = Path("demo-output")


def demo_settings(bootstrap: str, filters: list[str]) -> Settings:
    routes = [{"topic": "demo.quality", "condition": "quality.score >= 1"}]
    if "badamp" in filters:
        routes.append({"topic": "demo.bad", "condition": "badamp.score > 0.5"})
    if "transit" in filters:
        routes.append({"topic": "demo.transit", "condition": "transit.score > 0.5"})
    if "anomaly" in filters:
        routes.append({"topic": "demo.unusual", "condition": "anomaly.score >= 0.99"})
    return Settings.load(
        None,
        kafka={"bootstrap": bootstrap, "session_timeout_ms": 6000},
        input_topics=[INPUT_TOPIC],
        group_id="demo",
        annotations_topic="demo.annotations",
        dlq_topic="demo.dlq",
        routes=routes,
        filters=filters,
        exit_when_idle_s=3.0,
        batch={"max_alerts": 200, "max_wait_ms": 200},
    )


def format_summary(summary: RunSummary, sent: int, filters: list[str]) -> str:
    rows = [("messages in", sent), ("annotated alerts", summary.annotated),
            ("dead-lettered", sum(summary.dead_lettered.values()))]
    for reason, n in sorted(summary.dead_lettered.items()):
        rows.append((f"  dead letter: {reason}", n))
    for name in filters:
        rows.append((f"{name}: scored", summary.scored.get(name, 0)))
        for (fname, reason), n in sorted(summary.nulls.items()):
            if fname == name:
                rows.append((f"{name}: null ({reason})", n))
    for topic, n in sorted(summary.routed.items()):
        rows.append((f"routed to {topic}", n))
    rate = summary.annotated / summary.processing_seconds if summary.processing_seconds else 0.0
    rows.append(("alerts/s while processing", f"{rate:.1f}"))
    rows.append(("seconds processing", f"{summary.processing_seconds:.2f}"))
    if summary.join_seconds is not None:
        rows.append(("seconds to join the consumer group", f"{summary.join_seconds:.1f}"))
    width = max(len(r[0]) for r in rows)
    lines = ["", "alert-broker demo summary", "-" * (width + 12)]
    lines += [f"{k:<{width}}  {v:>9}" for k, v in rows]
    return "\n".join(lines)


def _replay_light_curves(bootstrap: str) -> dict[int, tuple]:
    """Real K2 light curves as the histories of LSST-format alerts (see lightcurve_alerts)."""
    from confluent_kafka import Producer

    from broker.tools.lightcurve_alerts import kepler_csv_alerts

    paths = sorted(LIGHT_CURVES.glob("*.csv"))
    if not paths or not LSST_TEMPLATE.exists():
        return {}
    producer = Producer({"bootstrap.servers": bootstrap, "log.connection.close": False})
    curves = {}
    for alert_id, t, f, data in kepler_csv_alerts(LSST_TEMPLATE.read_bytes(), paths):
        producer.produce(INPUT_TOPIC, value=data)
        curves[alert_id] = (t, f)
    producer.flush(30)
    print(f"replayed {len(curves)} real K2 light curves ({', '.join(p.stem for p in paths)}) as the "
          "forced-photometry histories of LSST-format alerts, so that the transit filter has something to fold")
    return curves


def _report(bootstrap: str, topic: str, names: list[str], curves: dict) -> None:
    from broker.tools.demo_report import filter_tables, read_annotations, score_figure, transit_figure

    annotations = read_annotations(bootstrap, topic)
    print(filter_tables(annotations, names))
    OUTPUT_DIR.mkdir(exist_ok=True)
    figures = [score_figure(annotations, names, OUTPUT_DIR)]
    if "transit" in names:
        figures.append(transit_figure(annotations, curves, OUTPUT_DIR))
    print("\npictures: " + ", ".join(str(p) for p in figures if p))


def run_demo(filters: str | None = None, sample_dir: str | None = None) -> int:
    names = [f for f in filters.split(",")] if filters else sorted(discover())
    samples = sample_dir or str(SAMPLES)
    broker = EmbeddedBroker().start()
    try:
        print(f"embedded Tansu broker on {broker.bootstrap}")
        settings = demo_settings(broker.bootstrap, names)
        ensure_topics(KafkaSettings(bootstrap=broker.bootstrap), [INPUT_TOPIC], partitions=2)
        sent = replay([samples], broker.bootstrap, INPUT_TOPIC, Decoder(SchemaResolver()), progress=False)
        print(f"replayed {sent} messages from {samples}")
        curves = _replay_light_curves(broker.bootstrap)
        sent += len(curves)
        print(f"running filters {names} (consumer-group join takes a few seconds)...")
        pipeline = Pipeline(settings)
        summary = pipeline.run()
        del pipeline  # release its Kafka clients before the broker goes away
        gc.collect()
        print(format_summary(summary, sent, names))
        _report(broker.bootstrap, settings.annotations_topic, names, curves)
        ok = summary.consumed == sent and summary.annotated + sum(summary.dead_lettered.values()) >= sent
        return 0 if ok else 1
    finally:
        broker.stop()
