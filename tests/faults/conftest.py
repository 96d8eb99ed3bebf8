from __future__ import annotations

import pytest

from broker.tools.embedded import EmbeddedBroker


@pytest.fixture(scope="module")
def kafka():
    """One embedded broker per fault module: a scenario that stops its broker hurts no other."""
    broker = EmbeddedBroker().start()
    yield broker
    broker.stop()


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/faults/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.faults)
