"""One frozen, typed settings model: defaults < YAML file < environment < command-line flags.

Environment variables use the prefix ``ALERT_BROKER__`` and ``__`` between levels, e.g.
``ALERT_BROKER__KAFKA__SASL_PASSWORD``. Secrets are ``SecretStr`` (never printed) and may also
come from a file (``*_file``), which is how a Kubernetes Secret is mounted; never put them in
the YAML file that becomes a ConfigMap.
"""
from __future__ import annotations

import math
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

_yaml_path: ContextVar[Path | None] = ContextVar("_yaml_path", default=None)


def _read_secret(value: SecretStr | None, path: str | None) -> str | None:
    if value is not None:
        return value.get_secret_value()
    if path:
        return Path(path).read_text().strip()
    return None


class SettingsError(ValueError):
    """A setting that cannot work; the message names it."""


class _Section(BaseModel):
    # A typo in a nested key (``bootstrap_servers``, ``sasl_pasword``) is an error, not a default.
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    bootstrap: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None  # Rubin: SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: str | None = None
    ssl_ca_location: str | None = None
    session_timeout_ms: int = 10_000
    # The longest a fetch may wait at the broker for new messages. Apache Kafka answers as soon
    # as one arrives, so this only sets how often an idle consumer asks; Tansu answers after
    # about half of it whatever arrived (librdkafka's 500: 0.13 s median delivery, 50: 0.01 s),
    # and at 256 LSST alerts/s the pipeline's p99 went 1.02 -> 0.80-0.87 s (bench e2e's load).
    fetch_wait_max_ms: int = Field(50, ge=1, le=10_000)
    # Passed through to librdkafka unchanged (consumer and producer), for what is not above.
    consumer_extra: dict[str, Any] = Field(default_factory=dict)
    producer_extra: dict[str, Any] = Field(default_factory=dict)

    def client_config(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username or ""
            conf["sasl.password"] = _read_secret(self.sasl_password, self.sasl_password_file) or ""
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = self.ssl_ca_location
        return conf


class SchemaRegistrySettings(_Section):
    url: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: str | None = None
    # Annotations are framed with the id the registry gives their schema under the subject
    # "<annotations_topic>-value" (registered at start-up). A registry that refuses writes
    # needs the id of a schema registered by hand here; without a registry the fixed id
    # 1000001 frames them (readers then take the schema from the package).
    annotation_schema_id: int | None = Field(None, ge=0)

    def secret(self) -> str | None:
        return _read_secret(self.password, self.password_file)


class RouteRule(_Section):
    topic: str
    condition: str  # e.g. "quality.score > 0.5 and survey == 'ztf'"
    format: Literal["original", "ocf", "fink"] = "original"  # see broker/output_formats.py


class BatchSettings(_Section):
    max_alerts: int = Field(500, ge=1)
    max_wait_ms: int = Field(200, ge=1)  # a batch waits at most this for more alerts (latency)
    # Worker processes that decode the next batch while this one is scored (broker/decode_pool.py);
    # 0 decodes in the pipeline's own process. Each worker costs ~100 MB and most of a core.
    decode_workers: int = Field(1, ge=0, le=64)
    # Whole exposure runs for filters that declare exposure_context (broker/exposure_runs.py):
    # a partition's last run is held until the next exposure starts, or the partition has been
    # quiet this long (seconds spent waiting for messages; 0 turns holding off), or the run is
    # older or larger than the bounds below.
    exposure_quiet_s: float = Field(2.0, ge=0)
    exposure_max_hold_s: float = Field(60.0, gt=0)
    exposure_max_alerts: int = Field(20_000, ge=1)


class LimitSettings(_Section):
    """Bounds against hostile or broken streams; what exceeds one is dead-lettered with a reason."""

    max_message_bytes: int = Field(10_000_000, ge=1)  # reason too_large
    max_decompressed_bytes: int = Field(16_000_000, ge=1)  # decompressed_too_large
    max_records_per_message: int = Field(10_000, ge=1)  # too_many_records
    max_history_points: int = Field(20_000, ge=1)  # history_too_long
    max_cutout_bytes: int = Field(4_000_000, ge=1)  # cutout_too_large
    # A dead letter carries at most this much of the original (the rest stays in the input
    # topic at the offset its headers give): Kafka's default topic limit is 1 MB.
    max_dead_letter_bytes: int = Field(900_000, ge=1024)
    producer_queue_messages: int = Field(100_000, ge=100)  # queue.buffering.max.messages


class TimeoutSettings(_Section):
    """How long to wait, and how to back off, when something outside a message fails."""

    startup_s: float = Field(30.0, gt=0)  # Kafka must answer within this at start-up
    delivery_s: float = Field(30.0, gt=0)  # a batch's outputs acknowledged within this, or exit
    filter_s: float = Field(60.0, gt=0)  # one filter call; past it the alerts get "timeout"
    backoff_initial_s: float = Field(0.5, gt=0)  # transient faults: first pause, doubled
    backoff_max_s: float = Field(30.0, gt=0)
    broker_probe_s: float = Field(5.0, gt=0)  # idle: ask Kafka for metadata this often
    group_wait_s: float = Field(60.0, gt=0)  # with exit_when_idle_s: waiting for the group counts after this


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ALERT_BROKER__", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    kafka: KafkaSettings = KafkaSettings()
    schema_registry: SchemaRegistrySettings = SchemaRegistrySettings()
    input_topics: list[str] = ["ztf-alerts"]
    group_id: str = "alert-broker"
    annotations_topic: str = "alerts.annotations"
    # confluent: 0x00 + schema id + Avro (the registry's id, see schema_registry); ocf: an Avro
    # container file per annotation, readable by any Avro reader without a registry.
    annotations_format: Literal["confluent", "ocf"] = "confluent"
    dlq_topic: str = "alerts.dlq"
    routes: list[RouteRule] = []
    batch: BatchSettings = BatchSettings()
    filters: list[str] | None = None  # None: every installed filter
    filter_options: dict[str, dict[str, Any]] = {}
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Threads the filters' numeric libraries (torch, XGBoost, BLAS, numba) may use in the
    # pipeline's process; None: the cores the decode workers leave, at least 1. More threads than
    # idle cores spin and steal the workers' CPU (bench e2e, 2 cores, one worker: 2 threads cost
    # ~15% of the ZTF throughput).
    compute_threads: int | None = Field(None, ge=1, le=256)
    limits: LimitSettings = LimitSettings()
    timeouts: TimeoutSettings = TimeoutSettings()
    metrics_port: int | None = None
    exit_when_idle_s: float | None = None
    shutdown_deadline_s: float = 30.0
    log_level: str = "INFO"

    @field_validator("filters", "input_topics", mode="before")
    @classmethod
    def _split_commas(cls, v):
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

    @model_validator(mode="after")
    def _check_routes(self):
        from broker.annotations import RouteCondition  # annotations imports settings' siblings

        for i, rule in enumerate(self.routes):
            try:
                RouteCondition(rule.condition, filters=self.enabled_filters())
            except ValueError as exc:
                raise ValueError(f"routes[{i}] ({rule.topic}): {exc}") from None
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ):
        sources = [init_settings, env_settings]
        path = _yaml_path.get()
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> "Settings":
        """Settings from ``path`` (YAML), the environment, then ``overrides`` (flags)."""
        if path is not None and not Path(path).is_file():
            raise SettingsError(f"config file {path} does not exist")
        token = _yaml_path.set(Path(path) if path else None)
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        finally:
            _yaml_path.reset(token)

    def enabled_filters(self) -> list[str]:
        """The filters to run: those named, or every installed one (entry points)."""
        if self.filters is not None:
            return list(self.filters)
        from filters.base import discover  # the plugin interface, not a plugin

        return sorted(discover())

    def resolved_compute_threads(self) -> int:
        if self.compute_threads is not None:
            return self.compute_threads
        return max(1, usable_cores() - self.batch.decode_workers)

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        try:
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            return "cpu"


def usable_cores() -> int:
    """The CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (a
    Kubernetes CPU limit; the node's core count says nothing about it)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return n
