"""Decisions under noisy probes: fit a fold once, dump what the honest decision table needs, replay rules.

    python benchmarks/noisy_decisions.py --dump --held-out --fold K --out /tmp/nd/tabzoo-K.pkl [--bundle B]
    python benchmarks/noisy_decisions.py --replay /tmp/nd/tabzoo-*.pkl [--budgets 3 5 10]

`--dump` runs `evaluation.evaluate` on the K-th fold of 10 targets (the command's folds, `--held-out`: the
evaluation's default targets) in the honest mode (probes read what a 300-row sample reads where the bundle has
probe records, corrected by the learned scale; else the records) and saves, per target, what a replay needs: the
fitted estimator (pickled once a fold), the target's features, true scores, probeable models, what each probe
reads (`Fold.probe_values`, or the record), the cold ranking, popular-B's ranking, and the table's own regrets of
the run (the code the dump was made with). `--replay` then runs the decision rules (the old one: a probe taken as
truth, the last measurement the predicted best unprobed, the reading kept as seen; the new one: the posterior
under noisy probes of `policy.posterior`) on the same probes in seconds a fold, without a fit.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modsnet.data.bundle import read_bundle  # noqa: E402
from services.recommender import evaluation  # noqa: E402
from services.recommender.decisions import BUDGETS, DecisionTable  # noqa: E402

FOLD_SIZE = 10


def dump(bundle_path: Path, targets: list[str], out: Path) -> None:
    bundle = read_bundle(bundle_path)
    product = evaluation._decision_rankings
    cases: list[dict[str, Any]] = []
    fold_info: dict[str, Any] = {}

    def capture(fold, estimator, target, features) -> None:  # type: ignore[no-untyped-def]
        product(fold, estimator, target, features)
        sign = 1.0 if fold.snapshot.library.meta.get("higher_is_better", True) else -1.0
        if not fold_info:
            fold_info.update(
                targets=list(fold.targets),
                sign=sign,
                estimator=pickle.dumps(estimator),
                scale=fold.probe_scale,
                families=dict(fold._families),
                popular={
                    t: dict(zip(fold.candidates[t], v.tolist(), strict=True))
                    for t, v in evaluation.popularity_method(fold).items()
                },
            )
        candidates = set(fold.candidates[target])
        oracle = fold._oracle.get(target, {})
        true = {m: r.value for m, r in oracle.items() if m in candidates and not isinstance(r, list)}
        cases.append(
            {
                "target": target,
                "features": features,
                "true": true,
                "probeable": sorted(fold.probeable(target)),
                "measures_scores": fold.measures_scores(target),
                "reads": dict(fold.probe_values[target]) if target in fold.probe_values else None,
                "cold": dict(fold.cold[target]),
            }
        )

    evaluation._decision_rankings = capture  # type: ignore[assignment]
    try:
        report = evaluation.evaluate(
            bundle, methods=["modsnet", "popularity"], targets=targets, budgets=BUDGETS, fold_size=FOLD_SIZE
        )
    finally:
        evaluation._decision_rankings = product
    assert report.decisions is not None
    print(report.decisions.to_table(), flush=True)
    with out.open("wb") as sink:
        pickle.dump(
            {"bundle": str(bundle_path), "fold": fold_info, "cases": cases, "table": report.decisions.to_dict()}, sink
        )


def replay(paths: list[Path], *, whole_reads: bool, rule: str | None, full_too: bool) -> dict[str, Any]:
    """The decision table of the dumped folds, decided by this tree's code (`evaluation._decision_rankings` on a
    Fold rebuilt from the dump, then `decisions.decision_table`): run from a tree of the code before, the table
    before; from this one, the table after. `whole_reads`: a target of at most SAMPLE_ROWS rows reads its record
    (it is probed whole), marked `whole` where this tree knows the mark; else the reads as dumped. `rule`: the
    table's decision rule where this tree has one (`evaluation.DECISION_RULE`). `full_too`: a row measuring B models
    in full one after another by the posterior, no probes (`modsnet, full`)."""
    import dataclasses
    from collections import defaultdict
    from types import SimpleNamespace

    from modsnet.data.probe_scale import learn_probe_scale
    from services.recommender.decisions import DecisionTable, decision_table
    from services.recommender.estimators.base import ProbeRecord
    from services.recommender.probes import MEASURED

    if rule is not None and hasattr(evaluation, "DECISION_RULE"):
        evaluation.DECISION_RULE = rule
    fields = {f.name for f in dataclasses.fields(evaluation.Fold)}
    bundles: dict[str, Any] = {}
    merged = DecisionTable(tuple(BUDGETS))
    groups: dict[str, set[str]] = defaultdict(set)
    for path in paths:
        with path.open("rb") as source:
            dump = pickle.load(source)
        info, cases = dump["fold"], dump["cases"]
        if dump["bundle"] not in bundles:
            bundle = read_bundle(Path(dump["bundle"]))
            snapshot, _ = evaluation.graph_from_bundle(bundle)
            records: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
            for r in snapshot.interactions:
                records[r.dataset_id][r.model_id].append(r.score)
            recorded = {(d, m): float(np.mean(v)) for d, by in records.items() for m, v in by.items()}
            own = {r["dataset_id"] for r in bundle.probe_records.rows} if bundle.probe_records is not None else set()
            bundles[dump["bundle"]] = (bundle, recorded, own)
        bundle, recorded, own = bundles[dump["bundle"]]
        targets = [c["target"] for c in cases]
        hidden = set(info["targets"])
        scale = None
        if info["scale"] is not None and bundle.probe_records is not None:  # relearned: this tree's scale
            scale = learn_probe_scale(evaluation._probe_rows(bundle), recorded, info["families"], exclude=hidden)
        small: frozenset[str] = frozenset()  # probed whole: only where probes read a sample (probe records)
        if bundle.probe_records is not None:
            small = evaluation.probed_whole(bundle, targets) if hasattr(evaluation, "probed_whole") else frozenset()
            if not small and "n_rows" in bundle.datasets.columns:
                rows = {r["dataset_id"]: float(r.get("n_rows") or 0) for r in bundle.datasets.rows}
                small = frozenset(t for t in targets if 0 < rows.get(t, 0) <= 300)
        for t in targets:
            groups[
                "own probe records" if t in own else "probed whole (<= 300 rows)" if t in small else "simulated"
            ].add(t)
        reads = {c["target"]: c["reads"] for c in cases if c["reads"] is not None}
        if whole_reads:
            reads = {t: v for t, v in reads.items() if t not in small}
        estimator = pickle.loads(info["estimator"])
        sign = info["sign"]
        options: dict[str, Any] = {}
        if "whole" in fields and whole_reads:
            # probes that read the records (no probe records) are exact, as `evaluate` marks them
            options["whole"] = frozenset(small) if bundle.probe_records is not None else frozenset(targets)
        fold = evaluation.Fold(
            SimpleNamespace(library=SimpleNamespace(meta={"higher_is_better": sign > 0})),  # type: ignore[arg-type]
            [],
            list(info["targets"]),
            {c["target"]: sorted(c["true"]) for c in cases},
            {},
            False,
            0,
            0,
            {c["target"]: {m: ProbeRecord(m, c["target"], MEASURED, v) for m, v in c["true"].items()} for c in cases},
            decision_budgets=tuple(BUDGETS),
            probe_values=reads,
            probe_scale=scale,
            **options,
        )
        fold.__dict__["_families"] = info["families"]
        for case in cases:
            evaluation._decision_rankings(fold, estimator, case["target"], case["features"])
        adaptive = {b: dict(r) for b, r in fold.adaptive.items()}
        truth = {c["target"]: c["true"] for c in cases}
        table = decision_table(
            truth,
            popularity={t: info["popular"][t] for t in truth},
            cold=fold.cold,
            adaptive=adaptive,
            budgets=tuple(BUDGETS),
            higher_is_better=sign > 0,
        )
        if full_too and hasattr(evaluation, "DECISION_RULE"):
            _full_row(table, estimator, cases, sign)
        for strategy, by_budget in table.regret.items():
            for b, values in by_budget.items():
                for t, v in values.items():
                    merged.add(strategy, b, t, v)
    return {"table": merged, "groups": groups}


def _full_row(table: Any, estimator: Any, cases: list[dict[str, Any]], sign: float) -> None:
    """`modsnet, full (no probes)`: B models measured in full one after another, each the best posterior mean
    given the full measurements before it (the cold top-1, then conditioned on its exact score, ...)."""
    from services.recommender.decisions import Ranking, pick_regret
    from services.recommender.estimators.base import ProbeRecord
    from services.recommender.probes import MEASURED

    index = {m: j for j, m in enumerate(estimator.model_ids)}
    policy = evaluation.policy
    for case in cases:
        target, features, true = case["target"], case["features"], case["true"]

        def after(full: Any, target: str = target, features: Any = features, true: Any = true) -> Any:
            exact = [ProbeRecord(m, target, MEASURED, v) for m, v in full.items()]
            mean, sd, _ = policy._predicted(
                estimator, features, target, [], index, condition=True, level=policy.LEVEL, exact=exact
            )
            known = [m for m in true if m in index]
            return {m: float(mean[index[m]]) for m in known}, {m: float(sd[index[m]]) for m in known}

        ranking = Ranking(after({})[0], frozenset(), None, posterior=after)  # type: ignore[call-arg]
        for b in BUDGETS:
            table.add("modsnet, full (no probes)", b, target, pick_regret(true, ranking, b, sign=sign))


def _report(result: dict[str, Any]) -> None:
    table = result["table"]
    print(table.to_table())
    popular = "popular-B"
    print("\nratio to popular-B (mean regret / popular-B's):")
    for strategy in table.regret:
        cells = []
        for b in table.budgets:
            mine, base = table.mean(strategy, b), table.mean(popular, max(b, 1) if b == 0 else b)
            if b == 0:
                base = table.mean(popular, 0)
            cells.append(f"B={b} {mine / base:.3f}" if mine is not None and base else f"B={b} -")
        print(f"  {strategy}: " + ", ".join(cells))
    for group, targets in sorted(result["groups"].items()):
        sub = DecisionTableView(table, targets)
        print(f"  {group} ({len(targets)} targets): " + sub.ratios())


class DecisionTableView:
    """The ratios of modsnet to popular-B on a subset of targets."""

    def __init__(self, table: Any, targets: set[str]):
        self.table, self.targets = table, targets

    def ratios(self) -> str:
        out = []
        for strategy in [s for s in self.table.regret if s.startswith("modsnet")]:
            cells = []
            for b in (3, 5, 10):
                mine = [v for t, v in self.table.regret[strategy].get(b, {}).items() if t in self.targets]
                base = [v for t, v in self.table.regret["popular-B"].get(b, {}).items() if t in self.targets]
                cells.append(f"{np.mean(mine) / np.mean(base):.2f}" if mine and np.mean(base) else "-")
            out.append(f"{strategy} B=3/5/10 " + "/".join(cells))
        return "; ".join(out)


def knn_table(bundle_path: Path, rule: str | None, full_too: bool = False) -> Any:
    """The decision table of the held-out targets with the kNN (calibrated as `evaluation.knn_method`) standing in
    for the served blend: the same probing loop, probes and table, no GNN fit (minutes, not hours, on a loaded
    machine). `rule`: `evaluation.DECISION_RULE` where this tree has one."""
    if rule is not None and hasattr(evaluation, "DECISION_RULE"):
        evaluation.DECISION_RULE = rule
    from services.recommender.calibration import calibrated
    from services.recommender.estimators.knn import KnnPopularityEstimator

    def knn(fold: evaluation.Fold) -> dict[str, np.ndarray]:
        run, density = evaluation.fold_family(fold)
        estimator, _ = calibrated(
            fold.snapshot, KnnPopularityEstimator, seed=fold.seed, family_run=run, family_density=density
        )
        nodes = {d.dataset_id: d for d in fold.snapshot.datasets}
        out = {}
        for target in fold.targets:
            features = evaluation._features_of(nodes.get(target))
            predicted = {p.model_id: p.score for p in estimator.predict(features, known_dataset=None)}
            out[target] = np.array([predicted[m] for m in fold.candidates[target]])
            evaluation._decision_rankings(fold, estimator, target, features)  # type: ignore[arg-type]
        if full_too:
            cases = [
                {
                    "target": t,
                    "features": evaluation._features_of(nodes.get(t)),
                    "true": {m: r.value for m, r in fold._oracle[t].items() if not isinstance(r, list)},
                }
                for t in fold.targets
            ]
            _full_row(
                extra, estimator, cases, 1.0 if fold.snapshot.library.meta.get("higher_is_better", True) else -1.0
            )
        return out

    extra = DecisionTable(tuple(BUDGETS))
    report = evaluation.evaluate(
        read_bundle(bundle_path),
        methods=["modsnet"],
        budgets=BUDGETS,
        fold_size=FOLD_SIZE,
        extra_methods={"modsnet": knn},
    )
    assert report.decisions is not None
    for strategy, by_budget in extra.regret.items():
        for b, values in by_budget.items():
            for t, v in values.items():
                report.decisions.add(strategy, b, t, v)
    return report.decisions


def pseudo(bundle_path: Path, per: int, seed: int = 0) -> DecisionTable:
    """The decision rules on pseudo-targets: `per` of the library's datasets that are not evaluation targets (the
    training data), each predicted by popularity over the other training datasets (`probe_policy.PseudoTarget`,
    z units), probes reading its z-score plus the library's probe noise (a shared level and each probe's own, in
    the dataset's z units: the scale's sds over the spread of its records), the policy and the posterior as the
    table runs them. Chooses the rule's settings without the 100 test targets; regret in z units."""
    from benchmarks.probe_policy import PseudoTarget
    from modsnet.data.probe_scale import learn_probe_scale
    from services.recommender import decisions
    from services.recommender.decisions import Ranking, pick_regret
    from services.recommender.estimators.base import ProbeRecord
    from services.recommender.probes import MEASURED

    policy = evaluation.policy
    bundle = read_bundle(bundle_path)
    snapshot, _ = evaluation.graph_from_bundle(bundle)
    targets = set(evaluation.default_targets(snapshot, seed=0))
    dataset_ids, model_ids, z = evaluation.z_scores(snapshot)
    records: dict[str, dict[str, list[float]]] = {}
    for r in snapshot.interactions:
        records.setdefault(r.dataset_id, {}).setdefault(r.model_id, []).append(r.score)
    spread = {d: float(np.std([np.mean(v) for v in by.values()])) for d, by in records.items()}
    recorded = {(d, m): float(np.mean(v)) for d, by in records.items() for m, v in by.items()}
    family_of = {m.model_id: m.metadata.get("family", "") for m in snapshot.models}
    scale = None
    if bundle.probe_records is not None:
        scale = learn_probe_scale(evaluation._probe_rows(bundle), recorded, family_of, exclude=targets)
    level_sd, own_sd = scale.noise() if scale is not None else (0.0, 0.0)
    keep = [i for i, d in enumerate(dataset_ids) if d not in targets]
    behaviour = np.clip(z[keep], -5.0, 5.0)
    names = [dataset_ids[i] for i in keep]
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(keep), size=min(per, len(keep)), replace=False)
    table = DecisionTable(tuple(BUDGETS))
    index = {m: j for j, m in enumerate(model_ids)}
    for row in rows:
        model = PseudoTarget(behaviour, int(row), model_ids)
        true = model.truth
        if len(true) < 10 or spread.get(names[row], 0.0) <= 1e-9:
            continue
        unit = spread[names[row]]
        a, b = level_sd / unit, own_sd / unit  # the probe noise in this dataset's z units
        noise = {"noise_sd": b, "noise_level": a} if scale is not None else {}
        local = np.random.default_rng([seed, int(row)])
        shared = float(local.normal(0.0, a)) if scale is not None else 0.0
        reads = {m: v + shared + (float(local.normal(0.0, b)) if scale is not None else 0.0) for m, v in true.items()}

        def measure(ids: list[str], reads: dict[str, float] = reads) -> list[ProbeRecord]:
            return [ProbeRecord(m, "pseudo", MEASURED, reads[m]) for m in ids if m in reads]

        taken = policy.simulate(model, {}, measure, budget=max(BUDGETS) - 1, among=set(true), informative=0, **noise)
        cold = Ranking({m: float(model.cold[index[m]]) for m in true})
        target = names[row]
        for budget in BUDGETS:
            table.add("popular-B (the pseudo-target's cold)", budget, target, pick_regret(true, cold, budget))
            probes = taken[: max(budget - 1, 0)]
            probed = frozenset(p.model_id for p in probes)
            seen = {p.model_id: p.value for p in probes}

            def after(full, probes=probes, model=model, noise=noise, true=true):  # type: ignore[no-untyped-def]
                exact = [ProbeRecord(m, "pseudo", MEASURED, v) for m, v in full.items()]
                mean, sd, _ = policy._predicted(
                    model, {}, None, probes, index, condition=True, level=policy.LEVEL, exact=exact, **noise
                )
                return {m: float(mean[index[m]]) for m in true}, {m: float(sd[index[m]]) for m in true}

            posterior_mean = after({})[0]
            before = Ranking(posterior_mean, probed, seen)  # the rule before: best unprobed, the reading kept as seen
            table.add("rule before (best unprobed, kept as seen)", budget, target, pick_regret(true, before, budget))
            for final in (decisions.MEAN, decisions.VALUE, decisions.UNPROBED):
                decisions.FINAL = final
                ranking = Ranking(posterior_mean, probed, seen, posterior=after)
                table.add(f"posterior, FINAL={final}", budget, target, pick_regret(true, ranking, budget))

            def exact_only(full, model=model, true=true):  # type: ignore[no-untyped-def]
                exact = [ProbeRecord(m, "pseudo", MEASURED, v) for m, v in full.items()]
                mean, sd, _ = policy._predicted(
                    model, {}, None, [], index, condition=True, level=policy.LEVEL, exact=exact
                )
                return {m: float(mean[index[m]]) for m in true}, {m: float(sd[index[m]]) for m in true}

            decisions.FINAL = decisions.MEAN
            full = Ranking(exact_only({})[0], frozenset(), None, posterior=exact_only)
            table.add("full measurements by the posterior (no probes)", budget, target, pick_regret(true, full, budget))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "modsnet" / "libraries" / "tabzoo")
    parser.add_argument("--dump", action="store_true")
    parser.add_argument("--held-out", action="store_true", help="the evaluation's default targets")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--replay", nargs="+", type=Path)
    parser.add_argument("--whole-reads", action="store_true", help="targets of <= SAMPLE_ROWS rows read the record")
    parser.add_argument("--rule", help="the table's decision rule (evaluation.DECISION_RULE) where the tree has one")
    parser.add_argument("--full-too", action="store_true", help="also B full measurements by the posterior")
    parser.add_argument("--json", type=Path, help="with --replay: write the per-target table here")
    parser.add_argument(
        "--level", type=float, help="a diagnostic: the prior's level share (policy.LEVEL) in the probing and posterior"
    )
    parser.add_argument("--no-whole", action="store_true", help="with --knn: no target is probed whole (as before)")
    parser.add_argument("--final", help="decisions.FINAL: how the posterior rule spends a full measurement")
    parser.add_argument("--pseudo", type=int, help="the rules on this many pseudo-targets (training datasets)")
    parser.add_argument("--knn", action="store_true", help="the table with the kNN standing in for the blend")
    args = parser.parse_args(argv)
    if args.level is not None:
        import functools

        evaluation.policy.LEVEL = args.level  # the posterior of the table reads it at each call
        evaluation.adaptive_probes = functools.partial(evaluation.adaptive_probes, level=args.level)  # type: ignore[assignment]
    if args.pseudo:
        started = time.perf_counter()
        table = pseudo(args.bundle, args.pseudo)
        print(table.to_table().split("\nworst")[0])
        base = "popular-B (the pseudo-target's cold)"
        for strategy in table.regret:
            cells = [f"B={b} {table.mean(strategy, b) / table.mean(base, b):.3f}" for b in table.budgets]
            print(f"  {strategy}: " + ", ".join(cells))
        print(f"({time.perf_counter() - started:.0f} s)", flush=True)
        return 0
    if args.knn:
        started = time.perf_counter()
        if args.final is not None:
            from services.recommender import decisions

            decisions.FINAL = args.final
        if args.no_whole and hasattr(evaluation, "probed_whole"):
            evaluation.probed_whole = lambda bundle, targets: frozenset()  # type: ignore[assignment]
        table = knn_table(args.bundle, args.rule, args.full_too)
        _report({"table": table, "groups": {}})
        if args.json is not None:
            args.json.write_text(json.dumps(table.to_dict()))
        print(f"({time.perf_counter() - started:.0f} s)", flush=True)
        return 0
    if args.dump:
        started = time.perf_counter()
        snapshot = evaluation.graph_from_bundle(read_bundle(args.bundle))[0]
        targets = evaluation.default_targets(snapshot)
        targets = targets[args.fold * FOLD_SIZE : (args.fold + 1) * FOLD_SIZE]
        assert args.out is not None
        args.out.parent.mkdir(parents=True, exist_ok=True)
        dump(args.bundle, targets, args.out)
        print(f"dumped {len(targets)} targets to {args.out} ({time.perf_counter() - started:.0f} s)", flush=True)
        return 0
    if args.replay:
        started = time.perf_counter()
        if args.final is not None:
            from services.recommender import decisions

            decisions.FINAL = args.final
        result = replay(args.replay, whole_reads=args.whole_reads, rule=args.rule, full_too=args.full_too)
        _report(result)
        if args.json is not None:
            args.json.write_text(json.dumps(result["table"].to_dict()))
        print(f"({time.perf_counter() - started:.0f} s)", flush=True)
        return 0
    parser.error("--dump or --replay")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
