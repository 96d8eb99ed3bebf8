"""A round trip per bundled schema version: encode an example, decode it, compare."""
from __future__ import annotations

import io
import json
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import fastavro
import pytest

from broker.codec import Decoder, encode_confluent
from broker.schema_store import SCHEMAS_DIR, BundledLsstSchemas, RegistryClient, SchemaResolver, load_schema_dir
from tests.schema_examples import example

ZTF_VERSIONS = sorted(p.name for p in (SCHEMAS_DIR / "ztf").iterdir() if p.is_dir())
LSST_VERSIONS = sorted(f"{p.parent.name}.{p.name}" for p in (SCHEMAS_DIR / "lsst").glob("*/*") if p.is_dir())


def test_every_version_is_bundled():
    assert ZTF_VERSIONS == ["1.1", "1.3", "1.5", "1.6", "1.8", "2.0", "3.0", "3.1", "3.2", "3.3",
                            "3.4", "3.5", "4.01", "4.02"]
    assert {"7.4", "9.0", "10.0", "11.0", "11.1"} <= set(LSST_VERSIONS)


@pytest.mark.parametrize("version", ZTF_VERSIONS)
def test_ztf_round_trip(version, decoder):
    schema = load_schema_dir(SCHEMAS_DIR / "ztf" / version)
    record = example(schema)
    buf = io.BytesIO()
    fastavro.writer(buf, schema, [record])
    msg = decoder.decode(buf.getvalue())
    assert msg.records == [record]
    assert msg.schema_version == version


@pytest.mark.parametrize("version", LSST_VERSIONS)
def test_lsst_round_trip_confluent(version, decoder):
    major, minor = map(int, version.split("."))
    schema_id = major * 100 + minor
    schema, resolved = BundledLsstSchemas().get(schema_id)
    assert resolved == version
    sample = SCHEMAS_DIR / "lsst" / str(major) / str(minor) / "sample_data" / "alert.json"
    record = example(schema)
    data = encode_confluent(schema_id, schema, record)
    assert decoder.decode(data).records == [record]
    if sample.exists():  # Rubin's own sample packet (plain JSON), as alert_packet tests it
        rec = json.loads(sample.read_text())
        decoded = decoder.decode(encode_confluent(schema_id, schema, rec)).records[0]
        _assert_subset(rec, decoded)


def _assert_subset(expected, got, path="alert"):
    if isinstance(expected, dict):
        # Rubin's samples carry a few fields their schema dropped (l1dbId): skip those.
        shared = [k for k in expected if k in got]
        assert len(shared) >= len(expected) / 2, path
        for k in shared:
            _assert_subset(expected[k], got[k], f"{path}.{k}")
    elif isinstance(expected, list):
        assert len(expected) == len(got), path
        for i, (a, b) in enumerate(zip(expected, got)):
            _assert_subset(a, b, f"{path}[{i}]")
    elif isinstance(got, datetime):  # timestamp-micros given as a plain number
        assert got.timestamp() * 1e6 == pytest.approx(expected), path
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=1e-6), path
    else:
        assert got == expected, path


class _Registry(BaseHTTPRequestHandler):
    schema_text = ""

    def do_GET(self):  # noqa: N802
        if self.path == "/schemas/ids/4242":
            body = json.dumps({"schema": self.schema_text}).encode()
            self.send_response(200)
        else:
            body = b'{"error_code": 40403, "message": "Schema not found"}'
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_registry_first_then_bundled_fallback():
    raw = {"type": "record", "name": "probe", "namespace": "lsst.v12_3",
           "fields": [{"name": "diaSourceId", "type": "long"}]}
    _Registry.schema_text = json.dumps(raw)
    server = HTTPServer(("127.0.0.1", 0), _Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        registry = RegistryClient(f"http://127.0.0.1:{server.server_address[1]}")
        decoder = Decoder(SchemaResolver(registry))
        msg = decoder.decode(encode_confluent(4242, fastavro.parse_schema(raw, named_schemas={}), {"diaSourceId": 5}))
        assert msg.records == [{"diaSourceId": 5}] and msg.schema_version == "12.3"
        # Not in the registry (404) but bundled: the bundled copy answers.
        schema, _ = BundledLsstSchemas().get(900)
        rec = example(schema)
        assert decoder.decode(encode_confluent(900, schema, rec)).records == [rec]
    finally:
        server.shutdown()


@pytest.mark.parametrize("version", ZTF_VERSIONS)
def test_ztf_folder_loads_with_fastavro_alone(version):
    """Schema files are named by their full type names, so a subscriber needs nothing of
    ours: ``fastavro.schema.load_schema`` resolves the references from the same folder."""
    import fastavro

    folder = SCHEMAS_DIR / "ztf" / version
    schema = fastavro.schema.load_schema(str(folder / "ztf.alert.avsc"))
    assert schema["name"] == "ztf.alert"
    assert fastavro.schema.to_parsing_canonical_form(schema) == \
        fastavro.schema.to_parsing_canonical_form(load_schema_dir(folder))
