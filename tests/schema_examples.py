"""A deterministic example record for any Avro schema, to round-trip every bundled version."""
from __future__ import annotations

from datetime import datetime, timezone


def example(schema, named: dict | None = None, depth: int = 0):
    named = {} if named is None else named
    if isinstance(schema, str):
        prim = {"null": None, "boolean": True, "int": 7, "long": 1234567890123, "float": 1.5,
                "double": 2.25, "bytes": b"\x01\x02", "string": "abc"}
        if schema in prim:
            return prim[schema]
        return example(named[schema], named, depth + 1)
    if isinstance(schema, list):
        # Prefer a non-null branch so nested records are exercised.
        branches = [b for b in schema if b != "null"] or schema
        return example(branches[0], named, depth + 1)
    if schema.get("logicalType", "").startswith("timestamp-"):
        return datetime(2025, 9, 5, 3, 4, 5, tzinfo=timezone.utc)
    t = schema["type"]
    if t == "record" or t == "error":
        named[schema["name"]] = schema
        return {f["name"]: example(f["type"], named, depth + 1) for f in schema["fields"]}
    if t == "array":
        return [example(schema["items"], named, depth + 1)] if depth < 6 else []
    if t == "map":
        return {"k": example(schema["values"], named, depth + 1)}
    if t == "enum":
        named[schema["name"]] = schema
        return schema["symbols"][0]
    if t == "fixed":
        named[schema["name"]] = schema
        return b"\x00" * schema["size"]
    return example(t, named, depth + 1)
