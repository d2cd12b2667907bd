"""Probes as similarity: libraries with their dataset features removed, 3 measured probes per target.

    .venv/bin/python benchmarks/probe_similarity.py [--libraries tabzoo xrdzoo /tmp/libs/oboe ...] [--budget 3]
        [--methods popularity knn modsnet] [--out docs/benchmarks-probe-similarity.md]

A published score matrix often comes with dataset ids only. Each library here is copied with `datasets.csv`
cut to its id column and without `dataset_features/`, `dataset_similarity.csv` or recorded transferability
probes (`probes.csv`), so a probe is a real measurement of the model on the held-out target. Leave-one-
dataset-out (`services.recommender.evaluation`), cold popularity against the estimators with `--budget`
probes. The issue's target (decisions, point 4): Pearson >= popularity + 0.05 and regret@1 below popularity's.
Not a test; prints (and with --out writes) a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
import time
from pathlib import Path

from modsnet.data.bundle import read_bundle
from services.recommender.evaluation import evaluate

ROOT = Path(__file__).resolve().parents[1]
BUILT_IN = {"tabzoo": ROOT / "modsnet/libraries/tabzoo", "xrdzoo": ROOT / "modsnet/libraries/xrdzoo"}


def stripped_copy(source: Path, into: Path) -> Path:
    """The bundle at `source` with dataset ids only: no dataset features, similarities or recorded probes."""
    out = into / source.name
    shutil.copytree(
        source, out, ignore=shutil.ignore_patterns("dataset_features", "dataset_similarity.csv", "probes.csv")
    )
    with (source / "datasets.csv").open(newline="", encoding="utf-8") as f:
        ids = [row["dataset_id"] for row in csv.DictReader(f)]
    (out / "datasets.csv").write_text("dataset_id\n" + "".join(f"{i}\n" for i in ids), encoding="utf-8")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libraries", nargs="+", default=["tabzoo", "xrdzoo"])
    parser.add_argument("--methods", nargs="+", default=["popularity", "knn"])
    parser.add_argument("--budget", type=int, default=3)
    parser.add_argument("--fold-size", type=int, default=4, help="targets hidden at once (one fit per fold)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    lines = [
        "| library | method | mean Pearson | worst target | regret@1 | targets | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.libraries:
            source = BUILT_IN.get(name, Path(name))
            bundle = read_bundle(stripped_copy(source, Path(tmp)))
            start = time.perf_counter()
            report = evaluate(
                bundle, methods=args.methods, with_probes=True, probe_budget=args.budget, fold_size=args.fold_size
            )
            seconds = time.perf_counter() - start
            for result in report.results:
                means = result.means
                worst = result.worst("pearson")
                worst_text = f"{worst[1]:.3f} ({worst[0]})" if worst else "-"
                lines.append(
                    f"| {bundle.name} | {result.method} | {means.get('pearson') or float('nan'):.3f} | {worst_text} "
                    f"| {means.get('regret@1') or float('nan'):.4f} | {len(result.per_target)} | {seconds:.0f} |"
                )
            print("\n".join(lines[-len(report.results) :]), flush=True)
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(
            "# Probes as similarity (libraries without dataset features)\n\n"
            f"`python benchmarks/probe_similarity.py --libraries {' '.join(args.libraries)} --methods "
            f"{' '.join(args.methods)} --budget {args.budget}`\n\n{table}\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
