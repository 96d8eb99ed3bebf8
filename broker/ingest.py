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
from broker.surveys import check_cutouts, normalise, survey_of_schema


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
    return Decoder(SchemaResolver(registry), limits=limits, check_schema_name=survey_of_schema)


def decode_messages(decoder: Decoder, messages: list, settings: Settings) -> Decoded:
    out = Decoded()
    lim = settings.limits
    for m in messages:
        value = m.value()
        try:
            decoded = decoder.decode(value)
            # The padded light-curve arrays of a batch grow with its longest history.
            alerts = [normalise(r, decoded, lim.max_history_points) for r in decoded.records]
            for alert in alerts:
                check_cutouts(alert, lim.max_cutout_bytes)
        except DecodeError as exc:
            out.dead.append((m, exc))
            continue
        except TransientError:
            raise
        except Exception as exc:  # defence in depth: nothing a message holds may stop the stream
            out.dead.append((m, DecodeError("normalise_failed", f"{type(exc).__name__}: {str(exc)[:300]}")))
            continue
        multi = len(alerts) > 1
        for j, alert in enumerate(alerts):
            out.alerts.append(alert)
            if multi:  # one alert of a multi-record file: its own single-record container
                a, b, raw = decoded.record_spans[j]
                out.forward.append(encode_container(decoded.schema_text, [raw[a:b]]))
            else:
                out.forward.append(value)
            out.source.append(m)
    return out
