"""``alert-broker train badamp`` and ``alert-broker score badamp``: the filter's own commands,
found by the CLI through :attr:`BadampFilter.commands` (the runtime imports no filter)."""
from __future__ import annotations

import argparse

from filters.base import print_rows


def train(argv: list[str]) -> int:
    from filters.badamp.train import DEFAULT_ALERTS, DEFAULT_SNAD, train_badamp

    p = argparse.ArgumentParser(prog="alert-broker train badamp",
                                description="train both views, look at real LSSTCam alerts, write the model card")
    p.add_argument("--out", default="filters/badamp/artifacts", help="artifact directory")
    p.add_argument("--snad-csv", default=DEFAULT_SNAD, help="SNAD feature table with labels")
    p.add_argument("--alerts", nargs="+", default=DEFAULT_ALERTS, help="real alert files/directories for injections")
    p.add_argument("--max-evals", type=int, default=20, help="hyper-parameter search evaluations per outer fold")
    p.add_argument("--exposures", type=int, default=400, help="synthetic training exposures")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--reuse-judgement", action="store_true",
                   help="take the object model's outer-fold verdicts from an earlier run in --out")
    a = p.parse_args(argv)
    train_badamp(a.out, a.snad_csv, a.alerts, max_evals=a.max_evals, n_exposures=a.exposures, seed=a.seed,
                 reuse_judgement=a.reuse_judgement)
    return 0


def score(argv: list[str]) -> int:
    from filters.badamp.filter import score_snad_table

    p = argparse.ArgumentParser(prog="alert-broker score badamp",
                                description="score a table in SNAD feature format with the object-history model")
    p.add_argument("--snad-features", required=True, metavar="FILE.csv")
    p.add_argument("--model-dir", help="artifacts to use instead of the packaged ones")
    p.add_argument("--json", action="store_true", help="one JSON object per row")
    a = p.parse_args(argv)
    print_rows(score_snad_table(a.snad_features, a.model_dir), a.json)
    return 0


