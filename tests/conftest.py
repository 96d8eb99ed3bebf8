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
    from broker.surveys import decode_alerts

    return AlertBatch(decode_alerts((p.read_bytes() for p in sorted(FIXTURES.rglob("*.avro"))), decoder))
