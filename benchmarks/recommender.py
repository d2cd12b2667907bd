"""Benchmark of the recommender's estimator: figures, ablation, training time and ONNX query time.

    .venv/bin/python benchmarks/recommender.py [--out docs/benchmarks-recommender.md] [--skip-ablation]

1. Imports the three shared-data libraries (TransferGraph image and text, OBOE) with the project's own
   importers into a temp folder; skips with a message when ../shared/data is absent.
2. Runs the leave-one-dataset-out protocol (services/recommender/evaluation.py) on each, cold start
   and with probes: ModsNet (the GNN estimator) and, in the same run, random, popularity, kNN, LogME
   and TransferGraph's published row. TransferGraph: its 8 published targets, one fit per target.
   OBOE: 100 held-out datasets drawn with seed 0, 10 hidden per fit (the stricter variant of LOO).
3. Ablation of the estimator's components (cold start): every variant on the TransferGraph libraries,
   the four that matter most on OBOE (each OBOE variant is 10 fits).
4. Training seconds on the largest library (OBOE, all 418 datasets, the default configuration).
5. ONNX Runtime (CPU) time to score every model of a synthetic 10,000-model library for one query:
   median of 200 runs.
Writes a markdown report (with the command and date) and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from modsnet.data.bundle import Bundle, read_bundle
from modsnet.data.graph import DatasetNode, InteractionRecord, LibraryInfo, ModelNode, Snapshot
from modsnet.offline.importers.oboe import import_oboe
from modsnet.offline.importers.transfergraph import import_transfergraph
from services.recommender.estimators.gnn import GnnConfig, GnnEstimator, OnnxScorer
from services.recommender.evaluation import (
    DEFAULT_PROBE_BUDGET,
    METRICS,
    EvaluationReport,
    Fold,
    MethodResult,
    default_targets,
    evaluate,
    graph_from_bundle,
    modsnet_method,
    published_dir_for,
)

SHARED = Path("../shared/data")
LIBRARIES = ("transfergraph-image", "transfergraph-text", "oboe")
BASELINES = ("random", "popularity", "knn", "logme", "published")
FULL = GnnConfig()
ABLATION = {
    "full": FULL,
    "-prior (kNN term)": replace(FULL, use_prior=False),
    "-popularity": replace(FULL, use_popularity=False),
    "-message passing": replace(FULL, layers=0),
    "-similar": replace(FULL, use_similarity=False),
    "-near": replace(FULL, use_near=False),
    "-alike": replace(FULL, use_alike=False),
    "-sources": replace(FULL, use_sources=False),
    "-ranking term": replace(FULL, rank_weight=0.0),
    "1 member": replace(FULL, members=1),
}
OBOE_ABLATION = ("full", "-prior (kNN term)", "-popularity", "-message passing")

Method = Callable[[Fold], dict[str, np.ndarray]]


def import_libraries(shared: Path, folder: Path) -> dict[str, Bundle]:
    """The three libraries as bundles, imported the way a user would."""
    out = {}
    for modality in ("image", "text"):
        path = folder / f"transfergraph-{modality}"
        import_transfergraph(shared / "transfergraph" / modality, path, modality)  # type: ignore[arg-type]
        out[f"transfergraph-{modality}"] = read_bundle(path)
    import_oboe(shared / "oboe", folder / "oboe")
    out["oboe"] = read_bundle(folder / "oboe")
    return out


def _variant(config: GnnConfig) -> Method:
    return lambda fold: modsnet_method(fold, config)


def run(
    bundle: Bundle,
    shared: Path,
    methods: Sequence[str],
    *,
    with_probes: bool = False,
    extra: dict[str, Method] | None = None,
) -> EvaluationReport:
    published = published_dir_for(bundle.name, shared)
    snapshot, _ = graph_from_bundle(bundle)
    return evaluate(
        bundle,
        methods=methods,
        with_probes=with_probes,
        targets=default_targets(snapshot, published_dir=published, seed=0),
        fold_size=10 if bundle.name == "oboe" else 1,
        published_dir=published,
        extra_methods=extra,
    )


def training_seconds(bundle: Bundle) -> tuple[float, int]:
    snapshot, probes = graph_from_bundle(bundle)
    start = time.perf_counter()
    GnnEstimator(snapshot, probes=probes)
    return time.perf_counter() - start, len(snapshot.interactions)


def synthetic_library(models: int = 10_000, datasets: int = 40, per_model: int = 8, seed: int = 0) -> Snapshot:
    """`models` models in 20 families over `datasets` datasets with 3 features; a family likes some features."""
    rng = np.random.default_rng(seed)
    family = rng.integers(0, 20, size=models)
    affinity = rng.normal(size=(20, 3))
    features = rng.normal(size=(datasets, 3))
    nodes = [
        DatasetNode("synthetic", f"d{i}", {}, {f"f{k}": float(features[i, k]) for k in range(3)})
        for i in range(datasets)
    ]
    model_nodes = [
        ModelNode("synthetic", f"m{j}", {"family": f"fam{family[j]}", "size": str(int(rng.integers(1, 1000)))})
        for j in range(models)
    ]
    interactions = [
        InteractionRecord(f"m{j}", f"d{i}", 0.7 + 0.05 * float(affinity[family[j]] @ features[i]) + 0.02 * rng.normal())
        for j in range(models)
        for i in rng.choice(datasets, size=per_model, replace=False)
    ]
    meta = {"name": "synthetic", "modality": "tabular", "metric": "accuracy", "higher_is_better": True}
    info = LibraryInfo("synthetic", meta, models, datasets, len(interactions), 1, "", 0.0)
    return Snapshot(info, model_nodes, nodes, interactions, [])


def onnx_query_ms(runs: int = 200) -> tuple[float, float, float]:
    """(median ms per query under ONNX Runtime on CPU, seconds to fit at 30 steps, seconds to export)."""
    snapshot = synthetic_library()
    start = time.perf_counter()
    estimator = GnnEstimator(snapshot, config=replace(FULL, steps=30))
    fit = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "estimator.onnx"
        start = time.perf_counter()
        estimator.export_onnx(path)
        export = time.perf_counter() - start
        scorer = OnnxScorer(path, providers=["CPUExecutionProvider"])
        inputs = estimator.query({"f0": 0.3, "f1": -1.0, "f2": 0.5}).inputs
        for _ in range(10):  # warm-up
            scorer.run(inputs)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            mean, _ = scorer.run(inputs)
            times.append(time.perf_counter() - start)
        assert len(mean) == len(snapshot.models)
    return 1000 * float(np.median(times)), fit, export


def _rows(results: Sequence[MethodResult]) -> list[str]:
    lines = [
        "| method | targets | " + " | ".join(METRICS) + " | fit+predict s | probes | probe s |",
        "|---|" + "---:|" * (len(METRICS) + 4),
    ]
    for r in results:
        means = r.means
        cells = " | ".join("–" if means[m] is None else f"{means[m]:.3f}" for m in METRICS)
        lines.append(
            f"| {r.method} | {len(r.per_target)} | {cells} | {r.seconds:.0f} | {r.probes} | {r.probe_seconds:.0f} |"
        )
    return lines


def library_section(bundle: Bundle, shared: Path, ablation: bool) -> list[str]:
    cold = run(bundle, shared, ["modsnet", *BASELINES])
    probed = run(bundle, shared, ["modsnet"], with_probes=True)
    probed.results[0].method = "modsnet + probes"
    results = [cold.results[0], probed.results[0], *cold.results[1:]]
    lines = [f"## {bundle.name}: {len(cold.targets)} targets, {cold.folds} fits per method", "", *_rows(results), ""]
    lines += [f"- {r.method}: {r.note}" for r in results if r.note]
    lines += ["", "Per target, ModsNet cold start / with probes (Pearson, weighted τ, regret@1):", ""]
    shown = list(cold.results[0].per_target)[:10]
    for t in shown:
        a, b = cold.results[0].per_target[t], probed.results[0].per_target[t]
        lines.append(
            f"- {t}: {a['pearson']:.3f}, {a['weighted_tau']:.3f}, {a['regret@1']:.3f} / "
            f"{b['pearson']:.3f}, {b['weighted_tau']:.3f}, {b['regret@1']:.3f}"
        )
    if len(cold.targets) > len(shown):
        lines.append(f"- … and {len(cold.targets) - len(shown)} more targets (in the JSON of the evaluation CLI)")
    lines.append("")
    if ablation:
        names = OBOE_ABLATION if bundle.name == "oboe" else tuple(ABLATION)
        variants = {name: _variant(ABLATION[name]) for name in names}
        table = run(bundle, shared, list(variants), extra=variants)
        lines += [f"### Ablation on {bundle.name} (cold start)", "", *_rows(table.results), ""]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-data", type=Path, default=SHARED)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks-recommender.md"))
    parser.add_argument("--skip-ablation", action="store_true", help="leave the ablation out")
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=LIBRARIES)
    args = parser.parse_args(argv)
    if not (args.shared_data / "transfergraph").is_dir() or not (args.shared_data / "oboe").is_dir():
        print(f"skipped: {args.shared_data} lacks transfergraph/ or oboe/", file=sys.stderr)
        return 0
    started = time.perf_counter()
    command = shlex.join([".venv/bin/python", "benchmarks/recommender.py", *(argv or sys.argv[1:])])
    lines = [
        "# Recommender benchmark",
        "",
        f"`{command}`, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs shared with other work (load average {os.getloadavg()[0]:.1f} at the start); "
        "torch uses 1 thread per fit (see Speed).",
        "",
        "Protocol: leave-one-dataset-out (design.md): every record of a target is hidden, its features and "
        "similarity rows stay. Means over targets. P@k: share of the true top-k in the predicted top-k; "
        "regret@k: best true score minus the best true score among the predicted top-k (accuracy units). "
        "`published`: TransferGraph's best cold-start row over the same targets (its P@k files are "
        "percentiles, not comparable). LogME: ranks by the recorded LogME of the target, over the models it "
        "was run for, paying for every model's probe. `+ probes`: the probe-selector picks "
        f"{DEFAULT_PROBE_BUDGET} models per target; a probe is the recorded transferability score where the "
        "library has them (TransferGraph: the kind that best agrees with accuracy on the training datasets), "
        "else a real measurement (OBOE: the model's cross-validated score, costing its training seconds).",
        "",
    ]
    with tempfile.TemporaryDirectory() as folder:
        bundles = import_libraries(args.shared_data, Path(folder))
        for name in args.libraries:
            lines += library_section(bundles[name], args.shared_data, not args.skip_ablation)
            print("\n".join(lines), flush=True)
        seconds, interactions = training_seconds(bundles["oboe"])
    ms, fit, export = onnx_query_ms()
    lines += [
        "## Speed",
        "",
        f"- Training on OBOE, the largest library ({interactions} interactions, 219 models × 418 datasets), "
        f"default configuration ({FULL.members} members × {FULL.steps} steps): {seconds:.1f} s.",
        f"- Scoring every model of a synthetic 10,000-model library for one query with ONNX Runtime "
        f"(CPUExecutionProvider, 1 thread): median {ms:.2f} ms over 200 runs "
        f"(that library: fit {fit:.0f} s at 30 steps, ONNX export {export:.1f} s).",
        "",
        f"Whole benchmark: {time.perf_counter() - started:.0f} s.",
        "",
    ]
    text = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
