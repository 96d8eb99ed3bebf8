from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
FIXTURES = REPO / "tests" / "fixtures" / "alerts"


def shared_or_skip(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (../shared/data is beside the checkout in CI)")
    return path


@pytest.fixture(scope="session")
def decoder():
    from broker.codec import Decoder
    from broker.schema_store import SchemaResolver

    return Decoder(SchemaResolver())


@pytest.fixture(scope="session")
def sample_batch(decoder):
    """Every bundled decodable sample alert as one AlertBatch."""
    from broker.batch import AlertBatch
    from broker.codec import DecodeError
    from broker.surveys import normalise

    alerts = []
    for path in sorted(FIXTURES.rglob("*.avro")):
        try:
            msg = decoder.decode(path.read_bytes())
        except DecodeError:
            continue
        alerts.extend(normalise(r, msg) for r in msg.records)
    return AlertBatch(alerts)
