"""What a library's probe records teach (issue 16 point 2): the probe scale the reader learns, per dataset and family.

    .venv/bin/python benchmarks/probe_scale.py [--bundle modsnet/libraries/tabzoo]

Reads the bundle's `probe_records.csv` against its records and prints a markdown page: the learned scale
(`modsnet.data.probe_scale`: level, families set apart, noise sd), the gap per dataset (mean, sd, Pearson of probe
and record, the record regret of the probe's best) and per family (its contrast with the other models within each
dataset, mean and standard error over datasets), and the noise split into a dataset's own level and the rest.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modsnet.data.bundle import read_bundle  # noqa: E402
from modsnet.data.probe_scale import FAMILY_COLUMN, FAMILY_Z, ProbeScale, family_contrasts  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "modsnet" / "libraries" / "tabzoo")
    args = parser.parse_args(argv)
    bundle = read_bundle(args.bundle)
    if bundle.probe_records is None:
        print(f"{args.bundle}: no probe_records.csv")
        return 1
    scale = ProbeScale.of_library(bundle.meta)
    totals: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in bundle.interactions.rows:
        totals[(row["dataset_id"], row["model_id"])].append(float(row["score"]))
    recorded = {k: float(np.mean(v)) for k, v in totals.items()}
    family_of = {r["model_id"]: r.get(FAMILY_COLUMN, "") for r in bundle.models.rows}
    gaps: dict[str, dict[str, float]] = defaultdict(dict)
    probe: dict[str, dict[str, float]] = defaultdict(dict)
    rows: dict[str, int] = {}
    for r in bundle.probe_records.rows:
        key = (r["dataset_id"], r["model_id"])
        if key in recorded:
            gaps[key[0]][key[1]] = float(r["score"]) - recorded[key]
            probe[key[0]][key[1]] = float(r["score"])
            rows[key[0]] = int(float(r["rows"]))
    lines = [
        "| dataset | probe rows | settings | mean probe - record | sd | Pearson | record regret of the probe's best |"
    ]
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    same = 0
    for dataset_id in sorted(gaps):
        g = gaps[dataset_id]
        models = sorted(g)
        p = np.array([probe[dataset_id][m] for m in models])
        t = np.array([recorded[(dataset_id, m)] for m in models])
        corr = float(np.corrcoef(p, t)[0, 1]) if np.ptp(p) > 0 and np.ptp(t) > 0 else float("nan")
        best_probe, best_record = models[int(np.argmax(p))], models[int(np.argmax(t))]
        same += best_probe == best_record
        lines.append(
            f"| {dataset_id} | {rows[dataset_id]} | {len(g)} | {statistics.fmean(g.values()):+.3f} "
            f"| {statistics.pstdev(g.values()):.3f} | {corr:.2f} "
            f"| {recorded[(dataset_id, best_record)] - recorded[(dataset_id, best_probe)]:.3f} |"
        )
    everything = [v for g in gaps.values() for v in g.values()]
    levels = [statistics.fmean(g.values()) for g in gaps.values()]
    within = [v - statistics.fmean(g.values()) for g in gaps.values() for v in g.values()]
    out = [
        f"# Probe records of {bundle.name}",
        "",
        f"{len(everything)} pairs on {len(gaps)} datasets; learned scale: "
        + (
            f"shift {scale.shift:+.4f}, sd {scale.sd:.4f}, families set apart: "
            + (", ".join(f"{f} {v:+.4f}" for f, v in sorted(scale.family_shift.items())) or "none")
            if scale
            else "none (too few records)"
        ),
        f"Mean gap {statistics.fmean(everything):+.4f}, sd {statistics.pstdev(everything):.4f}; a dataset's own level "
        f"varies with sd {statistics.pstdev(levels):.4f}, the pairs around it with sd {statistics.pstdev(within):.4f}; "
        f"the probe's best setting is the record's best on {same} of {len(gaps)} datasets.",
        "",
        *lines,
        "",
        "| family | datasets | contrast with the other models (mean over datasets) | standard error "
        f"| z (kept past {FAMILY_Z:g}) |",
        "|---|---:|---:|---:|---:|",
    ]
    for family, values in sorted(family_contrasts(gaps, family_of, ()).items()):
        if len(values) < 2:
            continue
        mean, error = statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))
        out.append(f"| {family} | {len(values)} | {mean:+.4f} | {error:.4f} | {mean / max(error, 1e-12):+.1f} |")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
