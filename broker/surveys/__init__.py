"""Survey adapters: a decoded record becomes a NormalisedAlert; each survey's quirks live here."""
from __future__ import annotations

from collections.abc import Iterable

from broker.avro_records import project_arrays
from broker.batch import NormalisedAlert
from broker.codec import DecodeError, DecodedMessage, Decoder
from broker.surveys import lsst, ztf


# Writer-schema namespaces we read. ELAsTiCC is Rubin's own data model, simulated.
_NAMESPACE_SURVEY = {"ztf": "ztf", "lsst": "lsst", "elasticc": "lsst"}
# Broker re-serialisations (Spark's default record names) say nothing: judge by content.
_ANONYMOUS = {"", "topLevelRecord", "topLevelRecord.value"}


def survey_of_schema(schema_name: str) -> str | None:
    """The survey a writer schema's name says, None for an anonymous re-serialisation, or
    ``unsupported_survey`` (PGIR, WINTER and ZUDS alerts carry ZTF-like fields under their
    own names; ATLAS its own)."""
    if schema_name in _ANONYMOUS:
        return None
    survey = _NAMESPACE_SURVEY.get(schema_name.split(".", 1)[0] if "." in schema_name else "")
    if survey is None:
        raise DecodeError("unsupported_survey",
                          f"writer schema {schema_name[:80]!r} is not a ZTF or Rubin/LSST alert")
    return survey


def detect_survey(record: dict, schema_name: str = "") -> str:
    """By the writer schema's name where it tells, by content for anonymous ones."""
    survey = survey_of_schema(schema_name)
    if isinstance(record.get("candidate"), dict):
        content = "ztf"
    elif isinstance(record.get("diaSource"), dict):
        content = "lsst"
    else:
        raise DecodeError("unsupported_survey", f"record of {schema_name[:80] or 'an anonymous schema'!r} "
                          "has neither a ZTF candidate nor an LSST diaSource")
    if survey is not None and content != survey:
        raise DecodeError("unsupported_survey", f"writer schema {schema_name[:80]!r} holds a {content} record")
    return content


_HISTORY_READS = ztf.HISTORY_READS | lsst.HISTORY_READS


def history_projection(schema: dict) -> dict | None:
    """The reader schema the pipeline decodes with: each history point keeps only the fields
    the adapters read (a ZTF prv_candidate has ~100, of which 8 make a light-curve point), and
    the decoder reads past the rest instead of building them. The triggering detection stays
    whole: its fields are the batch's columns. None: whole records."""
    return project_arrays(schema, _HISTORY_READS)


_HISTORY_FIELDS = tuple(_HISTORY_READS)  # every list of history points the adapters read


def normalise(record: dict, message: DecodedMessage, max_history: int | None = None) -> NormalisedAlert:
    """The alert of one decoded record; a history over ``max_history`` points is refused
    before it is normalised (it is counted from the record's lists, which costs nothing)."""
    if not isinstance(record, dict):
        raise DecodeError("unsupported_survey", "the decoded record is not a record")
    if max_history is not None:
        points = 1 + sum(len(v) for k in _HISTORY_FIELDS if isinstance(v := record.get(k), list))
        if points > max_history:
            raise DecodeError("history_too_long", f"light curve of {points} points, limit {max_history}")
    survey = detect_survey(record, message.schema_name)
    adapter = ztf if survey == "ztf" else lsst
    try:
        return adapter.normalise(record, message)
    except DecodeError:
        raise
    except Exception as exc:  # a record the schema allowed but our adapter cannot use
        raise DecodeError("normalise_failed", f"{survey}: {type(exc).__name__}: {str(exc)[:300]}") from exc


def check_cutouts(alert: NormalisedAlert, max_cutout_bytes: int) -> None:
    """Cutouts stay raw in the batch: bound what one alert may bring."""
    for kind, data in alert.cutouts.items():
        if data is not None and len(data) > max_cutout_bytes:
            raise DecodeError("cutout_too_large",
                              f"cutout{kind} of {len(data)} bytes, limit {max_cutout_bytes}")


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
