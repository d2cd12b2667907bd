"""The served blend's evaluation, kept so that its weights can be re-learned without a fit (issue 16, point 3).

    PYTHONPATH=. nice -n 5 .venv/bin/python benchmarks/blend_folds.py --dump DIR LIBRARY...
    PYTHONPATH=. .venv/bin/python benchmarks/blend_folds.py --replay DIR LIBRARY...
    PYTHONPATH=. .venv/bin/python benchmarks/blend_folds.py --frontier DIR LIBRARY...

`--dump` runs the evaluation of `modsnet popularity knn` as `python -m services.recommender.evaluation` runs it
(default targets, folds of 10, the decision table), prints its table and keeps in DIR its JSON and, per fold, the
pseudo-targets the served blend learned its weights on (`estimators/blend.py`: the datasets its calibration fit
held out, every member's predictions of them) and every member's cold predictions of the fold's real targets,
with popularity's (the evaluation's baseline). LIBRARY as in `benchmarks/blend.py`.

`--replay` re-learns the weights (`blend.learn_weights`) with each variant's constants and scores the real
targets with them: mean Pearson, mean regret@1 and the targets more than 0.10 Pearson under popularity's, without
a fit. A cold target's served prediction is the weighted sum of its members', so `as served` reproduces the
evaluation's modsnet row.

`--frontier` asks whether point 3's demands can hold together on the dumped targets at all: every fixed weighting
of the members chosen on the targets themselves, gates by a signal known cold, and weights per query learned on
the nearest pseudo-targets (`frontier`).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from blend import bundle_path

from modsnet.data.bundle import read_bundle
from modsnet.data.graph_build import dataset_raw_features
from services.recommender import evaluation
from services.recommender.decisions import BUDGETS
from services.recommender.estimators import blend
from services.recommender.estimators.knn import KnnPopularityEstimator


def recording_method(store: list[dict[str, Any]], family_run: int) -> evaluation.Method:
    """The evaluation's `modsnet` method (what a search serves; with `family_run` > 1, its blend calibrated on
    families held out), keeping per fold the pseudo-targets its blend learned on and every member's cold
    predictions of the fold's real targets (with popularity's)."""

    def method(fold: evaluation.Fold) -> dict[str, np.ndarray]:
        from services.recommender.estimators.gnn import GnnEstimator  # torch is imported only when this runs

        learned: list[Any] = []
        more: list[Any] = []
        served_learn, served_held_out = blend.learn_weights, blend.held_out_targets

        def keep(targets: Any, *args: Any, **kwargs: Any) -> blend.BlendWeights:
            learned.extend(targets)
            return served_learn(targets, *args, **kwargs)

        def keep_more(*args: Any, **kwargs: Any) -> Any:
            # the second call: the shown intervals' folds (a large library's other fifths, or whole sources)
            targets, members = served_held_out(*args, **kwargs)
            if kwargs.get("budgets") == (blend.SCALE_PROBES,):
                more.extend(targets)
            return targets, members

        blend.learn_weights = keep  # type: ignore[assignment]
        blend.held_out_targets = keep_more  # type: ignore[assignment]
        try:
            estimator = blend.fit_blend(
                fold.snapshot,
                lambda graph: GnnEstimator(graph, probes=fold.probes),
                seed=fold.seed,
                family_run=family_run,
            )  # = evaluation.fit_served(fold) where family_run is 1
        finally:
            blend.learn_weights, blend.held_out_targets = served_learn, served_held_out  # type: ignore[assignment]
        print(f"  fold {fold.targets[0]}..: {estimator.blend.describe()}", flush=True)
        nodes = {d.dataset_id: d for d in fold.snapshot.datasets}
        popularity = evaluation.popularity_method(fold)
        targets = {}
        for target in fold.targets:
            features = dataset_raw_features(nodes[target]) if target in nodes else {}
            scored = estimator.members_scored(features, known_dataset=target)
            columns = [estimator.model_ids.index(m) for m in fold.candidates[target]]
            targets[target] = {
                "cold": np.stack([s.scores[columns] for s in scored if s is not None]),
                "distance": estimator.knn.nearest_distance(features),
                "popularity": popularity[target],
            }
        store.append({"pseudo": learned, "more": more, "targets": targets, "members": estimator.blend.members})
        return evaluation.served_predictions(fold, estimator)

    return method


def dump(
    name: str,
    bundle_dir: Path,
    into: Path,
    *,
    family_run: int = 1,
    published: Path | None = None,
    decisions: bool = True,
) -> None:
    """The evaluation of `modsnet popularity knn` (as `python -m services.recommender.evaluation` runs it, decision
    table too unless not `decisions`): its table printed, its JSON and the recorded folds kept in `into`.
    `published`: the shared data's root, for a library with a published table (TransferGraph): its targets, as the
    evaluation CLI picks them with `--shared-data`, and its row in the table."""
    bundle = read_bundle(bundle_dir)
    snapshot, _ = evaluation.graph_from_bundle(bundle)
    published_dir = evaluation.published_dir_for(bundle.name, published) if published is not None else None
    targets = evaluation.default_targets(snapshot, published_dir=published_dir)
    store: list[dict[str, Any]] = []
    start = time.perf_counter()
    report = evaluation.evaluate(
        bundle,
        methods=["modsnet", "popularity", "knn", *(["published"] if published_dir is not None else [])],
        targets=targets,
        fold_size=10 if len(targets) > 20 else 1,
        extra_methods={"modsnet": recording_method(store, family_run)},
        budgets=BUDGETS if decisions else (),
        published_dir=published_dir,
    )
    print(report.to_table(), flush=True)
    print(f"({time.perf_counter() - start:.0f} s)", flush=True)
    served = report.results[0]
    truth = {t: np.array(served.predictions[t]["true"], dtype=float) for t in served.predictions}
    sign = 1.0 if snapshot.library.meta.get("higher_is_better", True) else -1.0
    into.mkdir(parents=True, exist_ok=True)
    stem = _stem(name)
    (into / f"{stem}.json").write_text(report.to_json())
    (into / f"{stem}.pkl").write_bytes(pickle.dumps({"folds": store, "truth": truth, "sign": sign}))


def _stem(name: str) -> str:
    """The file name a library's dump is kept under (a path as a name)."""
    return name.replace("/", "_")


@contextmanager
def settings(**values: Any) -> Iterator[None]:
    """The blend module's constants set to `values` for the block (its objective's weights and margins)."""
    old = {k: getattr(blend, k) for k in values}
    for k, v in values.items():
        setattr(blend, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(blend, k, v)


# name: the blend's constants the weights are learned with (as served: none changed)
VARIANTS: dict[str, dict[str, Any]] = {
    "as served": {},
    "shortfall 5": {"SHORTFALL_WEIGHT": 5.0},
    "margin 0": {"MARGIN": 0.0},
    "shortfall 5, margin 0": {"SHORTFALL_WEIGHT": 5.0, "MARGIN": 0.0},
    "regret 0.3": {"REGRET_WEIGHT": 0.3},
    "tie 0": {"TIE": 0.0},
    "shortfall 10, margin 0": {"SHORTFALL_WEIGHT": 10.0, "MARGIN": 0.0},
    # "pooled": learned on every calibration fold's pseudo-targets (a large library's three fifths), not the first's
    "pooled": {"pooled": True},
    "pooled, regret 0.05": {"pooled": True, "REGRET_WEIGHT": 0.05},
    "pooled, regret 0.2": {"pooled": True, "REGRET_WEIGHT": 0.2},
    "pooled, regret 0.3": {"pooled": True, "REGRET_WEIGHT": 0.3},
    "pooled, shortfall 1": {"pooled": True, "SHORTFALL_WEIGHT": 1.0},
    "pooled, margin 0.1": {"pooled": True, "MARGIN": 0.1},
}


def replay(name: str, folder: Path, variants: list[str], *, detail: bool = False) -> list[str]:
    data = pickle.loads((folder / f"{_stem(name)}.pkl").read_bytes())
    truth, sign = data["truth"], data["sign"]
    higher = sign > 0
    lines = [f"{name}: {len(truth)} targets, {len(data['folds'])} folds"]
    popularity_pearson = {}
    for fold in data["folds"]:
        for t, seen in fold["targets"].items():
            popularity_pearson[t] = evaluation.target_metrics(truth[t], seen["popularity"], higher_is_better=higher)[
                "pearson"
            ]
    for variant in variants:
        constants = dict(VARIANTS[variant])
        pooled = constants.pop("pooled", False)
        pearson, regret, gaps, weights_seen = {}, {}, {}, []
        with settings(**constants):
            for fold in data["folds"]:
                pseudo = [*fold["pseudo"], *fold.get("more", [])] if pooled else fold["pseudo"]
                weights = blend.learn_weights(pseudo, fold["members"], sign=sign)
                weights_seen.append(weights.near)
                for t, seen in fold["targets"].items():
                    distance = seen["distance"]
                    w = weights.for_query(probed=False, distance=distance)
                    m = evaluation.target_metrics(truth[t], np.array(w) @ seen["cold"], higher_is_better=higher)
                    pearson[t], regret[t] = m["pearson"], m["regret@1"]
                    gaps[t] = popularity_pearson[t] - m["pearson"]
        under = {t: g for t, g in gaps.items() if g > evaluation.BELOW_POPULARITY}
        shown = sorted(under, key=lambda t: -under[t])
        worst = max(gaps, key=lambda t: gaps[t])
        mean_weights = np.mean(weights_seen, axis=0)
        lines.append(
            f"  {variant:<26} pearson {np.mean(list(pearson.values())):.3f} "
            f"regret@1 {np.mean(list(regret.values())):.3f} "
            f"under {len(under)} (worst {gaps[worst]:+.3f} {worst[:30]}); mean near weights "
            + ", ".join(f"{m} {w:.2f}" for m, w in zip(data["folds"][0]["members"], mean_weights, strict=True))
        )
        for t in shown if detail else []:
            seen = next(f["targets"][t] for f in data["folds"] if t in f["targets"])
            members = ", ".join(
                f"{m} {evaluation.target_metrics(truth[t], row, higher_is_better=higher)['pearson']:.3f}"
                for m, row in zip(data["folds"][0]["members"], seen["cold"], strict=True)
            )
            lines.append(f"      {t}: {under[t]:+.3f} under; members {members}; popularity {popularity_pearson[t]:.3f}")
    lines.append(f"  {'popularity':<26} pearson {np.mean(list(popularity_pearson.values())):.3f}")
    return lines


def frontier(name: str, folder: Path, features: dict[str, np.ndarray] | None = None) -> list[str]:
    """Whether point 3's demands (a mean Pearson and regret@1 at least the best baseline's, and no target more than
    0.10 Pearson under popularity's) can hold together on the dumped targets, three ways:

    - every fixed weighting of the members, chosen on the targets themselves (a ceiling, not a method): the best
      mean Pearson with no target under, and the fewest targets under at a mean and regret@1 reaching the best
      baseline's;
    - gated per target by a signal known cold: popularity alone where the target's distance to the library, or
      the disagreement of the served and popularity predictions over its models, is past a quantile;
    - per query by local validation: each target's weights learned on the `k` pseudo-targets nearest it by
      dataset features (`features`: standardised vectors by dataset id; skipped without), half with the fold's
      whole objective, on the first fold's 40 and on all three folds' 120."""
    data = pickle.loads((folder / f"{_stem(name)}.pkl").read_bytes())
    report = json.loads((folder / f"{_stem(name)}.json").read_text())
    means = {r["method"]: r["mean"] for r in report["methods"]}
    best = max(means[m]["pearson"] for m in ("knn", "popularity"))
    best_regret = min(means[m]["regret@1"] for m in ("knn", "popularity"))
    truth, sign = data["truth"], data["sign"]
    higher = sign > 0
    members = data["folds"][0]["members"]
    grid = blend.simplex_grid(len(members))
    popularity = members.index("popularity")
    cold: dict[str, np.ndarray] = {}
    served: dict[str, np.ndarray] = {}  # the served weights of each target
    baseline: dict[str, float] = {}
    signals: dict[str, dict[str, float]] = {"distance": {}, "disagreement": {}}
    for fold in data["folds"]:
        weights = blend.learn_weights(fold["pseudo"], fold["members"], sign=sign)
        for t, seen in fold["targets"].items():
            cold[t] = seen["cold"]
            served[t] = np.array(weights.for_query(probed=False, distance=seen["distance"]))
            baseline[t] = evaluation.target_metrics(truth[t], seen["popularity"], higher_is_better=higher)["pearson"]
            prediction = served[t] @ seen["cold"]
            signals["distance"][t] = seen["distance"] if seen["distance"] is not None else 0.0
            agree = np.corrcoef(prediction, seen["cold"][popularity])[0, 1] if np.std(prediction) > 0 else 1.0
            signals["disagreement"][t] = 1.0 - float(agree)

    def score(weights: dict[str, np.ndarray]) -> tuple[float, float, int]:
        pearson, regret, under = [], [], 0
        for t, w in weights.items():
            m = evaluation.target_metrics(truth[t], w @ cold[t], higher_is_better=higher)
            pearson.append(m["pearson"])
            regret.append(m["regret@1"])
            under += baseline[t] - m["pearson"] > evaluation.BELOW_POPULARITY
        return float(np.mean(pearson)), float(np.mean(regret)), under

    def named(w: np.ndarray) -> str:
        return ", ".join(f"{m} {v:.1f}" for m, v in zip(members, w, strict=True))

    def row(label: str, scored: tuple[float, float, int]) -> str:
        p, g, u = scored
        return f"  {label:<58} pearson {p:.3f} regret@1 {g:.4f} under {u}"

    lines = [
        f"{name}: {len(cold)} targets; best baseline pearson {best:.3f}, regret@1 {best_regret:.4f}",
        row("as served", score(served)),
    ]
    fixed = [(score(dict.fromkeys(cold, w)), w) for w in grid]
    clean = [f for f in fixed if f[0][2] == 0]
    if clean:
        (p, g, u), w = max(clean, key=lambda f: f[0][0])
        lines.append(row(f"ceiling, none under: {named(w)}", (p, g, u)))
    reaching = [f for f in fixed if f[0][0] >= best and f[0][1] <= best_regret]
    if reaching:
        (p, g, u), w = min(reaching, key=lambda f: (f[0][2], -f[0][0]))
        lines.append(row(f"ceiling, reaching the baseline: {named(w)}", (p, g, u)))
    alone = np.eye(len(members))[popularity]
    for signal, values in signals.items():
        for q in (0.5, 0.8, 0.9):
            cut = float(np.quantile(list(values.values()), q))
            gated = {t: alone if values[t] > cut else served[t] for t in cold}
            lines.append(row(f"popularity past the {q:.1f} quantile of {signal}", score(gated)))
    if features is not None:
        for pooled in (False, True):
            for k in (5, 10, 20):
                local: dict[str, np.ndarray] = {}
                for fold in data["folds"]:
                    pseudo = [*fold["pseudo"], *fold.get("more", [])] if pooled else fold["pseudo"]
                    pseudo = [q for q in pseudo if q.dataset_id in features]
                    objectives = np.stack(
                        [blend.objective(grid, [(q.truth, q.cold)], sign=sign, popularity=popularity) for q in pseudo]
                    )
                    at = np.stack([features[q.dataset_id] for q in pseudo])
                    for t in fold["targets"]:
                        gap = np.sqrt(np.nanmean((at - features[t]) ** 2, axis=1))
                        nearest = np.argsort(gap, kind="stable")[:k]
                        mixed = 0.5 * objectives.mean(axis=0) + 0.5 * objectives[nearest].mean(axis=0)
                        local[t] = np.array(blend._choose(grid, mixed))
                label = f"local validation, {k} nearest of {'all folds' if pooled else 'the first fold'}"
                lines.append(row(label, score(local)))
    return lines


def standardised_features(bundle_dir: Path) -> dict[str, np.ndarray] | None:
    """Every dataset's features as the kNN estimator compares them (standardised over the library)."""
    snapshot, _ = evaluation.graph_from_bundle(read_bundle(bundle_dir))
    knn = KnnPopularityEstimator(snapshot)
    if knn.matrix is None or not knn.feature_names:
        return None
    return {d: knn.matrix[i] for i, d in enumerate(knn.dataset_ids)}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("libraries", nargs="+")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--dump", type=Path, help="fit and keep every fold's members and pseudo-targets here")
    action.add_argument("--replay", type=Path, help="learn and score the variants on the folds kept here")
    action.add_argument(
        "--frontier", type=Path, help="whether point 3's demands can hold together on the folds kept here"
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    parser.add_argument(
        "--family-run", type=int, default=1, help="dump: pseudo-targets hidden by runs of this many ids (served: 1)"
    )
    parser.add_argument("--detail", action="store_true", help="replay: each target too far under popularity")
    parser.add_argument(
        "--published", action="store_true", help="dump: the published table's targets (TransferGraph), as the CLI's"
    )
    parser.add_argument("--no-decisions", action="store_true", help="dump: without the decision table (faster)")
    parser.add_argument("--shared-data", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    if args.frontier is not None:
        with tempfile.TemporaryDirectory() as folder:
            for name in args.libraries:
                features = standardised_features(bundle_path(name, args.shared_data, Path(folder)))
                print("\n".join(frontier(name, args.frontier, features)), flush=True)
        return 0
    if args.replay is not None:
        for name in args.libraries:
            print("\n".join(replay(name, args.replay, args.variants, detail=args.detail)), flush=True)
        return 0
    with tempfile.TemporaryDirectory() as folder:
        for name in args.libraries:
            dump(
                name,
                bundle_path(name, args.shared_data, Path(folder)),
                args.dump,
                family_run=args.family_run,
                published=args.shared_data if args.published else None,
                decisions=not args.no_decisions,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
