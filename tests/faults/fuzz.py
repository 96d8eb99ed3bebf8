"""Mutation fuzzing of the decode stage, from the real samples.

``python -m tests.faults.fuzz --n 200000`` is the long run (figures in the README); the
fault suite runs a short one. Every mutated message must come out as alerts or as a dead
letter with a reason: no other exception, none slower than 1 s, memory bounded.
"""
from __future__ import annotations

import argparse
import random
import resource
import time
from collections import Counter
from pathlib import Path

from broker.ingest import build_decoder, decode_messages
from broker.settings import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "alerts"


class Message:
    """The accessors of ``confluent_kafka.Message`` that the decode stage reads."""

    def __init__(self, value: bytes, offset: int = 0):
        self._value = value
        self._offset = offset

    def value(self):
        return self._value

    def topic(self):
        return "fuzz"

    def partition(self):
        return 0

    def offset(self):
        return self._offset


def seeds() -> list[bytes]:
    return [p.read_bytes() for p in sorted(FIXTURES.rglob("*.avro"))]


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4, 16))):
        op = rng.randrange(6)
        if not b:
            b = bytearray(rng.randbytes(rng.randrange(1, 64)))
        i = rng.randrange(len(b))
        if op == 0:  # flip bits
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # an interesting byte (varint extremes, markers)
            b[i] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE))
        elif op == 2:  # truncate
            del b[i:]
        elif op == 3:  # insert random bytes
            b[i:i] = rng.randbytes(rng.randrange(1, 32))
        elif op == 4:  # duplicate a slice
            j = rng.randrange(i, min(len(b), i + 4096) + 1)
            b[i:i] = b[i:j]
        else:  # overwrite with a large varint
            b[i:i + 5] = bytes((0xFF, 0xFF, 0xFF, 0xFF, 0x0F))
    return bytes(b)


def run(n: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    settings = Settings.load(None)
    decoder = build_decoder(settings)
    corpus = seeds()
    outcomes: Counter = Counter()
    slowest = 0.0
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    for _ in range(n):
        data = mutate(rng.choice(corpus), rng)
        t0 = time.perf_counter()
        out = decode_messages(decoder, [Message(data)], settings)  # raises only on a bug
        slowest = max(slowest, time.perf_counter() - t0)
        outcomes["decoded" if out.alerts else out.dead[0][1].reason] += 1
    return {"messages": n, "seconds": round(time.perf_counter() - start, 1), "slowest_s": round(slowest, 4),
            "rss_growth_mb": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024, 1),
            "outcomes": dict(outcomes.most_common())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    print(run(ap.parse_args().n, ap.parse_args().seed))


if __name__ == "__main__":
    main()
