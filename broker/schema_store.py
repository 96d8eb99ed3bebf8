"""Where writer schemas come from: the bundled ``schemas/`` tree and a Confluent registry.

Rubin publishes new schema versions to its registry, sometimes hours after alerts using
them appear, so ids resolve from the registry when one is configured and fall back to the
copies bundled here (ids follow the version: 704 = v7.4, 900 = v9.0, 1100 = v11.0).
"""
from __future__ import annotations

import base64
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import fastavro

from broker.codec import DecodeError, TransientError, schema_version_of
from broker.schema_safety import schema_problem

log = logging.getLogger(__name__)

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"


def load_schema_dir(directory: Path, main: str = "alert") -> dict:
    """The ``main`` record of one version folder, with every named type it uses inlined.

    Files reference each other by full name (``ztf.alert.candidate``) whatever the file is
    called, so the dependency order is found by retrying until all resolve.
    """
    raw = {p: json.loads(p.read_text()) for p in sorted(directory.glob("*.avsc"))}
    named: dict = {}
    order: list[Path] = []
    pending = dict(raw)
    while pending:
        progressed = False
        for path, schema in list(pending.items()):
            try:
                fastavro.parse_schema(schema, named_schemas=named)
            except fastavro.schema.UnknownType:
                continue
            del pending[path]
            order.append(path)
            progressed = True
        if not progressed:
            raise ValueError(f"unresolvable references in {directory}: {sorted(map(str, pending))}")
    mains = [p for p in order if p.stem.split(".")[-1] == main]
    if not mains:
        raise ValueError(f"no {main}.avsc in {directory}")
    # load_schema_ordered inlines the earlier files into the last one, where it uses them.
    order = [p for p in order if p != mains[0]] + mains[:1]
    return fastavro.schema.load_schema_ordered([str(p) for p in order], _write_hint=False)


def lsst_version_of_id(schema_id: int) -> tuple[int, int]:
    return schema_id // 100, schema_id % 100


class BundledLsstSchemas:
    def __init__(self, root: Path = SCHEMAS_DIR / "lsst"):
        self.root = root
        self._cache: dict[int, tuple[dict, str]] = {}

    def available_ids(self) -> list[int]:
        ids = []
        for d in self.root.glob("*/*"):
            if d.is_dir() and d.parent.name.isdigit() and d.name.isdigit():
                ids.append(int(d.parent.name) * 100 + int(d.name))
        return sorted(ids)

    def get(self, schema_id: int) -> tuple[dict, str] | None:
        if schema_id in self._cache:
            return self._cache[schema_id]
        major, minor = lsst_version_of_id(schema_id)
        folder = self.root / str(major) / str(minor)
        if not folder.is_dir():
            return None
        entry = (load_schema_dir(folder), f"{major}.{minor}")
        self._cache[schema_id] = entry
        return entry


class SchemaNotFound(LookupError):
    """The registry answered that it has no schema under this id (a permanent fault)."""


class RegistryClient:
    """Minimal client of the Confluent schema-registry REST API (``GET /schemas/ids/{id}``).

    A 404 is an answer (:class:`SchemaNotFound`); no answer at all (refused, timed out, 5xx,
    a body that is not the API's) is :class:`TransientError`: the registry is having a bad
    minute, and the alerts waiting on it must not be dead-lettered for it.
    """

    def __init__(self, url: str, username: str | None = None, password: str | None = None,
                 timeout_s: float = 5.0):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._auth = None
        if username:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self._auth = f"Basic {token}"

    def _call(self, path: str, payload: dict | None = None) -> dict:
        """One request (GET, or POST with ``payload``), its JSON answer; errors are the caller's."""
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(f"{self.url}{path}", data=data, method="POST" if data else "GET")
        req.add_header("Accept", "application/vnd.schemaregistry.v1+json")
        if data:
            req.add_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        if self._auth:
            req.add_header("Authorization", self._auth)
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            return json.loads(resp.read())

    def fetch(self, schema_id: int) -> dict:
        try:
            return json.loads(self._call(f"/schemas/ids/{schema_id}")["schema"])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise SchemaNotFound(f"registry has no schema id {schema_id}") from exc
            raise TransientError(f"schema registry answered HTTP {exc.code}") from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:  # URLError is an OSError
            raise TransientError(f"schema registry unreachable: {exc}") from exc

    def register(self, subject: str, schema_text: str) -> int:
        """``POST /subjects/{subject}/versions``: the id the registry gives this schema (the
        same id again when it is already registered). A refusal (an HTTP 4xx answer) raises
        :class:`RegistryRefused` with the registry's own message; no answer (refused
        connection, time-out, 5xx) is :class:`TransientError`, as for reads."""
        path = f"/subjects/{urllib.parse.quote(subject, safe='')}/versions"
        try:
            return int(self._call(path, {"schemaType": "AVRO", "schema": schema_text})["id"])
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                raise RegistryRefused(f"HTTP {exc.code} registering subject {subject}: {detail}") from exc
            raise TransientError(f"schema registry answered HTTP {exc.code}") from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:  # URLError is an OSError
            raise TransientError(f"schema registry unreachable: {exc}") from exc


class RegistryRefused(RuntimeError):
    """The registry would not (or could not) register a schema: a start-up error."""


class SchemaResolver:
    """Confluent id -> (parsed schema, version). Registry first, bundled copy second."""

    RETRY_UNKNOWN_S = 60.0  # an id the registry lacks may be published later: ask again then

    def __init__(self, registry: RegistryClient | None = None,
                 bundled: BundledLsstSchemas | None = None):
        self.registry = registry
        self.bundled = bundled or BundledLsstSchemas()
        self._cache: dict[int, tuple[dict, str | None] | DecodeError] = {}
        self._unknown: dict[int, float] = {}

    def __call__(self, schema_id: int) -> tuple[dict, str | None]:
        hit = self._cache.get(schema_id)
        if isinstance(hit, DecodeError):
            raise hit
        if hit is not None:
            return hit
        if time.monotonic() - self._unknown.get(schema_id, -1e9) < self.RETRY_UNKNOWN_S:
            raise DecodeError("unknown_schema_id", f"schema id {schema_id} is not known")
        try:
            entry = self._from_registry(schema_id)
        except TransientError:
            # A bundled copy of the same id is as good as the registry's; without one the
            # alert waits for the registry (the caller retries) instead of being dead-lettered.
            entry = self.bundled.get(schema_id)
            if entry is None:
                raise
        except DecodeError as exc:  # the registry's schema is unusable: remember the verdict
            self._cache[schema_id] = exc
            raise
        entry = entry or self.bundled.get(schema_id)
        if entry is None:
            self._unknown[schema_id] = time.monotonic()
            raise DecodeError("unknown_schema_id", f"schema id {schema_id} is not known")
        self._cache[schema_id] = entry
        return entry

    def _from_registry(self, schema_id: int) -> tuple[dict, str | None] | None:
        if self.registry is None:
            return None
        try:
            raw = self.registry.fetch(schema_id)
        except SchemaNotFound:
            return None  # the bundled copies may still know it
        except TransientError as exc:
            log.warning("schema registry lookup failed", extra={"schema_id": schema_id, "error": str(exc)})
            raise
        try:
            parsed = fastavro.parse_schema(raw, named_schemas={})
        except Exception as exc:
            raise DecodeError("invalid_schema", f"registry schema id {schema_id} does not parse: {exc}") from exc
        problem = schema_problem(parsed)
        if problem:
            raise DecodeError("invalid_schema", f"registry schema id {schema_id}: {problem}")
        version = schema_version_of(raw)
        if version is None:
            major, minor = lsst_version_of_id(schema_id)
            version = f"{major}.{minor}"
        return parsed, version
