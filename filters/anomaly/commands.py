"""``alert-broker train anomaly`` (and ``--feedback``) and ``alert-broker score anomaly``."""
from __future__ import annotations

import argparse
from pathlib import Path

from filters.base import print_rows

ARTIFACTS = "filters/anomaly/artifacts"


def train(argv: list[str]) -> int:
    from filters.anomaly.train import DEFAULT_ALERTS, DEFAULT_SNAD, SIZES, apply_feedback, train_anomaly

    p = argparse.ArgumentParser(prog="alert-broker train anomaly",
                                description="fit the reference model (v1) and its card, or with --feedback write "
                                            "a new model version from expert labels")
    p.add_argument("--out", default=ARTIFACTS, help="model directory (versions v1, v2, ... inside)")
    p.add_argument("--snad-csv", default=DEFAULT_SNAD, help="SNAD feature table with labels (held-out artefacts)")
    p.add_argument("--alerts", nargs="+", default=DEFAULT_ALERTS, help="real alerts for the real-data check")
    p.add_argument("--size", type=float, default=1.0, help="scale the simulated populations (tests use 0.05)")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--feedback", metavar="LABELS.csv", help="oid,interesting(yes/no)[,SNAD feature columns]")
    p.add_argument("--features", metavar="FILE.csv", help="SNAD feature table to look the labelled objects up in")
    p.add_argument("--from-version", help="version to start from (default: the newest)")
    a = p.parse_args(argv)
    if a.feedback:
        apply_feedback(a.out, a.feedback, a.features, a.from_version)
        return 0
    sizes = {k: max(50, int(v * a.size)) for k, v in SIZES.items()}
    train_anomaly(a.out, a.snad_csv, a.alerts, sizes=sizes, seed=a.seed)
    return 0


def score(argv: list[str]) -> int:
    import numpy as np

    from filters.anomaly.model import load_version
    from filters.anomaly.train import load_snad

    p = argparse.ArgumentParser(prog="alert-broker score anomaly",
                                description="score a table in SNAD feature format (ZTF model)")
    p.add_argument("--snad-features", required=True, metavar="FILE.csv")
    p.add_argument("--model-dir", default=None)
    p.add_argument("--model-version", default=None)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    from filters.anomaly.filter import ARTIFACTS as PACKAGED

    version, models, _ = load_version(Path(a.model_dir or PACKAGED), a.model_version, "cpu")
    ids, X, _ = load_snad(a.snad_features)
    m = models["ztf"]
    s = m.score(m.scaled(X))
    print_rows([{"oid": str(o), "score": float(v), "model_version": version} for o, v in zip(ids, np.asarray(s))], a.json)
    return 0
