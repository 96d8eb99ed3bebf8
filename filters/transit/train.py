"""``alert-broker train transit``: simulate, search, train the CNN, calibrate, evaluate on a
held-out set simulated with another seed, write weights, metrics and the model card."""
from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from filters.transit.lightcurve import prepare
from filters.transit.model import TransitCNN, TransitEnsemble, load_ensemble, predict_logits, to_arrays
from filters.transit.search import find_candidates, too_little_data
from filters.transit.simulate import DEFAULT_CADENCE_WEIGHTS, simulate


def period_matches(found: float, true: float, tol: float = 0.01) -> bool:
    """Within ``tol`` of the true period or of an integer ratio of it (harmonics: a sparse
    cadence that caught three transits folds as cleanly at a quarter of the period)."""
    for k in (1, 2, 3, 4, 1 / 2, 1 / 3, 1 / 4):
        if abs(found - true * k) <= tol * true * k:
            return True
    return False


# Per light curve, besides its best candidate (see _featurize).
COLUMNS = ("injected", "label", "snr", "snr_expected", "snr_white", "transits_observed", "kind", "cadence", "depth",
           "vetoed")
VETOED_RAW = -20.0  # a vetoed candidate's logit in evaluation: below any threshold, as in the filter
SNR_BINS = [3, 5, 7, 10, 15, 25, 50, 100, 300, 1000, 10000]


def _featurize(args):
    n, seed, weights = args
    rows = []
    for sim in simulate(n, seed, cadence_weights=weights):
        lc = prepare(sim.lc)
        if too_little_data(lc):
            continue
        cands = find_candidates(lc, max_candidates=1)
        if not cands:
            continue
        c = cands[0]
        rows.append({
            "candidate": c, "injected": sim.label,
            "label": int(bool(sim.label and period_matches(c.period, sim.period))),  # found where injected
            "snr": sim.snr_observed, "snr_expected": sim.snr_measured, "snr_white": sim.snr,
            "transits_observed": sim.transits_observed, "kind": sim.kind, "cadence": sim.cadence,
            "depth": c.depth, "vetoed": int(bool(c.vetting))})
    return rows


def _one_thread_each() -> None:
    """Each worker searches with one thread: the pool already spreads over the cores."""
    torch.set_num_threads(1)
    try:
        import numba

        numba.set_num_threads(1)
    except ImportError:
        pass


def build_dataset(n: int, seed: int, workers: int = 2,
                  cadence_weights: tuple[float, ...] = DEFAULT_CADENCE_WEIGHTS) -> dict:
    chunks = [(min(100, n - i), seed * 1000 + i // 100, cadence_weights) for i in range(0, n, 100)]
    # Spawned, not forked: a process that has run the numba search holds an OpenMP (or
    # workqueue) thread pool, and forking it kills or deadlocks the children.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_one_thread_each) as pool:
        rows = [r for part in pool.map(_featurize, chunks) for r in part]
    cands = [r["candidate"] for r in rows]
    g, loc, s = to_arrays(cands)
    data = {k: np.array([r[k] for r in rows]) for k in COLUMNS}
    return {"global": g, "local": loc, "scalars": s, "candidates": cands, **data}


def cached_dataset(cache: str | None, n: int, seed: int,
                   cadence_weights: tuple[float, ...] = DEFAULT_CADENCE_WEIGHTS) -> dict:
    """``build_dataset``, kept in ``cache`` (a folder) when one is given: simulating and
    searching is 90% of a training run, and fitting or evaluating again on the same light
    curves need not repeat it. The file name holds everything the light curves depend on;
    a change to the search makes the cache stale, so give a fresh folder after one."""
    if not cache:
        return build_dataset(n, seed, cadence_weights=cadence_weights)
    import pickle

    path = Path(cache) / f"transit_{n}_{seed}_{'-'.join(f'{w:g}' for w in cadence_weights)}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    data = build_dataset(n, seed, cadence_weights=cadence_weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(data))
    return data


def _augment(g, loc, rng):
    """Small circular shifts and time reversal: the dip need not sit exactly at the centre."""
    shift = int(rng.integers(-4, 5))
    g = torch.roll(g, shift, 1)
    loc = torch.roll(loc, int(rng.integers(-2, 3)), 1)
    if rng.random() < 0.5:
        g, loc = torch.flip(g, [1]), torch.flip(loc, [1])
    return g, loc


def fit(data: dict, epochs: int = 25, seed: int = 0, log=print) -> TransitCNN:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = TransitCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    y = data["label"].astype(np.float32)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    tensors = [torch.as_tensor(data[k]) for k in ("global", "local", "scalars")]
    yt = torch.as_tensor(y)
    per_epoch = 2 * max(len(pos), len(neg))
    for epoch in range(epochs):
        model.train()
        # Balanced batches: as many transits as non-transits in every batch.
        order = np.concatenate([rng.choice(pos, per_epoch // 2), rng.choice(neg, per_epoch // 2)])
        rng.shuffle(order)
        total = 0.0
        for i in range(0, len(order), 64):
            idx = torch.as_tensor(order[i:i + 64])
            g, loc = _augment(tensors[0][idx], tensors[1][idx], rng)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(g, loc, tensors[2][idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        if epoch % 5 == 4 or epoch == epochs - 1:
            log(f"epoch {epoch + 1}: loss {total / len(order):.4f}")
    return model


def fit_ensemble(data: dict, members: int, epochs: int, seed: int, log=print) -> TransitEnsemble:
    """``members`` networks, each fitted as ``fit`` does from seeds ``seed``, ``seed + 1``, ..."""
    ensemble = TransitEnsemble(members)
    for i in range(members):
        log(f"member {i + 1}/{members} (seed {seed + i})")
        ensemble.members[i] = fit(data, epochs=epochs, seed=seed + i, log=log)
    return ensemble.eval()


def reported_logits(model, data: dict) -> tuple[np.ndarray, np.ndarray]:
    """The network's logits, and what the filter reports: vetted-out candidates sink below
    any threshold."""
    cnn = predict_logits(model, data["global"], data["local"], data["scalars"])
    return cnn, np.where(data["vetoed"] == 1, VETOED_RAW, cnn)


def evaluate(model, data: dict, calibration: dict) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    from filters.evaluation import apply_isotonic, bootstrap_ci, recall_at_fpr, roc_auc_ci

    cnn, raw = reported_logits(model, data)
    p = apply_isotonic(calibration, raw)
    y = data["injected"]  # truth: was a planet injected (missed searches count as misses)
    auc, lo, hi = roc_auc_ci(y, raw, n_boot=300)
    rec, thr = recall_at_fpr(y, raw, 0.01)
    # SNR >= 10 under each definition (simulate.Simulated): the primary one is what the
    # sampling caught; the others count the points a uniform cadence would have put in transit.
    strong = (y == 0) | (data["snr"] >= 10)
    rec10 = {name: recall_at_fpr(y[sel], raw[sel], 0.01)[0] for name, sel in {
        "observed": strong,
        "observed_3_transits": strong & ((y == 0) | (data["transits_observed"] >= 3)),
        "expected_measured_noise": (y == 0) | (data["snr_expected"] >= 10),
        "expected_white_noise": (y == 0) | (data["snr_white"] >= 10)}.items()}
    # The 1%-FPR point rests on ~10 negatives: its sampling error is worth stating.
    _, rec10_lo, rec10_hi = bootstrap_ci(y[strong], raw[strong], lambda a, b: recall_at_fpr(a, b, 0.01)[0], n_boot=300)
    bins = SNR_BINS
    pos = y == 1
    by_snr = []
    for a, b in zip(bins[:-1], bins[1:]):
        sel = pos & (data["snr"] >= a) & (data["snr"] < b)
        by_snr.append({"snr": [a, b], "n": int(sel.sum()), "recall": float((raw[sel] >= thr).mean()) if sel.any() else None})
    by_cadence = {}
    for cad in np.unique(data["cadence"]):
        sel = data["cadence"] == cad
        strong_cad = sel & strong
        by_cadence[str(cad)] = {
            "n": int(sel.sum()),
            "recall_at_global_threshold_snr_ge_10": float((raw[strong_cad & pos] >= thr).mean()) if (strong_cad & pos).any() else None,
            "fpr_at_global_threshold": float((raw[sel & ~pos] >= thr).mean()) if (sel & ~pos).any() else None,
        }
    by_kind = {}
    for kind in np.unique(data["kind"]):
        sel = data["kind"] == kind
        by_kind[str(kind)] = {"n": int(sel.sum()), "above_threshold": float((raw[sel] >= thr).mean()),
                              "score_ge_0.5": float((p[sel] >= 0.5).mean()), "vetoed": float(data["vetoed"][sel].mean())}
    snr100 = (y == 0) | (data["snr"] >= 100)
    return {"n": int(len(y)), "n_injected": int(pos.sum()), "auc": auc, "auc_ci95": [lo, hi], "by_kind": by_kind,
            "recall_at_1pct_fpr_snr_ge_100": recall_at_fpr(y[snr100], raw[snr100], 0.01)[0],
            "cnn_auc_without_vetting": float(roc_auc_score(y, cnn)),
            "by_cadence": by_cadence,
            "pr_auc": float(average_precision_score(y, p)), "recall_at_1pct_fpr": rec,
            "recall_at_1pct_fpr_snr_ge_10": rec10["observed"], "recall_at_1pct_fpr_snr_ge_10_ci95": [rec10_lo, rec10_hi],
            "recall_at_1pct_fpr_snr_ge_10_by_definition": rec10,
            "threshold_raw": thr,
            "threshold_calibrated": float(apply_isotonic(calibration, np.array([thr]))[0]),
            "recall_by_snr": by_snr, "raw": raw, "calibrated": p}


K2_3 = "../shared/data/lightcurves/k2_tls/EPIC201367065.csv"
TRAIN_CADENCE_WEIGHTS = (0.45, 0.15, 0.4)


def train_transit(out_dir: str, n_train: int = 20000, n_test: int = 1500, epochs: int = 25,
                  seed: int = 2026, members: int = 5, log=print, real_check: str = K2_3,
                  devset: bool = True, cache: str | None = None) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    # Sparse cadences are the hard case: the training mix oversamples them; validation (for
    # calibration) and the held-out test keep the default mix.
    train = cached_dataset(cache, n_train, seed, TRAIN_CADENCE_WEIGHTS)
    valid = cached_dataset(cache, max(n_train // 4, 40), seed + 1)
    test = cached_dataset(cache, n_test, seed + 2)
    log(f"simulated and searched {len(train['label'])}/{len(valid['label'])}/{len(test['label'])} "
        f"light curves in {time.time() - t0:.0f}s")
    model = fit_ensemble(train, members, epochs=epochs, seed=seed, log=log)
    torch.save(model.state_dict(), out / "transit_cnn.pt")
    setup = dict(n_train=int(len(train["label"])), epochs=epochs, seed=seed, members=members)
    return _calibrate_and_report(out, model, valid, test, setup, t0, log, real_check, devset)


def reevaluate_transit(out_dir: str, n_test: int = 1500, log=print, real_check: str = K2_3,
                       devset: bool = True, cache: str | None = None) -> dict:
    """Calibrate and report the ensemble in ``out_dir`` again on validation and test light
    curves searched by the current code (same seeds and sizes as its training), without
    refitting: after a change to the search or the vetting, its metrics, threshold and card
    then describe the filter as it runs."""
    out = Path(out_dir)
    t0 = time.time()
    setup = {k: v for k, v in json.loads((out / "transit_metrics.json").read_text()).items()
             if k in ("n_train", "epochs", "seed", "members", "train_seconds")}
    valid = cached_dataset(cache, max(setup["n_train"] // 4, 40), setup["seed"] + 1)
    test = cached_dataset(cache, n_test, setup["seed"] + 2)
    model = load_ensemble(out / "transit_cnn.pt")
    return _calibrate_and_report(out, model, valid, test, setup, t0, log, real_check, devset)


def _calibrate_and_report(out: Path, model, valid: dict, test: dict, setup: dict, t0: float, log,
                          real_check: str, devset: bool) -> dict:
    from filters.evaluation import fit_isotonic
    from filters.transit.card import write_card

    _, raw_valid = reported_logits(model, valid)
    calibration = fit_isotonic(raw_valid, valid["injected"], smooth=True)
    metrics = evaluate(model, test, calibration)
    ev = {k: metrics.pop(k) for k in ("raw", "calibrated")}
    seconds = round(time.time() - t0, 1)  # a re-evaluation keeps the training's time and adds its own
    metrics.update(setup, test_seed=setup["seed"] + 2, train_cadence_weights=list(TRAIN_CADENCE_WEIGHTS),
                   test_cadence_weights=list(DEFAULT_CADENCE_WEIGHTS),
                   **({"reevaluation_seconds": seconds} if "train_seconds" in setup else {"train_seconds": seconds}))
    log(f"held-out: AUC {metrics['auc']:.4f}; recall@1%FPR {metrics['recall_at_1pct_fpr']:.3f}; "
        f"SNR>=10: {metrics['recall_at_1pct_fpr_snr_ge_10']:.3f}")
    (out / "transit_calibration.json").write_text(json.dumps(calibration))
    (out / "transit_metrics.json").write_text(json.dumps(metrics, indent=1))
    if real_check and Path(real_check).is_file():  # a real planet host, scored exactly as `score transit` does
        from filters.transit.filter import score_files

        row = score_files([real_check], model_dir=out)[0]
        row["candidate_periods"] = [c["period_days"] for c in row.get("candidates", [])]
        (out / "k2_3.json").write_text(json.dumps(row, indent=1, default=float))
        log(f"K2-3: score {row['score']:.3f}, period {row['period_days']:.4f} d")
    from filters.transit.development import DEVSET
    from filters.transit.development import evaluate as evaluate_devset

    if devset and DEVSET.is_dir():  # the real development set: reported, never trained on
        dev = evaluate_devset(model_dir=out)
        (out / "devset.json").write_text(json.dumps(dev, indent=1, default=float))
        log(f"development set: {dev['summary']}")
    write_card(out, metrics, test, ev)
    return metrics
