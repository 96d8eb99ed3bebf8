"""The real development set (``devset/``, see its MANIFEST.csv): planet hosts with known
periods and stars that are not, scored exactly as ``alert-broker score transit`` does.

Used to choose and report, never to train: training stays on simulation. A host counts as
recovered when it scores at least 0.5 and the reported period is within 1% of a known
planet's (or its 1/2, 2, 1/3 or 3 alias); any other star scoring at least 0.5 is a false
positive.
"""
from __future__ import annotations

import csv
from pathlib import Path

DEVSET = Path(__file__).resolve().parent / "devset"
ALIASES = (1.0, 0.5, 2.0, 1 / 3, 3.0)
RECOVERY_SCORE = 0.5


def manifest(directory: Path = DEVSET) -> list[dict]:
    with (directory / "MANIFEST.csv").open() as fh:
        return list(csv.DictReader(fh))


def matches_known(period: float | None, known: list[float], tol: float = 0.01) -> bool:
    return period is not None and any(abs(period - p * k) <= tol * p * k for p in known for k in ALIASES)


def evaluate(model_dir: Path | None = None, device: str = "cpu", directory: Path = DEVSET) -> dict:
    """One row per light curve and a summary per class."""
    from filters.transit.filter import score_files

    entries = manifest(directory)
    paths = [str(directory / e["file"]) for e in entries]
    scored = {r["file"]: r for r in score_files(paths, model_dir=model_dir, device=device)}  # one model load
    rows = []
    for entry, path in zip(entries, paths):
        known = [float(p) for p in entry["known_periods_days"].split(";") if p]
        result = scored[path]
        score = result.get("score")
        positive = score is not None and score >= RECOVERY_SCORE
        period = result.get("period_days")
        row = {"file": entry["file"], "target": entry["target"], "class": entry["class"],
               "score": score, "period_days": period, "known_periods_days": known,
               "vetting": result.get("vetting"), "reason": result.get("reason"),
               "points": result.get("points"), "seconds": result.get("seconds")}
        if entry["class"] == "planet_host":
            row["recovered"] = bool(positive and matches_known(period, known))
            row["any_candidate_at_a_known_period"] = any(
                matches_known(c["period_days"], known) for c in result.get("candidates", []))
        else:
            row["false_positive"] = bool(positive)
        rows.append(row)
    summary: dict[str, dict] = {}
    for r in rows:
        s = summary.setdefault(r["class"], {"n": 0, "recovered": 0, "false_positive": 0})
        s["n"] += 1
        s["recovered"] += int(r.get("recovered", False))
        s["false_positive"] += int(r.get("false_positive", False))
    return {"rows": rows, "summary": summary}


def markdown(result: dict) -> str:
    lines = ["| light curve | class | points | score | period (d) | known (d) | vetting | outcome | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if r["class"] == "planet_host":
            outcome = "recovered" if r["recovered"] else ("missed (a candidate at a known period)"
                                                          if r["any_candidate_at_a_known_period"] else "missed")
        else:
            outcome = "false positive" if r["false_positive"] else "rejected"
        score = "null: " + str(r["reason"]) if r["score"] is None else f"{r['score']:.3f}"
        period = "" if r["period_days"] is None else f"{r['period_days']:.4f}"
        known = ", ".join(f"{p:g}" for p in r["known_periods_days"])
        lines.append(f"| {r['target']} | {r['class']} | {r['points']} | {score} | {period} | {known} | "
                     f"{r['vetting'] or ''} | {outcome} | {r['seconds']} |")
    s = result["summary"]
    hosts = s.get("planet_host", {"n": 0, "recovered": 0})
    others = [(c, v) for c, v in s.items() if c != "planet_host"]
    lines.append("")
    lines.append(f"Planet hosts recovered: {hosts['recovered']}/{hosts['n']}. " + "; ".join(
        f"{c}: {v['false_positive']}/{v['n']} at score >= {RECOVERY_SCORE}" for c, v in others) + ".")
    return "\n".join(lines)


CARD_SECTION = "## Real light curves: the development set"


def refresh_card(model_dir: Path, device: str = "cpu") -> dict:
    """Score the development set with the model in ``model_dir`` and rewrite that section of
    its MODEL_CARD.md (and devset.json): for search or vetting changes that need no retraining."""
    import json

    result = evaluate(model_dir, device)
    (model_dir / "devset.json").write_text(json.dumps(result, indent=1, default=float))
    card = model_dir / "MODEL_CARD.md"
    text = card.read_text()
    head, _, rest = text.partition(CARD_SECTION)
    tail = rest[rest.find("\n## "):] if "\n## " in rest else ""
    card.write_text(head.rstrip() + "\n\n" + section(result) + tail)
    return result


def section(result: dict) -> str:
    return (f"{CARD_SECTION}\n\n"
            "`alert-broker score transit --devset`: real Kepler, K2 and TESS light curves from public "
            "repositories (`filters/transit/devset/MANIFEST.csv` names each file's repository, path and "
            "commit), scored exactly as a user's file. Recovered = score >= 0.5 and the period within 1% "
            "of a known planet's (or a 1/2, 2, 1/3, 3 alias).\n\n" + markdown(result) + "\n")
