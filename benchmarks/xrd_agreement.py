"""How well the XRD agreement probe ranks peak finders, against the truth, for consensus rules.

    .venv/bin/python benchmarks/xrd_agreement.py [--datasets 270] [--draws 3] [--out docs/benchmarks-xrd-agreement.md]

An uploaded scan has no true peaks, so `modsnet.models.probing` scores each probed finder by its peak F1 against
the consensus of the probed finders. Here the truth is known: for N XRDZoo datasets (drawn with a fixed
seed; all 270 by default) the scans are simulated again with the generator's own functions
(`modsnet.offline.zoo.xrd.plan_datasets` and `simulate` with the bundle's seed and the dataset's own seed, which
reproduces the bundle's scores exactly), and the probe runs as `_measure_xrd` runs it, on the dataset's
first `MAX_SCANS` patterns. Per probe set, each finder's agreement is set beside its true peak F1 on the
same scans (±0.1° 2θ, `f1_at_tolerance` against the simulated true peaks). Figures per probe set: Spearman
and Pearson between agreement and true F1 (sets where either is constant are left out of that mean), and
regret@1: the true F1 of the set's best finder minus that of the finder with the highest agreement.

Probe sets, among the finders the bundle scores on that dataset (a CNN only on its own fold's datasets):
`random-5`/`random-10`, `--draws` sets drawn at random per dataset with a fixed seed; `best-5`/`best-10`,
the finders with the highest mean score in the library, the kind of set the probe-selector picks (the
library's top finders are close variants of each other). Each figure is the mean over sets ± its standard
error over datasets (a dataset's sets averaged first); `Δ` columns are paired differences from the
current rule, with their standard errors.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from modsnet.models.peaks import f1_at_tolerance, load_finder
from modsnet.models.probing import MAX_SCANS, TOLERANCE_DEG, _consensus
from modsnet.offline.zoo import xrd

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "modsnet" / "libraries" / "xrdzoo"
KINDS = ("random-5", "random-10", "best-5", "best-10")

Found = Sequence[Sequence[np.ndarray]]  # finder -> scan -> sorted peak positions
Rule = Callable[[Found], np.ndarray]  # agreement of each finder


# ----------------------------------------------------------------------------------------------- rules


def _f1_against(found: Found, consensus: Sequence[np.ndarray]) -> np.ndarray:
    return np.array(
        [
            np.mean([f1_at_tolerance(p, c, TOLERANCE_DEG) for p, c in zip(peaks, consensus, strict=True)])
            for peaks in found
        ]
    )


def _weighted(found: Found, weights: np.ndarray) -> np.ndarray:
    scans = len(found[0])
    return _f1_against(found, [_consensus([f[i] for f in found], weights=weights) for i in range(scans)])


def half_vote(found: Found) -> np.ndarray:
    """The current rule (`_measure_xrd`): F1 against the peaks at least half of the finders report."""
    scans = len(found[0])
    return _f1_against(found, [_consensus([f[i] for f in found]) for i in range(scans)])


def iterative(rounds: int, power: float = 1.0) -> Rule:
    """Truth discovery: weight each finder's vote by its agreement^power of the previous round."""

    def rule(found: Found) -> np.ndarray:
        value = half_vote(found)
        for _ in range(rounds - 1):
            weights = value**power
            if weights.sum() <= 0:
                break
            value = _weighted(found, weights)
        return value

    return rule


def _density_weights(found: Found) -> np.ndarray:
    """min(n/m, m/n) of each finder's peak count n (summed over scans) and the median finder's m."""
    counts = np.array([sum(len(p) for p in peaks) for peaks in found], dtype=float)
    middle = float(np.median(counts))
    if middle <= 0:
        return np.ones(len(found))
    return np.minimum(counts, middle) / np.maximum(np.maximum(counts, middle), 1e-12)


def density(found: Found) -> np.ndarray:
    """Votes down-weighted by how far a finder's peak count is from the median finder's (both ways)."""
    return _weighted(found, _density_weights(found))


def leave_one_out(strict: bool = False) -> Rule:
    """Each finder against the consensus of the others (no vote for its own peaks): the peaks at least half
    of the others report, or (`strict`) more than half."""

    def rule(found: Found) -> np.ndarray:
        scans, values = len(found[0]), []
        for k in range(len(found)):
            others = [f for j, f in enumerate(found) if j != k]
            # strict: a voter of weight ε with no peaks turns "at least half" into "more than half"
            weights = [1.0] * len(others) + ([1e-6] if strict else [])
            voters = [*others, [np.empty(0)] * scans] if strict else others
            consensus = [_consensus([f[i] for f in voters], weights=weights) for i in range(scans)]
            values.append(_f1_against([found[k]], consensus)[0])
        return np.array(values)

    return rule


def pairwise(found: Found) -> np.ndarray:
    """Mean F1 of a finder against each other finder, no consensus."""
    n, scans = len(found), len(found[0])
    f1 = np.zeros((n, n))
    for a in range(n):
        for b in range(a + 1, n):
            f1[a, b] = f1[b, a] = np.mean(
                [f1_at_tolerance(found[a][i], found[b][i], TOLERANCE_DEG) for i in range(scans)]
            )
    return f1.sum(axis=1) / (n - 1)


RULES: dict[str, Rule] = {
    "half-vote (current)": half_vote,
    "iterative, weights = agreement, 5 rounds": iterative(5),
    "peak-count weights": density,
    "leave-one-out, ≥ half of the others": leave_one_out(),
    "leave-one-out, > half of the others": leave_one_out(strict=True),
    "pairwise mean F1": pairwise,
}
CURRENT = "half-vote (current)"


# ----------------------------------------------------------------------------------------------- data


def _library() -> tuple[pd.DataFrame, pd.DataFrame, int]:
    models = pd.read_csv(BUNDLE / "models.csv").set_index("model_id")
    interactions = pd.read_csv(BUNDLE / "interactions.csv")
    description = yaml.safe_load((BUNDLE / "library.yaml").read_text(encoding="utf-8"))["description"]
    seed = re.search(r"seed (\d+)\)", description)
    if seed is None:
        raise SystemExit("xrd_agreement: the bundle's description names no seed")
    return models, interactions, int(seed.group(1))


def _measures(truth: np.ndarray, value: np.ndarray) -> tuple[float, float, float]:
    """(Spearman, Pearson, regret@1); a correlation is NaN where either side is constant."""
    constant = np.ptp(truth) == 0 or np.ptp(value) == 0
    spearman = np.nan if constant else float(stats.spearmanr(value, truth).statistic)
    pearson = np.nan if constant else float(np.corrcoef(value, truth)[0, 1])
    top = np.flatnonzero(value == value.max())  # ties: the mean of the tied finders' truth
    return spearman, pearson, float(truth.max() - truth[top].mean())


def _mean_se(values: Sequence[float]) -> tuple[float, float, int]:
    kept = [v for v in values if not np.isnan(v)]
    if not kept:
        return np.nan, np.nan, 0
    se = statistics.stdev(kept) / np.sqrt(len(kept)) if len(kept) > 1 else np.nan
    return float(np.mean(kept)), float(se), len(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=int, default=270, help="XRDZoo datasets, drawn with --seed")
    parser.add_argument("--draws", type=int, default=3, help="random probe sets per dataset and size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "xrdzoo" / "structures")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-xrd-agreement.md")
    args = parser.parse_args()
    started = time.perf_counter()

    models, interactions, bundle_seed = _library()
    mean_score = interactions.groupby("model_id")["score"].mean().sort_values(ascending=False, kind="stable")
    structures = xrd.load_structures(args.cache)
    plans = {
        p.dataset_id: p
        for p in xrd.plan_datasets(
            structures, xrd.assign_folds(structures, bundle_seed), bundle_seed, xrd.CONDITIONS_PER_STRUCTURE
        )
    }
    dataset_ids = sorted(interactions["dataset_id"].unique())
    missing = set(dataset_ids) - set(plans)
    if missing:
        raise SystemExit(f"xrd_agreement: the generator no longer plans {sorted(missing)[:3]}…")
    rng = np.random.default_rng(args.seed)
    chosen = sorted(rng.choice(dataset_ids, size=min(args.datasets, len(dataset_ids)), replace=False))
    finders = {m: load_finder(BUNDLE / "artifacts" / str(models.loc[m, "artifact"])) for m in models.index}

    # results[rule][kind][dataset] -> list of (spearman, pearson, regret) per set; seconds[rule][size]
    results: dict[str, dict[str, dict[str, list[tuple[float, float, float]]]]] = {
        r: {k: {} for k in KINDS} for r in RULES
    }
    seconds: dict[str, dict[int, list[float]]] = {r: {5: [], 10: []} for r in RULES}
    for number, dataset_id in enumerate(chosen, 1):
        plan = plans[dataset_id]
        patterns = xrd.simulate(plan.structure, plan.conditions, MAX_SCANS, xrd._dataset_seed(bundle_seed, dataset_id))
        scored = set(interactions.loc[interactions["dataset_id"] == dataset_id, "model_id"])
        eligible = [m for m in mean_score.index if m in scored]  # best first
        sets: list[tuple[str, list[str]]] = []
        for size in (5, 10):
            sets += [(f"random-{size}", list(rng.choice(eligible, size, replace=False))) for _ in range(args.draws)]
            sets.append((f"best-{size}", eligible[:size]))
        found_by_model: dict[str, list[np.ndarray]] = {}
        for _, members in sets:
            for m in members:
                if m not in found_by_model:
                    found_by_model[m] = [
                        np.sort(np.asarray(finders[m].find(p.two_theta, p.counts), dtype=float).ravel())
                        for p in patterns
                    ]
        for kind, members in sets:
            found = [found_by_model[m] for m in members]
            truth = np.array(
                [
                    np.mean([f1_at_tolerance(f, p.peaks, TOLERANCE_DEG) for f, p in zip(peaks, patterns, strict=True)])
                    for peaks in found
                ]
            )
            for name, rule in RULES.items():
                t0 = time.perf_counter()
                value = rule(found)
                seconds[name][len(members)].append(time.perf_counter() - t0)
                results[name][kind].setdefault(dataset_id, []).append(_measures(truth, value))
        if number % 25 == 0:
            print(f"xrd_agreement: {number}/{len(chosen)} datasets", file=sys.stderr)

    def per_dataset(rule: str, kind: str, column: int) -> dict[str, float]:
        out = {}
        for dataset_id, rows in results[rule][kind].items():
            values = [r[column] for r in rows if not np.isnan(r[column])]
            out[dataset_id] = float(np.mean(values)) if values else np.nan
        return out

    def cell(values: Sequence[float], signed: bool = False) -> str:
        mean, se, _ = _mean_se(values)
        return f"{mean:+.3f} ± {se:.3f}" if signed else f"{mean:.3f} ± {se:.3f}"

    lines = [
        "| probe sets | rule | Spearman | Pearson | regret@1 | Δ Spearman | Δ Pearson | Δ regret@1 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in KINDS:
        base = [per_dataset(CURRENT, kind, c) for c in range(3)]
        for name in RULES:
            mine = [per_dataset(name, kind, c) for c in range(3)]
            means = [cell(list(m.values())) for m in mine]
            deltas = []
            for c in range(3):
                paired = [mine[c][d] - base[c][d] for d in mine[c] if not np.isnan(mine[c][d] - base[c][d])]
                deltas.append("" if name == CURRENT else cell(paired, signed=True))
            lines.append(f"| {kind} | {name} | " + " | ".join(means + deltas) + " |")
    better = []  # rules better than the current one by 2 standard errors on every measure and kind
    for name in RULES:
        wins = True
        for kind in KINDS:
            for c, sign in ((0, 1), (1, 1), (2, -1)):
                base, mine = per_dataset(CURRENT, kind, c), per_dataset(name, kind, c)
                mean, se, _ = _mean_se([mine[d] - base[d] for d in mine if not np.isnan(mine[d] - base[d])])
                wins = wins and sign * mean > 2 * se
        if name != CURRENT and wins:
            better.append(name)
    verdict = (
        f"Better than the current rule on every measure and probe-set kind (by 2 standard errors): {', '.join(better)}."
        if better
        else "No rule is better than the current one on every measure and probe-set kind by 2 standard errors."
    )
    timing = [
        "| rule | 5 finders (ms) | 10 finders (ms) |",
        "|---|---:|---:|",
        *(
            f"| {name} | {1000 * statistics.median(seconds[name][5]):.1f} | "
            f"{1000 * statistics.median(seconds[name][10]):.1f} |"
            for name in RULES
        ),
    ]
    sets_per_kind = {k: sum(len(v) for v in results[CURRENT][k].values()) for k in KINDS}
    command = "python benchmarks/xrd_agreement.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = "\n".join(
        [
            "# XRD agreement probe: consensus rules against the truth",
            "",
            f"Command: `{command.strip()}`  ",
            f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC  ",
            f"Machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
            f"load average {os.getloadavg()[0]:.1f} at the end, Python {platform.python_version()}; "
            f"{time.perf_counter() - started:,.0f} s in all",
            "",
            f"{len(chosen)} XRDZoo datasets (seed {args.seed}), the first {MAX_SCANS} scans of each as the probe "
            f"runs them; probe sets per kind: "
            + ", ".join(f"{k} {n}" for k, n in sets_per_kind.items())
            + ". Mean ± standard error over datasets; Δ is the paired difference from the current rule "
            "(higher correlation and lower regret are better; a Δ counts only the datasets where both rules give a "
            "value, so it can differ from the difference of the means). Regret@1 is in units of peak F1. The "
            "best-k sets rank finders by their mean score over all the library's datasets, this one included.",
            "",
            *lines,
            "",
            verdict,
            "",
            "Time of the agreement step alone (consensus and F1 on every scan, the finders' own runs excluded), "
            "median per probe set:",
            "",
            *timing,
            "",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
