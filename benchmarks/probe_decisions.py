"""The decision table with probes as a search gets them, against the table before, in one fit per fold.

    .venv/bin/python benchmarks/probe_decisions.py [--bundle modsnet/libraries/tabzoo] [--targets ...]
        [--fold K] [--out FILE.json]      # one fold of the targets (10 a fold, as `evaluation` folds them)
    .venv/bin/python benchmarks/probe_decisions.py --combine FILE.json ...   # the tables of the folds together

`services.recommender.evaluation` fits the served estimator once per fold and mode; the three modes compared here
(probes as the records: the table before probe records; sample probes taken as measured; sample probes corrected
by the learned scale) differ only after the fit (the probes' readings and the simulated search), so this fits
each fold once and runs the decision table three times on it (`evaluate` with a cached `modsnet` method: the same
figures as three runs of the command). The targets default to those with probe records; `--fold K` runs the K-th
fold of them, so folds can run in parallel processes, and `--combine` puts their tables together.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modsnet.data.bundle import read_bundle  # noqa: E402
from services.recommender.decisions import BUDGETS, DecisionTable  # noqa: E402
from services.recommender.evaluation import (  # noqa: E402
    Fold,
    default_targets,
    evaluate,
    fit_served,
    graph_from_bundle,
    served_predictions,
)

MODES = {
    "records": {"probes_as_records": True},
    "sample, uncorrected": {"correct_probes": False},
    "sample, corrected": {},
}
FOLD_SIZE = 10


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "modsnet" / "libraries" / "tabzoo")
    parser.add_argument("--targets", nargs="+")
    parser.add_argument("--held-out", action="store_true", help="the evaluation's default targets (100, seed 0)")
    parser.add_argument("--fold", type=int, help="run only the K-th fold of the targets (0-based)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--combine", nargs="+", type=Path, help="fold outputs to put together")
    args = parser.parse_args(argv)
    if args.combine:
        return combine(args.combine)
    bundle = read_bundle(args.bundle)
    assert bundle.probe_records is not None, "the bundle has no probe records"
    targets = args.targets or sorted({r["dataset_id"] for r in bundle.probe_records.rows})
    if args.held_out:
        targets = default_targets(graph_from_bundle(bundle)[0])
    if args.fold is not None:
        targets = targets[args.fold * FOLD_SIZE : (args.fold + 1) * FOLD_SIZE]
    fitted: dict[tuple[str, ...], object] = {}

    def modsnet(fold: Fold):  # type: ignore[no-untyped-def]
        key = tuple(fold.targets)
        if key not in fitted:
            fitted[key] = fit_served(fold)
        return served_predictions(fold, fitted[key])  # type: ignore[arg-type]

    out: dict[str, object] = {"targets": targets, "modes": {}}
    for mode, options in MODES.items():
        started = time.perf_counter()
        report = evaluate(
            bundle,
            methods=["modsnet", "popularity"],
            targets=targets,
            budgets=BUDGETS,
            fold_size=FOLD_SIZE,
            extra_methods={"modsnet": modsnet},
            **options,  # type: ignore[arg-type]
        )
        assert report.decisions is not None
        out["modes"][mode] = report.decisions.to_dict()  # type: ignore[index]
        print(f"## {mode} ({time.perf_counter() - started:.0f} s)\n{report.decisions.to_table()}\n", flush=True)
    if args.out:
        args.out.write_text(json.dumps(out))
    return 0


def combine(paths: list[Path]) -> int:
    parts = [json.loads(p.read_text()) for p in paths]
    for mode in MODES:
        table = DecisionTable(BUDGETS)
        for part in parts:
            for strategy, by_budget in part["modes"][mode]["per_target"].items():
                for budget, values in by_budget.items():
                    for target, value in values.items():
                        table.add(strategy, int(budget), target, value)
        targets = sum(len(p["targets"]) for p in parts)
        print(f"## {mode}: {targets} targets\n{table.to_table()}")
        for budget in (3, 5):
            mine, popular = table.mean("modsnet", budget), table.mean("popular-B", budget)
            if mine is not None and popular:
                print(f"B={budget}: modsnet / popular-B = {mine / popular:.2f}")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
