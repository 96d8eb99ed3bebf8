"""Every Prometheus instrument of the broker, defined once, with labels."""
from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_SCORE_BUCKETS = tuple(i / 20 for i in range(1, 21))

CONSUMED = Counter("alert_broker_messages_consumed_total", "Kafka messages consumed", ["topic"], registry=REGISTRY)
DECODED = Counter("alert_broker_alerts_decoded_total", "Alerts decoded and normalised", ["survey"], registry=REGISTRY)
ANNOTATED = Counter("alert_broker_alerts_annotated_total", "Annotation records acknowledged by Kafka", ["survey"], registry=REGISTRY)
ROUTED = Counter("alert_broker_alerts_routed_total", "Alerts forwarded to a filtered topic", ["topic"], registry=REGISTRY)
DEAD_LETTERED = Counter("alert_broker_dead_letters_total", "Messages sent to the dead-letter topic", ["reason"], registry=REGISTRY)
BATCHES = Counter("alert_broker_batches_total", "Micro-batches fully processed and committed", registry=REGISTRY)
BATCH_SIZE = Histogram("alert_broker_batch_size", "Messages per micro-batch", buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000), registry=REGISTRY)
STAGE_SECONDS = Histogram("alert_broker_stage_seconds", "Time per batch in each stage", ["stage"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
END_TO_END_SECONDS = Histogram("alert_broker_end_to_end_seconds", "From the Kafka timestamp of an input message to the acknowledgement of its outputs", buckets=_LATENCY_BUCKETS, registry=REGISTRY)
CONSUMER_LAG = Gauge("alert_broker_consumer_lag", "High watermark minus the next offset to consume", ["topic", "partition"], registry=REGISTRY)
COMMITTED_OFFSET = Gauge("alert_broker_committed_offset", "Last committed offset", ["topic", "partition"], registry=REGISTRY)
REBALANCES = Counter("alert_broker_rebalances_total", "Partition assignment changes", ["kind"], registry=REGISTRY)
ASSIGNED_PARTITIONS = Gauge("alert_broker_assigned_partitions", "Partitions currently assigned", registry=REGISTRY)
HELD_ALERTS = Gauge("alert_broker_exposure_held_alerts", "Alerts held until their exposure run is complete", registry=REGISTRY)
PRODUCER_QUEUE = Gauge("alert_broker_producer_queue_depth", "Messages waiting in the producer queue", registry=REGISTRY)
TRANSIENT_FAULTS = Counter("alert_broker_transient_faults_total", "Faults outside the messages that paused the pipeline or were retried (schema_registry, commit)", ["kind"], registry=REGISTRY)
DELIVERY_ERRORS = Counter("alert_broker_delivery_errors_total", "Produce requests that failed", ["topic"], registry=REGISTRY)

FILTER_SCORED = Counter("alert_broker_filter_scored_total", "Alerts given a score", ["filter"], registry=REGISTRY)
FILTER_NULL = Counter("alert_broker_filter_null_total", "Alerts left without a score", ["filter", "reason"], registry=REGISTRY)
FILTER_ERRORS = Counter("alert_broker_filter_errors_total", "Batches in which a filter raised", ["filter"], registry=REGISTRY)
FILTER_SCORE = Histogram("alert_broker_filter_score", "Distribution of scores", ["filter"], buckets=_SCORE_BUCKETS, registry=REGISTRY)
FILTER_INFO = Info("alert_broker_filter", "Loaded filter versions", ["filter"], registry=REGISTRY)
FILTER_DRIFT = Gauge("alert_broker_filter_feature_psi", "Population stability index of a live feature against the training set", ["filter", "feature"], registry=REGISTRY)


def reason_label(reason: str) -> str:
    """Bound label cardinality: ``missing:rb`` and ``missing:fwhm`` both count as ``missing``."""
    return reason.split(":", 1)[0]


def stage_totals() -> dict[str, float]:
    """Seconds spent per pipeline stage so far (the sums of ``STAGE_SECONDS``)."""
    out = {}
    for metric in STAGE_SECONDS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_sum"):
                out[sample.labels["stage"]] = round(sample.value, 3)
    return out


def observe_many(histogram, values) -> None:
    """``histogram.observe(v)`` for every v, in one pass (a batch's scores or waits: one Python
    call per alert was a measurable share of the pipeline's own work). prometheus_client has
    no bulk observe; this fills the same bucket and sum values its ``observe`` fills (a test
    compares the two), relying on the instrument's ``_upper_bounds``/``_buckets``/``_sum``."""
    values = np.asarray(values, dtype=float).reshape(-1)
    if not len(values):
        return
    # observe puts v in the first bucket whose upper bound is >= v (buckets are not cumulative
    # until exported).
    counts = np.bincount(np.searchsorted(histogram._upper_bounds, values, side="left"),
                         minlength=len(histogram._upper_bounds))
    for bucket, count in zip(histogram._buckets, counts.tolist()):
        if count:
            bucket.inc(count)
    histogram._sum.inc(float(values.sum()))
