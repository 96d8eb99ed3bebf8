"""``alert-broker train transit``, ``alert-broker score transit`` and the transit part of
``alert-broker bench``, found by the CLI through :attr:`TransitFilter.commands`."""
from __future__ import annotations

import argparse
import time

from filters.base import print_rows


def train(argv: list[str]) -> int:
    from filters.transit.train import reevaluate_transit, train_transit

    p = argparse.ArgumentParser(prog="alert-broker train transit",
                                description="simulate, search, train the CNN ensemble, write the model card")
    p.add_argument("--out", default="filters/transit/artifacts", help="artifact directory")
    p.add_argument("--n-train", type=int, default=20000, help="simulated training light curves")
    p.add_argument("--n-test", type=int, default=1500, help="held-out light curves, another seed")
    p.add_argument("--epochs", type=int, default=25, help="training epochs")
    p.add_argument("--members", type=int, default=5, help="networks in the ensemble, one seed each")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--cache", metavar="DIR",
                   help="keep the simulated, searched light curves here and reuse them (a fresh folder after a search change)")
    p.add_argument("--reevaluate", action="store_true",
                   help="no fitting: calibrate and report the model in --out again on light curves searched by the "
                        "current code (after a search or vetting change)")
    a = p.parse_args(argv)
    if a.reevaluate:
        reevaluate_transit(a.out, n_test=a.n_test, cache=a.cache)
        return 0
    train_transit(a.out, n_train=a.n_train, n_test=a.n_test, epochs=a.epochs, seed=a.seed, members=a.members,
                  cache=a.cache)
    return 0


def score(argv: list[str]) -> int:
    from filters.transit.filter import score_files

    p = argparse.ArgumentParser(prog="alert-broker score transit", description="score light-curve files")
    p.add_argument("files", nargs="*", help="light curves: comma/tab/space tables, .npy/.npz, Kepler/K2/TESS FITS")
    p.add_argument("--devset", action="store_true",
                   help="score the real development set (filters/transit/devset) and print its table")
    p.add_argument("--combine", action="store_true", help="join the files into one light curve")
    p.add_argument("--plot", metavar="DIR", help="write a PNG of each folded light curve")
    p.add_argument("--model-dir", help="artifacts to use instead of the packaged ones")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--json", action="store_true", help="one JSON object per row")
    a = p.parse_args(argv)
    if a.devset:
        import json

        from filters.transit.development import evaluate, markdown

        result = evaluate(a.model_dir, a.device)
        print(json.dumps(result, default=float, indent=1) if a.json else markdown(result))
        return 0
    if not a.files:
        p.error("give light-curve files, or --devset")
    print_rows(score_files(a.files, a.combine, a.model_dir, a.device, a.plot), a.json)
    return 0


def bench(device: str = "cpu", sizes=(1, 16, 128, 1024)) -> dict:
    """The CNN on its own by batch size (the per-light-curve search does not batch), and one search."""
    from filters.transit.filter import TransitScorer
    from filters.transit.lightcurve import prepare
    from filters.transit.search import find_candidates
    from filters.transit.simulate import simulate

    scorer = TransitScorer(device=device)
    sim = next(s for s in simulate(20, seed=3) if s.label == 1 and s.cadence == "k2")
    t0 = time.perf_counter()
    cand = find_candidates(prepare(sim.lc), max_candidates=1)[0]
    search_ms = (time.perf_counter() - t0) * 1e3
    rows = {}
    for n in sizes:
        cands = [cand] * n
        scorer.probabilities(cands)
        t0 = time.perf_counter()
        scorer.probabilities(cands)
        rows[n] = (time.perf_counter() - t0) / n * 1e6
    cells = ", ".join(f"{n}: {v:.0f}" for n, v in rows.items())
    summary = (f"transit CNN ({device}): us/candidate by batch size {{{cells}}} ({rows[sizes[0]] / rows[sizes[-1]]:.1f}x); "
               f"BLS search {search_ms:.0f} ms per {len(sim.lc)}-point light curve")
    return {"cnn_us_per_candidate": rows, "ratio_smallest_to_largest": rows[sizes[0]] / rows[sizes[-1]],
            "search_ms_per_light_curve": search_ms, "light_curve_points": len(sim.lc), "summary": summary}
