"""Reading Avro record bodies under a writer schema, exactly: every byte belongs to a record.

fastavro builds each decoded value through its generic reader; cavro compiles the writer schema
into typed Cython readers and decoded the 1,433 real alerts of ``../shared/data`` 3-4x faster
(ZTF ~210 against ~820 us per record, LSST ~54 against ~160, 2026-12-06), into the same
dicts. So records are read with cavro where a wheel of it is installed and it accepts the
writer schema, and with fastavro otherwise (a schema cavro rejects, a platform without a wheel);
``RecordReader.engine`` says which. ``tests/unit/test_avro_records.py`` holds the two to the same
records on every real alert and the same verdicts on corrupted ones.

A caller may read through a projection (:func:`project_arrays`, ``ReaderCache(project=...)``):
a reader schema that leaves out fields nobody reads, which both libraries then read past
without building them (the pipeline's: history points cut to the fields of a light-curve point).

cavro's in-memory reader does not say where a record ended, and a record followed by stray bytes
is corrupt (a flipped length prefix often shows only that way). After a message's last record
one more byte is asked for: the read must fail at the end of the data. Where each record's
bytes are needed (several records in one block, to split a file losslessly), cavro reads from a
file object whose position is known after each record.
"""
from __future__ import annotations

import io
from collections.abc import Callable

import fastavro

try:
    import cavro
except ImportError:  # no wheel for this Python or machine: fastavro reads everything
    cavro = None

if cavro is not None:
    # Permissive: ZTF's schemas carry defaults of null for unions whose first branch is not
    # null, which only affect writing. Strict text decoding, as fastavro's.
    _OPTIONS = cavro.PERMISSIVE_OPTIONS.replace(
        record_decodes_to_dict=True, allow_invalid_default_values=True, unicode_errors="strict"
    )
    _ONE_BYTE = cavro.Schema('{"type": "fixed", "name": "probe", "size": 1}')


class StrayBytes(Exception):
    """Bytes left over after the last record; ``count`` is how many, where it is known."""

    def __init__(self, count: int | None):
        super().__init__(f"{count or 'some'} stray bytes after the last record")
        self.count = count


def _plain(schema):
    """A fastavro-parsed schema without fastavro's own bookkeeping keys."""
    if isinstance(schema, dict):
        return {k: _plain(v) for k, v in schema.items() if not k.startswith("__")}
    if isinstance(schema, list):
        return [_plain(v) for v in schema]
    return schema


class RecordReader:
    """Reads the records of one writer schema (fastavro's parsed form) out of bytes.

    cavro compiles a schema in ~2 ms where fastavro parses it in ~0.4 (a ZTF schema): a stream
    of messages each under a schema of its own (hostile, or fuzzed) would pay that every time.
    So the first ``compile_after`` reads of a schema go through fastavro and cavro compiles it
    only once it repeats, as a real stream's schemas do.
    """

    def __init__(self, schema: dict, prefer_cavro: bool = True, compile_after: int = 1,
                 reader_schema: dict | None = None):
        self.schema = schema
        # A projection of ``schema`` (:func:`project_arrays`): the fields it leaves out are read
        # past, not built into Python objects. None: whole records.
        self.reader_schema = reader_schema
        self._cavro = None
        self._reads = 0
        self._compile_at = compile_after if (cavro is not None and prefer_cavro) else None

    @property
    def engine(self) -> str:
        return "fastavro" if self._cavro is None else "cavro"

    def _engine(self):
        """Counts one read; the compiled cavro schema, or None to read with fastavro."""
        self._reads += 1
        if self._compile_at is not None and self._reads > self._compile_at:
            self._compile_at = None  # one try: a schema cavro rejects stays with fastavro
            try:
                compiled = cavro.Schema(_plain(self.schema), _OPTIONS, parse_json=False, named_types={})
                if self.reader_schema is not None:
                    compiled = cavro.Schema(_plain(self.reader_schema), _OPTIONS, parse_json=False,
                                            named_types={}).reader_for_writer(compiled)
                self._cavro = compiled
            except Exception:
                pass
        return self._cavro

    def read_one(self, body: bytes) -> dict:
        """The one record ``body`` holds; :class:`StrayBytes` if it holds more bytes than that."""
        compiled = self._engine()
        if compiled is None:
            buf = io.BytesIO(body)
            record = fastavro.schemaless_reader(buf, self.schema, self.reader_schema)
            if buf.tell() != len(body):
                raise StrayBytes(len(body) - buf.tell())
            return record
        reader = cavro.MemoryReader(body)
        record = compiled.binary_read(reader)
        _expect_end(reader)
        return record

    def read_block(self, raw: bytes, count: int) -> tuple[list[dict], list[tuple[int, int]]]:
        """``count`` records filling ``raw`` exactly, with each one's (start, end) in it.

        An exception from the decoder after some records of a block carries ``records_read``:
        how many came before it (none where it is absent).
        """
        if count == 1:
            return [self.read_one(raw)], [(0, len(raw))]
        compiled = self._engine()
        buf = io.BytesIO(raw)
        source = buf if compiled is None else cavro.FileReader(buf)
        records: list[dict] = []
        spans: list[tuple[int, int]] = []
        for _ in range(count):
            start = buf.tell()
            try:
                if compiled is None:
                    records.append(fastavro.schemaless_reader(buf, self.schema, self.reader_schema))
                else:
                    records.append(compiled.binary_read(source))
            except Exception as exc:
                exc.records_read = len(records)
                raise
            spans.append((start, buf.tell()))
        if buf.tell() != len(raw):
            raise StrayBytes(len(raw) - buf.tell())
        return records, spans


def _expect_end(reader) -> None:
    try:
        _ONE_BYTE.binary_read(reader)
    except (EOFError, ValueError):  # cavro's "not enough input data": the record ended the data
        return
    raise StrayBytes(None)


class ReaderCache:
    """One :class:`RecordReader` per parsed writer schema (compiled once, however many messages)."""

    def __init__(self, max_entries: int = 256, prefer_cavro: bool = True, compile_after: int = 1,
                 project: Callable[[dict], dict | None] | None = None):
        self._readers: dict[int, RecordReader] = {}
        self._project = project  # writer schema -> reader schema (a projection) or None
        self._max = max_entries
        self._prefer_cavro, self._compile_after = prefer_cavro, compile_after
        self._last: RecordReader | None = None

    def get(self, schema: dict) -> RecordReader:
        last = self._last
        if last is not None and last.schema is schema:
            return last
        # Keyed by identity: schema caches hand out the same parsed dict for the same schema,
        # and each reader keeps its schema alive, so an id is never reused while cached.
        reader = self._readers.get(id(schema))
        if reader is None or reader.schema is not schema:
            projected = self._project(schema) if self._project is not None else None
            reader = RecordReader(schema, self._prefer_cavro, self._compile_after, projected)
            if len(self._readers) >= self._max:
                self._readers.pop(next(iter(self._readers)))
            self._readers[id(schema)] = reader
        self._last = reader
        return reader


def project_arrays(schema: dict, keep: dict[str, frozenset[str]]) -> dict | None:
    """A reader schema for ``schema`` (a top-level record, fastavro's parsed form) in which the
    records under each field named in ``keep`` (a history: an array of records, in unions or not)
    hold only the listed fields; None where nothing would be left out, or where leaving fields out
    could change what is read (a record type used elsewhere too, a dropped field that defines a
    named type). Schema resolution still reads every byte of a record, so a damaged one fails as
    before; only the skipped values are never built (and fastavro does not check the UTF-8 of the
    text it skips, where cavro does)."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    used = _type_references(schema)
    fields, changed = [], False
    for f in schema.get("fields", ()):
        slim = _slim(f["type"], keep[f["name"]], used) if f.get("name") in keep else None
        fields.append(f if slim is None else {**f, "type": slim})
        changed = changed or slim is not None
    if not changed:
        return None
    try:
        return fastavro.parse_schema(_plain({**schema, "fields": fields}), named_schemas={})
    except Exception:  # should not happen; whole records then
        return None


def _slim(t, names: frozenset[str], used: set[str]):
    """``t`` with its records' fields cut to ``names``; None if nothing changed."""
    if isinstance(t, list):
        slim = [_slim(b, names, used) for b in t]
        return None if all(s is None for s in slim) else [s if s is not None else b for s, b in zip(slim, t)]
    if not isinstance(t, dict):
        return None
    if t.get("type") == "array":
        items = _slim(t["items"], names, used)
        return None if items is None else {**t, "items": items}
    if t.get("type") != "record" or {t.get("name"), str(t.get("name")).rsplit(".", 1)[-1]} & used:
        return None
    kept = [f for f in t["fields"] if f["name"] in names]
    dropped = [f for f in t["fields"] if f["name"] not in names]
    if not dropped or any(_defines_names(f["type"]) for f in dropped):
        return None
    return {**t, "fields": kept}


def _defines_names(t) -> bool:
    if isinstance(t, list):
        return any(_defines_names(b) for b in t)
    return isinstance(t, dict) and ("name" in t or _defines_names(t.get("items")) or _defines_names(t.get("values")))


_COMPLEX = ("record", "error", "array", "map", "enum", "fixed")


def _type_references(t, out: set[str] | None = None) -> set[str]:
    """Every named type referred to by name (fastavro's parsed form defines a type once, then names it)."""
    out = set() if out is None else out
    if isinstance(t, str):
        out.add(t)
    elif isinstance(t, list):
        for b in t:
            _type_references(b, out)
    elif isinstance(t, dict):
        for key in ("items", "values"):
            if key in t:
                _type_references(t[key], out)
        for f in t.get("fields", ()) if t.get("type") == "record" else ():
            _type_references(f["type"], out)
        if "type" in t and (isinstance(t["type"], (dict, list)) or t["type"] not in _COMPLEX):
            _type_references(t["type"], out)
    return out


def engine_in_words() -> str:
    """Which library reads records here (a schema cavro rejects is still read by fastavro)."""
    if cavro is None:
        return f"fastavro {fastavro.__version__}"
    from importlib.metadata import version

    return f"cavro {version('cavro')} (fastavro {fastavro.__version__} for schemas cavro rejects)"
