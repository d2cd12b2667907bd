"""How much a library's blend weights and cold interval scale depend on which datasets calibration holds out.

    .venv/bin/python benchmarks/calibration_draws.py [LIBRARY] [--seeds 0 1 2 3] [--shared-data ../shared/data]

LIBRARY: `oboe` (default: imported from --shared-data into a temp folder; skipped with a message where that is
absent), `tabzoo`, `xrdzoo` or a bundle folder. For each seed, one calibration fold as `fit_blend` draws it
(`calibration.holdout_folds(fits=1)`: a fifth of the scored datasets, at most 40) is held out of a GNN fit on the
whole library; the blend's weights are learned on those pseudo-targets, and the cold scale is their conformal
quantile. Then each seed's scale (with its weights) is scored on every seed's pseudo-targets: the share of true
scores inside the 80% intervals, target by target, averaged. A diagonal of 0.80 and rows far from it elsewhere
mean the scale is a draw of its 40 datasets, not a property of the library (docs/benchmarks-decisions.md,
"Intervals learned on more held-out datasets"). Not a test; prints a table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from blend import bundle_path

from modsnet.data.bundle import read_bundle
from services.recommender.calibration import Z80, conformal_factor, holdout_folds
from services.recommender.estimators import blend
from services.recommender.evaluation import graph_from_bundle

ROOT = Path(__file__).resolve().parents[1]


def coverage(targets: list[blend.PseudoTarget], weights: blend.BlendWeights, scale: float) -> float:
    """Mean over `targets` of the share of their models whose truth lies within ± Z80 x scale x the blended σ."""
    return float(np.mean([np.mean(blend.cold_ratios([t], weights) <= scale * Z80) for t in targets]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("library", nargs="?", default="oboe")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--shared-data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    from services.recommender.estimators.gnn import GnnEstimator  # torch is imported only when this runs

    if args.library == "oboe" and not (args.shared_data / "oboe").is_dir():
        print(f"skipped: no OBOE records under {args.shared_data} (see ../shared/data/README.md)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        snapshot, probes = graph_from_bundle(read_bundle(bundle_path(args.library, args.shared_data, Path(tmp))))
    reference = blend.reference_query(snapshot)
    sign = 1.0 if snapshot.library.meta.get("higher_is_better", True) else -1.0
    drawn: dict[int, tuple[list[blend.PseudoTarget], blend.BlendWeights, float]] = {}
    for seed in args.seeds:
        start = time.perf_counter()
        folds = holdout_folds(snapshot, seed=seed, fits=1)
        targets, members = blend.held_out_targets(
            snapshot, lambda graph: GnnEstimator(graph, probes=probes), folds, reference=reference
        )
        weights = blend.learn_weights(targets, members, sign=sign)
        scale = conformal_factor(blend.cold_ratios(targets, weights))
        drawn[seed] = (targets, weights, scale)
        print(f"seed {seed}: {len(targets)} held out, {time.perf_counter() - start:.0f} s; {weights.describe()}")
        sys.stdout.flush()
    print(f"\n{args.library}: coverage80 of each seed's cold scale (rows) on each seed's held-out datasets (columns)")
    print("| scale of | " + " | ".join(f"seed {s}" for s in args.seeds) + " |")
    print("|---|" + "---|" * len(args.seeds))
    for seed, (_, weights, scale) in drawn.items():
        cells = [f"{coverage(drawn[other][0], weights, scale):.3f}" for other in args.seeds]
        print(f"| seed {seed} (x{scale:.2f}) | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
