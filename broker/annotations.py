"""The annotation record, its wire framing, and the routing rules for filtered topics.

Annotations travel in Confluent wire format (0x00, 4-byte id, Avro body) under the id
:data:`ANNOTATION_SCHEMA_ID`; the schema is ``schemas/output/annotation/1/annotation.avsc``.
A routing rule is a small boolean expression over the annotation, parsed once with ``ast``
and evaluated without ``eval``: ``quality.score > 0.5 and survey == 'ztf'``.
"""
from __future__ import annotations

import ast
import io
import json
import math
import operator
import struct
from typing import Any

import fastavro

from broker import __version__
from broker.schema_store import SCHEMAS_DIR

ANNOTATION_SCHEMA_ID = 1_000_001
ANNOTATION_SCHEMA_PATH = SCHEMAS_DIR / "output" / "annotation" / "1" / "annotation.avsc"
ANNOTATION_SCHEMA = fastavro.parse_schema(json.loads(ANNOTATION_SCHEMA_PATH.read_text()), named_schemas={})
HEADER_ANNOTATION = "alert-broker.annotation"
BROKER_VERSION = __version__


def encode_annotation(record: dict) -> bytes:
    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, ANNOTATION_SCHEMA_ID))
    fastavro.schemaless_writer(out, ANNOTATION_SCHEMA, record)
    return out.getvalue()


def decode_annotation(data: bytes) -> dict:
    if len(data) < 5 or data[0] != 0:
        raise ValueError("not Confluent wire format")
    schema_id = struct.unpack(">I", data[1:5])[0]
    if schema_id != ANNOTATION_SCHEMA_ID:
        raise ValueError(f"unexpected annotation schema id {schema_id}")
    return fastavro.schemaless_reader(io.BytesIO(data[5:]), ANNOTATION_SCHEMA, None)


def filter_output(score: float, version: str, reason: str | None, details: dict | None) -> dict:
    clean: dict[str, float | str] = {}
    for k, v in (details or {}).items():
        clean[str(k)] = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)
    null = score is None or math.isnan(score)
    return {
        "score": None if null else float(score),
        "version": version,
        "reason": (reason or "unscored") if null else None,
        "details": clean,
    }


_COMPARE = {
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}


class _Namespace:
    """Attribute access over a dict that yields None for anything absent."""

    def __init__(self, data: dict):
        self._data = data

    def get(self, name: str):
        v = self._data.get(name)
        return _Namespace(v) if isinstance(v, dict) else v


class RouteCondition:
    """A compiled routing condition. Any comparison with a null value is false."""

    def __init__(self, text: str):
        self.text = text
        self._tree = ast.parse(text, mode="eval").body
        self._check(self._tree)

    def _check(self, node: ast.AST) -> None:
        allowed = (ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.Compare,
                   ast.Name, ast.Attribute, ast.Constant, ast.Load, *_COMPARE)
        for sub in ast.walk(node):
            if not isinstance(sub, allowed):
                raise ValueError(f"routing condition {self.text!r}: {type(sub).__name__} not allowed")

    def __call__(self, annotation: dict) -> bool:
        env = dict(annotation)
        env.update(annotation.get("filters", {}))
        return bool(self._eval(self._tree, _Namespace(env)))

    def _eval(self, node: ast.AST, ns: _Namespace) -> Any:
        if isinstance(node, ast.BoolOp):
            vals = (self._eval(v, ns) for v in node.values)
            return all(vals) if isinstance(node.op, ast.And) else any(vals)
        if isinstance(node, ast.UnaryOp):
            v = self._eval(node.operand, ns)
            if isinstance(node.op, ast.Not):
                return not v
            return None if v is None else -v
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, ns)
            for op, right_node in zip(node.ops, node.comparators):
                right = self._eval(right_node, ns)
                if left is None or right is None:
                    return False
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.Name):
            return ns.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self._eval(node.value, ns)
            return base.get(node.attr) if isinstance(base, _Namespace) else None
        if isinstance(node, ast.Constant):
            return node.value
        raise ValueError(f"unsupported node {type(node).__name__}")


def annotation_headers(annotation: dict) -> list[tuple[str, bytes]]:
    """Headers carried by a forwarded alert: ids for cheap filtering, the annotation as JSON."""
    return [
        ("alert-broker.survey", annotation["survey"].encode()),
        ("alert-broker.alert_id", str(annotation["alert_id"]).encode()),
        ("alert-broker.object_id", annotation["object_id"].encode()),
        (HEADER_ANNOTATION, json.dumps(annotation, separators=(",", ":")).encode()),
    ]
