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

SAMPLES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "alerts"
INPUT_TOPIC = "demo.alerts"


def demo_settings(bootstrap: str, filters: list[str]) -> Settings:
    routes = [{"topic": "demo.quality", "condition": "quality.score >= 1"}]
    if "badamp" in filters:
        routes.append({"topic": "demo.bad", "condition": "badamp.score > 0.5"})
    if "transit" in filters:
        routes.append({"topic": "demo.transit", "condition": "transit.score > 0.5"})
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
        print(f"running filters {names} (consumer-group join takes a few seconds)...")
        pipeline = Pipeline(settings)
        summary = pipeline.run()
        del pipeline  # release its Kafka clients before the broker goes away
        gc.collect()
        print(format_summary(summary, sent, names))
        ok = summary.consumed == sent and summary.annotated + sum(summary.dead_lettered.values()) >= sent
        return 0 if ok else 1
    finally:
        broker.stop()
