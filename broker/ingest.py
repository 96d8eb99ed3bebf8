"""The decode stage: Kafka messages in, normalised alerts or dead letters out.

Every message ends here as alerts or as a dead letter with a reason; the only exception
that leaves is :class:`~broker.codec.TransientError` (a fault outside the message, such as
an unreachable schema registry), on which the pipeline pauses and tries the batch again.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from broker.batch import NormalisedAlert
from broker.codec import DecodeError, DecodeLimits, Decoder, TransientError, encode_container
from broker.schema_store import RegistryClient, SchemaResolver
from broker.settings import Settings
from broker.surveys import check_cutouts, history_projection, normalise, survey_of_schema


@dataclass
class Decoded:
    alerts: list[NormalisedAlert] = field(default_factory=list)
    forward: list[bytes] = field(default_factory=list)  # bytes to forward, per alert
    source: list = field(default_factory=list)  # the Kafka message, per alert
    dead: list[tuple] = field(default_factory=list)  # (message, DecodeError)


def build_decoder(settings: Settings) -> Decoder:
    reg, lim = settings.schema_registry, settings.limits
    registry = RegistryClient(reg.url, reg.username, reg.secret()) if reg.url else None
    limits = DecodeLimits(lim.max_message_bytes, lim.max_decompressed_bytes, lim.max_records_per_message)
    return Decoder(SchemaResolver(registry), limits=limits, check_schema_name=survey_of_schema,
                   project=history_projection)


@dataclass
class MessageOutcome:
    """What one message decoded to; plain data, so a decode worker process can send it back."""
    alerts: list[NormalisedAlert]
    forward: list[bytes] | None = None  # per alert, for a multi-record file; None: the message's bytes
    dead: tuple[str, str] | None = None  # (reason, text) when the message is a dead letter


def decode_value(decoder: Decoder, value: bytes | None, settings: Settings,
                 keep_cutouts: bool = True) -> MessageOutcome:
    """One message's alerts, or its dead-letter reason; raises only :class:`TransientError`.
    ``keep_cutouts`` False: stamps are checked against the size limit, then dropped (no
    filter reads them; see ``Filter.cutouts``)."""
    lim = settings.limits
    try:
        decoded = decoder.decode(value)
        # The padded light-curve arrays of a batch grow with its longest history.
        alerts = [normalise(r, decoded, lim.max_history_points) for r in decoded.records]
        for alert in alerts:
            check_cutouts(alert, lim.max_cutout_bytes)
            if not keep_cutouts:
                alert.cutouts = {}
    except DecodeError as exc:
        return MessageOutcome([], dead=(exc.reason, str(exc)))
    except TransientError:
        raise
    except Exception as exc:  # defence in depth: nothing a message holds may stop the stream
        return MessageOutcome([], dead=("normalise_failed", f"{type(exc).__name__}: {str(exc)[:300]}"))
    if len(alerts) == 1:
        return MessageOutcome(alerts)
    # One alert of a multi-record file is forwarded as its own single-record container.
    return MessageOutcome(alerts, [encode_container(decoded.schema_text, [raw[a:b]])
                                   for a, b, raw in decoded.record_spans])


def assemble(messages: list, outcomes: list[MessageOutcome]) -> Decoded:
    """The batch's :class:`Decoded` from its messages and their outcomes, in order."""
    out = Decoded()
    for m, o in zip(messages, outcomes, strict=True):
        if o.dead is not None:
            out.dead.append((m, DecodeError(*o.dead)))
            continue
        out.alerts.extend(o.alerts)
        out.forward.extend(o.forward if o.forward is not None else [m.value()] * len(o.alerts))
        out.source.extend([m] * len(o.alerts))
    return out


def decode_messages(decoder: Decoder, messages: list, settings: Settings, keep_cutouts: bool = True) -> Decoded:
    return assemble(messages, [decode_value(decoder, m.value(), settings, keep_cutouts) for m in messages])
