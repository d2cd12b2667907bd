"""What objectives and hardware profiles do on the built-in libraries' real costs, and what ranking by them
costs in time.

    .venv/bin/python benchmarks/objectives.py [--libraries tabzoo xrdzoo] [--repeat 50]
        [--out docs/benchmarks-objectives.md (the default)]

For each library, every model's cost is the mean of its records (as the knowledge graph serves it) and its
"prediction" is its mean recorded score (the popularity baseline: the estimator is not what is measured
here, the ranking after it is). Each objective × profile row says what the answer's top pick is, what it
scores and costs, how many models the limits left, how large the Pareto front is, and the removals the
answer would print; the last column is the time of the ranking step (`objectives.select`, `choose`,
`removals`) as a ratio to the plain best-score ranking in the same run. Writes a markdown page and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

from modsnet.data.graph import Cost, ModelNode, Objective
from modsnet.data.profiles import combine, objective_name, objective_named, profile_named
from services.recommender import objectives
from services.recommender.estimators.base import Prediction

ROOT = Path(__file__).resolve().parents[1]
OBJECTIVES = (
    ("score", ""),
    ("per-train-seconds", ""),
    ("per-inference-seconds", ""),
    ("per-memory", ""),
    ("pareto", "inference-seconds"),
    ("pareto", "memory"),
)
PROFILES = ("", "edge", "cpu-small")
K = 5


def library(name: str) -> tuple[dict[str, ModelNode], list[Prediction]]:
    records = pd.read_csv(ROOT / "modsnet" / "libraries" / name / "interactions.csv")
    columns = [c for c in ("train_seconds", "inference_seconds", "memory_bytes") if c in records]
    means = records.groupby("model_id")[["score", *columns]].mean()
    models, predictions = {}, []
    for model_id, row in means.iterrows():
        cost = Cost(**{c: float(row[c]) for c in columns})
        models[str(model_id)] = ModelNode(name, str(model_id), {}, cost)
        predictions.append(Prediction(str(model_id), float(row["score"]), 0.0))
    return models, predictions


def rank(models: dict[str, ModelNode], predictions: list[Prediction], objective: Objective, profile: str):  # type: ignore[no-untyped-def]
    limits, sources = combine(None, profile_named(profile))
    selection = objectives.select(predictions, models, limits, objective, sign=1.0)
    pick = objectives.choose(selection, [], objective, higher_is_better=True, k=K)
    shown = [p.model_id for p in selection.ranking[:K]]
    top = selection.ranking[0].score if selection.ranking else None
    found = objectives.removals(selection, shown, top, objective, limits, sources, sign=1.0, k=K)
    return selection, pick, found


def timed(repeat: int, *args) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        rank(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libraries", nargs="+", default=["tabzoo", "xrdzoo"])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-objectives.md")
    args = parser.parse_args(argv)
    lines = [
        "# Objectives and hardware profiles on the built-in libraries",
        "",
        f"Command: `python benchmarks/objectives.py {shlex.join(argv if argv is not None else sys.argv[1:])}`"
        f" ({dt.date.today()}, {platform.python_version()}, {platform.machine()}). Predictions: each model's mean"
        f" recorded score; costs: its mean recorded costs; top {K}. Time: median of {args.repeat} rankings, as a"
        " ratio to the best-score ranking without a profile in the same run.",
    ]
    for name in args.libraries:
        models, predictions = library(name)
        base = timed(args.repeat, models, predictions, Objective(), "")
        lines += [
            "",
            f"## {name} ({len(models)} models; best-score ranking {base * 1000:.2f} ms)",
            "",
            "| objective | profile | ranked | front | top pick | its score | its cost | removals | time |",
            "|---|---|---:|---:|---|---:|---:|---|---:|",
        ]
        for objective_label, pareto_cost in OBJECTIVES:
            objective = objective_named(objective_label, pareto_cost)
            for profile in PROFILES:
                selection, pick, found = rank(models, predictions, objective, profile)
                seconds = timed(args.repeat, models, predictions, objective, profile)
                cost = ""
                if pick is not None and objective.cost:
                    cost = f"{getattr(models[pick.model_id].cost, objective.cost):.3g}"
                removals = "; ".join(f"{r.reason} ({r.source}): {r.removed}, {r.better} better" for r in found)
                lines.append(
                    f"| {objective_name(objective)} | {profile or '-'} | {len(selection.ranking)} "
                    f"| {len(selection.front) or '-'} | {pick.model_id if pick else '-'} "
                    f"| {pick.score:.3f} | {cost or '-'} | {removals or '-'} | {seconds / base:.2f}x |"
                    if pick
                    else f"| {objective_name(objective)} | {profile or '-'} | 0 | - | - | - | - "
                    f"| {removals or '-'} | {seconds / base:.2f}x |"
                )
    page = "\n".join(lines) + "\n"
    print(page)
    if args.out:
        args.out.write_text(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
