"""Which parsed writer schemas are safe to decode untrusted bytes with.

A container file carries its own writer schema, so a hostile or broken producer chooses the
schema too. Two shapes let a few bytes expand without bound: a top level that is not a
record, and an array whose items encode to zero bytes (an array of 2^36 nulls fits in a
handful of bytes). Without them, every decoded object is backed by at least one input byte,
and the decompressed-size limit bounds the work.
"""
from __future__ import annotations

from typing import Any

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def schema_problem(schema: Any) -> str | None:
    """Why a parsed writer schema cannot carry alerts safely, or None.

    The top level must be a record, and no array may hold items that encode to zero bytes:
    only then is every decoded object backed by at least one byte of the (bounded) input.
    """
    if not isinstance(schema, dict) or schema.get("type") not in ("record", "error"):
        kind = schema.get("type") if isinstance(schema, dict) else schema
        return f"writer schema's top level is {str(kind)[:40]!r}, not a record"
    named: dict[str, dict] = {}
    arrays: list[Any] = []
    _collect(schema, named, arrays)
    if _zero_width(schema, named, frozenset()):
        return "writer schema's record encodes to zero bytes"
    for items in arrays:
        if _zero_width(items, named, frozenset()):
            return "writer schema has an array whose items encode to zero bytes"
    return None


def _collect(t: Any, named: dict, arrays: list) -> None:
    if isinstance(t, list):
        for branch in t:
            _collect(branch, named, arrays)
    elif isinstance(t, dict):
        if "name" in t and t.get("type") in ("record", "error", "enum", "fixed"):
            named[t["name"]] = t
        if t.get("type") == "array":
            arrays.append(t.get("items"))
        for f in t.get("fields", ()):
            _collect(f.get("type"), named, arrays)
        for key in ("items", "values"):
            if key in t:
                _collect(t[key], named, arrays)
        if isinstance(t.get("type"), (dict, list)):
            _collect(t["type"], named, arrays)


def _zero_width(t: Any, named: dict, seen: frozenset) -> bool:
    if isinstance(t, str):
        if t in _PRIMITIVES:
            return t == "null"
        if t in seen or t not in named:
            return False  # a recursive record needs at least its own reference: not zero
        return _zero_width(named[t], named, seen | {t})
    if isinstance(t, list):
        return False  # a union writes its branch index: at least one byte
    if isinstance(t, dict):
        kind = t.get("type")
        if kind in ("record", "error"):
            inner = seen | {t.get("name", "")}
            return all(_zero_width(f.get("type"), named, inner) for f in t.get("fields", ()))
        if kind == "fixed":
            return t.get("size", 0) == 0
        if kind in ("array", "map", "enum"):
            return False  # a block count or an index: at least one byte
        return _zero_width(kind, named, seen)
    return False
