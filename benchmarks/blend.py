"""Never worse than a baseline, target by target (issue 16, point 3): the served blend against the GNN alone,
popularity and kNN, in one run per library.

    PYTHONPATH=. nice -n 5 .venv/bin/python benchmarks/blend.py LIBRARY... [--all-targets] [--no-features]
        [--with-probes] [--json-dir DIR]

LIBRARY: a bundle folder, `tabzoo` / `xrdzoo` (the built-in ones), or `transfergraph-text`,
`transfergraph-image`, `oboe` (imported from --shared-data by the project's importers into a temp folder).
`--with-probes`: each target probed by the probe-selector (10 models), not cold start. `--all-targets`: every
dataset with 10 records a target (TransferGraph: all of its datasets, not its 8 published ones);
`--no-features`: the library with its dataset features, similarities and probes removed.

`modsnet` is what a search serves (`services/recommender/evaluation.py` `fit_served`); `gnn` is that blend's
own GNN member predicting alone: the same fits with the same seeds, hence exactly what was served before the
blend. Targets and folds as `python -m services.recommender.evaluation` picks them. Prints, per library, the
evaluation's table and per method the mean Pearson, mean regret@1, worst target and the targets more than
0.10 Pearson below popularity's on the same target.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from probe_similarity import BUILT_IN

from modsnet.data.bundle import read_bundle
from modsnet.offline.importers.oboe import import_oboe
from modsnet.offline.importers.transfergraph import import_transfergraph
from services.recommender import evaluation
from services.recommender.estimators.blend import BlendedEstimator


def bundle_path(name: str, shared: Path, tmp: Path) -> Path:
    if name in BUILT_IN:
        return BUILT_IN[name]
    if name.startswith("transfergraph-"):
        modality = name.removeprefix("transfergraph-")
        import_transfergraph(shared / "transfergraph" / modality, tmp / name, modality)  # type: ignore[arg-type]
        return tmp / name
    if name == "oboe":
        import_oboe(shared / "oboe", tmp / "oboe")
        return tmp / "oboe"
    return Path(name)


def served_and_alone() -> dict[str, evaluation.Method]:
    """`modsnet` (the served blend) and `gnn` (its GNN member alone, from the same fit of the same fold)."""
    fitted: dict[tuple[str, ...], BlendedEstimator] = {}

    def modsnet(fold: evaluation.Fold) -> dict[str, np.ndarray]:
        estimator = fitted[tuple(fold.targets)] = evaluation.fit_served(fold)
        validation = ", ".join(f"{m} {v:.3f}" for m, v in estimator.blend.validation.items())
        print(f"fold {fold.targets[0]}..: {estimator.blend.describe()}; mean Pearson there {validation}", flush=True)
        return evaluation.served_predictions(fold, estimator)

    def gnn(fold: evaluation.Fold) -> dict[str, np.ndarray]:
        return evaluation.served_predictions(fold, fitted.pop(tuple(fold.targets)).primary)  # type: ignore[arg-type]

    return {"modsnet": modsnet, "gnn": gnn}


def below_popularity(report: evaluation.EvaluationReport) -> list[str]:
    """Per method: mean Pearson, regret@1, worst target, and the targets too far under popularity's Pearson."""
    lines = []
    for r in report.results:
        under = report.below_popularity(r) or {}
        worst = r.worst("pearson")
        shown = ", ".join(f"{t} ({g:+.3f})" for t, g in list(under.items())[:5])
        lines.append(
            f"  {r.method:<12} mean pearson {r.means['pearson']:.3f}, regret@1 {r.means['regret@1']:.3f}, "
            f"worst pearson {worst[1]:.3f} on {worst[0]}; "
            f"{len(under)} target(s) > {evaluation.BELOW_POPULARITY} below popularity" + (f": {shown}" if under else "")
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("libraries", nargs="+")
    parser.add_argument("--all-targets", action="store_true", help="every dataset with enough records a target")
    parser.add_argument("--no-features", action="store_true", help="dataset features, similarities, probes removed")
    parser.add_argument("--with-probes", action="store_true", help="each target probed (10 models), not cold")
    parser.add_argument("--shared-data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--json-dir", type=Path, help="keep each report's JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        for name in args.libraries:
            path = bundle_path(name, args.shared_data, tmp)
            bundle = read_bundle(path)
            if args.no_features:
                bundle = evaluation.without_dataset_features(bundle)
            published = None if args.all_targets else evaluation.published_dir_for(bundle.name, args.shared_data)
            snapshot, _ = evaluation.graph_from_bundle(bundle)
            targets = evaluation.default_targets(snapshot, published_dir=published)
            start = time.perf_counter()
            report = evaluation.evaluate(
                bundle,
                methods=["modsnet", "gnn", "popularity", "knn"],
                targets=targets,
                with_probes=args.with_probes,
                fold_size=10 if len(targets) > 20 else 1,
                published_dir=published,
                extra_methods=served_and_alone(),
            )
            print(report.to_table(), flush=True)
            print("\n".join(["", "target by target:", *below_popularity(report)]), flush=True)
            print(f"({time.perf_counter() - start:.0f} s)\n", flush=True)
            if args.json_dir is not None:
                args.json_dir.mkdir(parents=True, exist_ok=True)
                suffix = "-all" * args.all_targets + "-nofeatures" * args.no_features + "-probes" * args.with_probes
                (args.json_dir / f"{name.replace('/', '_')}{suffix}.json").write_text(report.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
