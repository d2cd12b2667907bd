"""Never worse than a baseline, target by target (issue 16, point 3): the served blend against the GNN alone,
popularity and kNN, in one run per library.

    PYTHONPATH=. nice -n 5 .venv/bin/python benchmarks/blend.py LIBRARY... [--all-targets] [--no-features]
        [--with-probes] [--json-dir DIR] [--targets T... [--fold-size N]]

LIBRARY: a bundle folder, `tabzoo` / `xrdzoo` (the built-in ones), or `transfergraph-text`,
`transfergraph-image`, `oboe` (imported from --shared-data by the project's importers into a temp folder).
`--with-probes`: each target probed by the probe-selector (10 models), not cold start. `--all-targets`: every
dataset with 10 records a target (TransferGraph: all of its datasets, not its 8 published ones);
`--no-features`: the library with its dataset features, similarities and probes removed.

`modsnet` is what a search serves (`services/recommender/evaluation.py` `fit_served`); `gnn` is that blend's
own GNN member predicting alone: the same fits with the same seeds, hence exactly what was served before the
blend. Targets and folds as `python -m services.recommender.evaluation` picks them. Prints, per library, the
evaluation's table and per method the mean Pearson, mean regret@1, worst target and the targets more than
0.10 Pearson below popularity's on the same target; for each of those, every member's Pearson there, the
weights the blend gave it, its distance to the library and the agreement of the primary's score vector with
popularity's (what a per-query guard could see). `--targets` with `--fold-size 10` reruns one fold of a run.

`--agreement-regime`: also replays, on the same fits, a per-query guard learned inside each fold's training
data: the fold's pseudo-targets (the held-out datasets its blend was learned on) are split at a quantile of the
agreement of their served blend with popularity, weights are learned on the more agreeing ones
(`blend.objective`, alone or averaged with all), and a target that agrees at least as much gets those weights.
Prints mean Pearson, targets more than 0.10 under popularity's and regret@1, against the served blend's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from probe_similarity import BUILT_IN

from modsnet.data.bundle import read_bundle
from modsnet.data.graph_build import dataset_raw_features
from modsnet.offline.importers.oboe import import_oboe
from modsnet.offline.importers.transfergraph import import_transfergraph
from services.recommender import evaluation
from services.recommender.estimators import blend
from services.recommender.estimators.blend import BlendedEstimator, PseudoTarget


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


@dataclass
class Members:
    """One target as the served blend saw it, cold: each member's scores of the target's models, the weights
    it got, how far it lies from the library and how alike the primary's and popularity's vectors were."""

    names: tuple[str, ...]
    scores: np.ndarray  # (members, the target's models)
    weights: tuple[float, ...]
    distance: float | None
    agreement: float  # Pearson of the primary's and popularity's scores, over every model of the library


def served_and_alone(
    seen: dict[str, Members] | None = None, pseudo: dict[tuple[str, ...], list[PseudoTarget]] | None = None
) -> dict[str, evaluation.Method]:
    """`modsnet` (the served blend) and `gnn` (its GNN member alone, from the same fit of the same fold); with
    `seen`, each target's `Members` are kept there; with `pseudo`, each fold's pseudo-targets (its targets as
    the key)."""
    fitted: dict[tuple[str, ...], BlendedEstimator] = {}

    def modsnet(fold: evaluation.Fold) -> dict[str, np.ndarray]:
        learn = blend.learn_weights
        kept: list[PseudoTarget] = []

        def keeping(targets, members, *, sign):  # type: ignore[no-untyped-def]
            kept.extend(targets)
            return learn(targets, members, sign=sign)

        blend.learn_weights = keeping  # fit_blend looks it up when it runs
        try:
            estimator = fitted[tuple(fold.targets)] = evaluation.fit_served(fold)
        finally:
            blend.learn_weights = learn
        if pseudo is not None:
            pseudo[tuple(fold.targets)] = kept
        validation = ", ".join(f"{m} {v:.3f}" for m, v in estimator.blend.validation.items())
        print(f"fold {fold.targets[0]}..: {estimator.blend.describe()}; mean Pearson there {validation}", flush=True)
        if seen is not None:
            nodes = {d.dataset_id: d for d in fold.snapshot.datasets}
            for target in fold.targets:
                features = dataset_raw_features(nodes[target]) if target in nodes else {}
                scored = estimator.members_scored(features, known_dataset=target)
                columns = [estimator.model_ids.index(m) for m in fold.candidates[target]]
                first, last = scored[0].scores, scored[-1].scores  # type: ignore[union-attr]
                seen[target] = Members(
                    estimator.blend.members,
                    np.stack([s.scores[columns] for s in scored]),  # type: ignore[union-attr]
                    estimator.weights_for(features, known_dataset=target, probes=()),
                    estimator.knn.nearest_distance(features),
                    float(np.corrcoef(first, last)[0, 1]) if np.std(first) > 0 and np.std(last) > 0 else 0.0,
                )
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


def _pearson(row: np.ndarray, truth: np.ndarray) -> float:
    return float(np.corrcoef(row, truth)[0, 1]) if np.std(row) > 0 and np.std(truth) > 0 else 0.0


def diagnosis(report: evaluation.EvaluationReport, seen: dict[str, Members]) -> list[str]:
    """Each target where the served blend is more than 0.10 under popularity's Pearson: every member's Pearson
    there, the weights it got, its distance and agreement, and the same medians over all targets."""
    served = next(r for r in report.results if r.method == "modsnet")
    under = report.below_popularity(served) or {}
    if not under or not seen:
        return []

    distances = [m.distance for m in seen.values() if m.distance is not None]
    lines = [
        f"targets more than {evaluation.BELOW_POPULARITY} under popularity, member by member (over all "
        f"{len(seen)} targets: median distance "
        f"{np.median(distances) if distances else float('nan'):.2f}, "
        f"median agreement {np.median([m.agreement for m in seen.values()]):.2f}):"
    ]
    for target, gap in under.items():
        m = seen[target]
        truth = np.array(served.predictions[target]["true"], dtype=float)
        members = ", ".join(f"{n} {_pearson(row, truth):.3f}" for n, row in zip(m.names, m.scores, strict=True))
        weights = ", ".join(f"{n} {w:.1f}" for n, w in zip(m.names, m.weights, strict=True) if w > 0)
        distance = "-" if m.distance is None else f"{m.distance:.2f}"
        lines.append(
            f"  {target}: {gap:+.3f} under; members {members}; weights {weights}; distance {distance}; "
            f"agreement {m.agreement:.2f}; truth sd {truth.std():.3f} over {len(truth)} models"
        )
    return lines


def _agreement(scores: np.ndarray, weights: tuple[float, ...] | np.ndarray, popularity: int) -> float:
    """Pearson of the blend of `scores` (members x models) by `weights` with the popularity member's row."""
    return _pearson(np.asarray(weights) @ scores, scores[popularity])


def agreement_regime(
    report: evaluation.EvaluationReport,
    seen: dict[str, Members],
    pseudo: dict[tuple[str, ...], list[PseudoTarget]],
    sign: float,
) -> list[str]:
    """The guard of `--agreement-regime` (module doc) at two quantiles, alone and averaged with all."""
    served = next(r for r in report.results if r.method == "modsnet")
    popularity = next(r for r in report.results if r.method == "popularity")
    lines = ["agreement regime, learned on each fold's pseudo-targets (Pearson / under popularity / regret@1):"]
    for quantile in (0.5, 0.75):
        for mixed in (True, False):
            pearsons, under, regrets = [], 0, []
            for fold_targets, targets in pseudo.items():
                members = next(seen[t].names for t in fold_targets if t in seen)
                first = blend.learn_weights(targets, members, sign=sign)
                pop = members.index("popularity")
                agreements = [
                    _agreement(t.cold, first.for_query(probed=False, distance=t.distance), pop) for t in targets
                ]
                cut = float(np.quantile(agreements, quantile))
                grid = blend.simplex_grid(len(members))
                pairs = [(t.truth, t.cold) for t in targets]
                agreeing = [pair for pair, a in zip(pairs, agreements, strict=True) if a >= cut]
                values = blend.objective(grid, agreeing, sign=sign, popularity=pop)
                if mixed:
                    values = 0.5 * values + 0.5 * blend.objective(grid, pairs, sign=sign, popularity=pop)
                guarded = np.asarray(blend._choose(grid, values))
                for target in fold_targets:
                    if target not in seen or target not in served.predictions:
                        continue
                    m = seen[target]
                    weights = np.asarray(guarded if _agreement(m.scores, m.weights, pop) >= cut else m.weights)
                    truth = np.array(served.predictions[target]["true"], dtype=float)
                    blended = weights @ m.scores
                    pearsons.append(_pearson(blended, truth))
                    gap = float(popularity.per_target[target]["pearson"] or 0.0) - pearsons[-1]
                    under += gap > evaluation.BELOW_POPULARITY
                    goodness = sign * truth
                    regrets.append(float(goodness.max() - goodness[int(np.argmax(sign * blended))]))
            how = " and all, averaged" if mixed else " alone"
            lines.append(
                f"  agreement >= its q{quantile:.2f} on the pseudo-targets, weights learned on those{how}: "
                f"{np.mean(pearsons):.4f} / {under} / {np.mean(regrets):.4f}"
            )
    under_served = len(report.below_popularity(served) or {})
    lines.append(f"  served: {served.means['pearson']:.4f} / {under_served} / {served.means['regret@1']:.4f}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("libraries", nargs="+")
    parser.add_argument("--all-targets", action="store_true", help="every dataset with enough records a target")
    parser.add_argument("--no-features", action="store_true", help="dataset features, similarities, probes removed")
    parser.add_argument("--with-probes", action="store_true", help="each target probed (10 models), not cold")
    parser.add_argument("--shared-data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--json-dir", type=Path, help="keep each report's JSON here")
    parser.add_argument("--targets", nargs="+", help="these targets only (default: as the evaluation picks them)")
    parser.add_argument("--fold-size", type=int, default=0, help="targets hidden per fit (default: 10 over 20, else 1)")
    parser.add_argument("--agreement-regime", action="store_true", help="also replay the guard of the module doc")
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
            targets = args.targets or evaluation.default_targets(snapshot, published_dir=published)
            seen: dict[str, Members] = {}
            pseudo: dict[tuple[str, ...], list[PseudoTarget]] = {}
            start = time.perf_counter()
            report = evaluation.evaluate(
                bundle,
                methods=["modsnet", "gnn", "popularity", "knn"],
                targets=targets,
                with_probes=args.with_probes,
                fold_size=args.fold_size or (10 if len(targets) > 20 else 1),
                published_dir=published,
                extra_methods=served_and_alone(seen, pseudo),
            )
            print(report.to_table(), flush=True)
            print("\n".join(["", "target by target:", *below_popularity(report)]), flush=True)
            print("\n".join(diagnosis(report, seen)), flush=True)
            if args.agreement_regime:
                sign = 1.0 if snapshot.library.meta.get("higher_is_better", True) else -1.0
                print("\n".join(agreement_regime(report, seen, pseudo, sign)), flush=True)
            print(f"({time.perf_counter() - start:.0f} s)\n", flush=True)
            if args.json_dir is not None:
                args.json_dir.mkdir(parents=True, exist_ok=True)
                suffix = "-all" * args.all_targets + "-nofeatures" * args.no_features + "-probes" * args.with_probes
                (args.json_dir / f"{name.replace('/', '_')}{suffix}.json").write_text(report.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
