"""Survey adapters: a decoded record becomes a NormalisedAlert; each survey's quirks live here."""
from __future__ import annotations

from collections.abc import Iterable

from broker.batch import NormalisedAlert
from broker.codec import DecodeError, DecodedMessage, Decoder
from broker.surveys import lsst, ztf


def detect_survey(record: dict) -> str:
    """By content, not by record name: brokers rename records to ``topLevelRecord``."""
    if isinstance(record.get("candidate"), dict):
        return "ztf"
    if isinstance(record.get("diaSource"), dict):
        return "lsst"
    raise DecodeError("unsupported_survey", "record has neither a ZTF candidate nor an LSST diaSource")


def normalise(record: dict, message: DecodedMessage) -> NormalisedAlert:
    survey = detect_survey(record)
    adapter = ztf if survey == "ztf" else lsst
    try:
        return adapter.normalise(record, message)
    except DecodeError:
        raise
    except Exception as exc:  # a record the schema allowed but our adapter cannot use
        raise DecodeError("normalise_failed", f"{survey}: {type(exc).__name__}: {exc}") from exc


def decode_alerts(payloads: Iterable[bytes], decoder: Decoder) -> list[NormalisedAlert]:
    """Every alert of the decodable ``payloads``, normalised; undecodable ones are skipped.

    For offline work (training pools, benchmarks, test fixtures); the pipeline itself
    dead-letters what this skips."""
    alerts: list[NormalisedAlert] = []
    for data in payloads:
        try:
            msg = decoder.decode(data)
            alerts.extend(normalise(r, msg) for r in msg.records)
        except DecodeError:
            continue
    return alerts
