from __future__ import annotations

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from broker.tools.embedded import EmbeddedBroker


@pytest.fixture(scope="session")
def kafka():
    broker = EmbeddedBroker().start()
    yield broker
    broker.stop()


def read_topic(bootstrap: str, topic: str, idle_s: float = 3.0, timeout_s: float = 60.0) -> list:
    """Every message of ``topic``, by direct assignment (no group join), until it goes quiet.

    Tansu's high watermarks are not exact, so the end is found by a quiet period.
    """
    import time

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False,
                  "log.connection.close": False})
    meta = c.list_topics(topic, timeout=10).topics[topic]
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
    out = []
    start = last = time.monotonic()
    while time.monotonic() - last < idle_s and time.monotonic() - start < timeout_s:
        got = [m for m in c.consume(500, 0.5) if m.error() is None]
        if got:
            out.extend(got)
            last = time.monotonic()
    c.close()
    return out
