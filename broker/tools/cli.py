"""The ``alert-broker`` command: kafka | replay | run | tail | demo | train | score | bench."""
from __future__ import annotations

import argparse
import logging
import sys

from broker import logs

log = logging.getLogger("alert_broker")


def _cmd_kafka(args) -> int:
    from broker.tools.embedded import EmbeddedBroker

    import signal

    broker = EmbeddedBroker(args.port, quiet=False).start()
    print(f"tansu listening on {broker.bootstrap} (memory storage); Ctrl-C or SIGTERM stops it", flush=True)

    def stop(*_args):
        raise KeyboardInterrupt

    # SIGTERM is how scripts, systemd and Kubernetes stop things; SIGINT is set explicitly
    # too, since a shell that starts us in the background leaves it ignored.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        return broker.wait()
    except KeyboardInterrupt:
        broker.stop()
        return 0


def _cmd_replay(args) -> int:
    from broker.codec import Decoder
    from broker.tools.replay import replay
    from broker.schema_store import SchemaResolver

    sent = replay(args.paths, args.bootstrap, args.topic, Decoder(SchemaResolver()),
                  rate=args.rate, loop=args.loop, progress=not args.quiet)
    print(f"sent {sent} messages to {args.topic}")
    return 0


def _settings_from(args):
    from broker.settings import Settings

    kafka = {"bootstrap": args.bootstrap} if args.bootstrap else None
    return Settings.load(
        args.config,
        kafka=kafka,
        input_topics=args.input_topic or None,
        group_id=args.group,
        annotations_topic=args.annotations_topic,
        dlq_topic=args.dlq_topic,
        filters=args.filters,
        exit_when_idle_s=args.exit_when_idle,
        metrics_port=args.metrics_port,
    )


def _cmd_run(args) -> int:
    from broker import metrics
    from broker.decode_pool import peak_rss_mib
    from broker.http import HealthServer
    from broker.pipeline import EXIT_DELIVERY_FAILED, DeliveryFailed, Pipeline, StartupError

    try:
        settings = _settings_from(args)
        logs.configure(settings.log_level)
        pipeline = Pipeline(settings)
    except Exception as exc:  # settings, filters or clients that cannot start: one clear line
        return _fail(exc)
    from broker.avro_records import engine_in_words

    log.info("avro reader", extra={"engine": engine_in_words()})
    pipeline.install_signal_handlers()
    server = HealthServer(pipeline, settings.metrics_port).start() if settings.metrics_port else None
    try:
        summary = pipeline.run()
    except StartupError as exc:
        return _fail(exc)
    except DeliveryFailed as exc:
        log.error("stopping: outputs not delivered", extra={"error": str(exc)})
        return pipeline.shutdown.exit_within_deadline(EXIT_DELIVERY_FAILED)
    finally:
        if server:
            server.stop()
    log.info("stopped", extra={"consumed": summary.consumed, "annotated": summary.annotated,
                               "dead_lettered": sum(summary.dead_lettered.values()),
                               "seconds": round(summary.seconds, 2),
                               "processing_seconds": round(summary.processing_seconds, 3),
                               "holding_seconds": round(summary.holding_seconds, 3),
                               "join_seconds": summary.join_seconds,
                               "first_message_at": summary.first_message_at,
                               "last_commit_at": summary.last_commit_at,
                               "peak_rss_mib": round(peak_rss_mib(), 1),
                               "worker_peak_rss_mib": round(pipeline.decoding.worker_peak_rss_mib, 1),
                               "decode_workers": settings.batch.decode_workers,
                               "stage_seconds": metrics.stage_totals()})
    return pipeline.shutdown.exit_within_deadline(0)


def _fail(exc: Exception) -> int:
    """One line per problem on stderr, naming the setting; exit status 2 (usage)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            msg = err["msg"].removeprefix("Value error, ")
            print(f"alert-broker: setting {where}: {msg}", file=sys.stderr)
    else:
        print(f"alert-broker: {exc}", file=sys.stderr)
    return 2


def _cmd_tail(args) -> int:
    from broker.tools.tail import tail

    tail(args.bootstrap, args.topic, args.from_beginning, args.exit_when_idle, save_dir=args.save)
    return 0


def _cmd_demo(args) -> int:
    from broker.tools.demo import run_demo

    return run_demo(filters=args.filters, sample_dir=args.samples)


def _filter_command(args, command: str) -> int:
    """``alert-broker train|score NAME ...``: the filter's own command, with its own options."""
    from filters.base import filter_commands

    try:
        hook = filter_commands(args.filter, command)
    except LookupError as exc:
        return _fail(exc)
    if hook is None:
        return _fail(f"filter {args.filter!r} has no {command} command")
    return hook(args.rest) or 0


def _cmd_train(args) -> int:
    return _filter_command(args, "train")


def _cmd_score(args) -> int:
    return _filter_command(args, "score")


def _cmd_bench(args) -> int:
    if args.mode == "e2e":
        from broker.tools.bench_e2e import run_e2e

        lengths = tuple(int(n) for n in args.history_lengths.split(","))
        run_e2e(args.surveys.split(","), args.scale, args.latency_s, args.out, args.markdown, lengths, args.device)
        return 0
    from broker.tools.bench import run_bench

    run_bench(args.device or "cpu", args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alert-broker", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    k = sub.add_parser("kafka", help="run the embedded Kafka-protocol broker (Tansu)")
    k.add_argument("--port", type=int, default=9092)
    k.set_defaults(func=_cmd_kafka)

    r = sub.add_parser("replay", help="send alert files to a topic, one message per alert")
    r.add_argument("paths", nargs="+")
    r.add_argument("--bootstrap", required=True)
    r.add_argument("--topic", required=True)
    r.add_argument("--rate", type=float, help="messages per second (default: as fast as possible)")
    r.add_argument("--loop", type=int, default=1)
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_replay)

    run = sub.add_parser("run", help="run the pipeline")
    run.add_argument("--config", help="YAML settings file")
    run.add_argument("--bootstrap")
    run.add_argument("--input-topic", action="append")
    run.add_argument("--group")
    run.add_argument("--annotations-topic")
    run.add_argument("--dlq-topic")
    run.add_argument("--filters", help="comma-separated filter names")
    run.add_argument("--exit-when-idle", type=float, metavar="SECONDS")
    run.add_argument("--metrics-port", type=int)
    run.set_defaults(func=_cmd_run)

    t = sub.add_parser("tail", help="print a topic as JSON lines")
    t.add_argument("--bootstrap", required=True)
    t.add_argument("--topic", required=True)
    t.add_argument("--from-beginning", action="store_true")
    t.add_argument("--exit-when-idle", type=float, metavar="SECONDS")
    t.add_argument("--save", metavar="DIR", help="also write each message to DIR: alerts as .avro "
                   "container files (fastavro, fink_client's AlertReader), the rest as .json")
    t.set_defaults(func=_cmd_tail)

    d = sub.add_parser("demo", help="embedded broker + replay of bundled alerts + every filter")
    d.add_argument("--filters", help="comma-separated (default: every installed filter)")
    d.add_argument("--samples", help="directory of alerts to replay (default: bundled samples)")
    d.set_defaults(func=_cmd_demo)
    for command, text in (("train", "train a filter's model and write its model card"),
                          ("score", "score files offline with a filter's model")):
        c = sub.add_parser(command, help=text, add_help=False,
                           description=f"alert-broker {command} NAME [OPTIONS]: NAME's own options, "
                                       f"listed by alert-broker {command} NAME --help")
        c.add_argument("filter", metavar="NAME", help="an installed filter")
        c.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        c.set_defaults(func=_cmd_train if command == "train" else _cmd_score)

    b = sub.add_parser("bench", help="micro: decode and filter speed in memory; e2e: through Kafka against "
                                     "the ceiling and the naive design, latency, burst, memory")
    b.add_argument("mode", nargs="?", choices=("micro", "e2e"), default="micro")
    b.add_argument("--device", choices=("cpu", "cuda"),
                   help="the filters' device (micro: default cpu; e2e: default the settings' auto)")
    b.add_argument("--out", help="write the figures as JSON")
    b.add_argument("--surveys", default="ztf,lsst", help="e2e: which surveys' real alerts")
    b.add_argument("--scale", type=float, default=1.0, help="e2e: 1 = 50,000 ZTF and 20,000 LSST alerts")
    b.add_argument("--latency-s", type=float, default=60.0, help="e2e: seconds of offered load per rate")
    b.add_argument("--markdown", help="e2e: write the table (e.g. docs/performance.md)")
    b.add_argument("--history-lengths", default="10,100,1000,10000", help="e2e: history lengths for the cost table")
    b.set_defaults(func=_cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "run":
        logs.configure("ERROR" if args.command == "demo" else "WARNING")
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
