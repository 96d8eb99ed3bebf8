"""Replay alert files into a topic: one Kafka message per alert, framing preserved.

Inputs: single-alert ``.avro`` files, multi-record containers (split into one single-record
container per alert, each record's bytes kept as written), Confluent-framed files,
directories (recursive) and ``.tar.gz`` archives such as ZTF's public nightly tarballs.
Files that cannot be decoded are sent unchanged: judging them is the pipeline's job.
"""
from __future__ import annotations

import tarfile
import time
from pathlib import Path
from typing import Iterator

from confluent_kafka import Producer
from tqdm import tqdm

from broker.codec import DecodeError, Decoder, split_container


def iter_payloads(paths: list[str]) -> Iterator[tuple[str, bytes]]:
    """(name, file bytes) for every alert file under ``paths``, in a stable order."""
    for p in paths:
        path = Path(p)
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.is_file():
                    yield from iter_payloads([str(f)])
        elif path.name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(path) as tar:
                for member in tar:
                    if member.isfile() and member.name.endswith(".avro"):
                        yield f"{path}!{member.name}", tar.extractfile(member).read()
        elif path.suffix == ".avro":
            yield str(path), path.read_bytes()


def messages_for(data: bytes, decoder: Decoder) -> list[bytes]:
    try:
        return split_container(data, decoder)
    except DecodeError:
        return [data]


def split_payloads(paths: list[str], decoder: Decoder) -> list[bytes]:
    """The single-alert messages of ``paths``: each file's alerts one message each."""
    return [m for _, data in iter_payloads(paths) for m in messages_for(data, decoder)]


def replay(paths: list[str], bootstrap: str, topic: str, decoder: Decoder,
           rate: float | None = None, loop: int = 1, progress: bool = True,
           producer: Producer | None = None, payloads: list[bytes] | None = None) -> int:
    """The alerts of ``paths`` (or the ready ``payloads`` split from them) produced ``loop``
    times over, at ``rate`` per second (None: as fast as they go); how many were sent."""
    producer = producer or Producer({"bootstrap.servers": bootstrap, "acks": "all",
                                     "enable.idempotence": True, "linger.ms": 5,
                                     "message.max.bytes": 20_000_000,
                                     "log.connection.close": False})
    if payloads is None:
        payloads = split_payloads(paths, decoder)
    errors: list = []
    sent = 0
    start = time.monotonic()
    bar = tqdm(total=len(payloads) * loop, unit="alert", disable=not progress)
    for _ in range(loop):
        for value in payloads:
            if rate:
                wait = start + sent / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            while True:
                try:
                    producer.produce(topic, value=value, on_delivery=lambda e, _m: e and errors.append(e))
                    break
                except BufferError:
                    producer.poll(0.2)
            producer.poll(0)
            sent += 1
            bar.update(1)
    bar.close()
    producer.flush(60)
    if errors:
        raise RuntimeError(f"{len(errors)} of {sent} messages failed: {errors[0]}")
    return sent
