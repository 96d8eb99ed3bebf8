from __future__ import annotations

import pytest

from broker.tools.embedded import EmbeddedBroker
from broker.tools.tail import read_topic  # noqa: F401  (the tests' reader of output topics)


@pytest.fixture(scope="session")
def kafka():
    broker = EmbeddedBroker().start()
    yield broker
    broker.stop()
