"""What one refresh of the served GNN costs after feedback, step by step, on TabZoo.

    .venv/bin/python benchmarks/refresh.py [--repeat 5] [--members 2]

A refresh (`RecommenderCore._refresh`) puts the served weights on a newer graph: the graph from the knowledge
service (gRPC, embedded cluster: the whole snapshot, as before, and the change since the graph held after one
feedback, put on it with `apply_delta`, as now), the graph prepared and every node embedded under those weights,
then the ONNX model the searches score with. The ONNX step is timed both ways in the same run: a new export
(`serve_onnx()`, what every refresh did before) and the older model with the new graph's constants
(`serve_onnx(like=...)`, what a refresh does now). The weights are a short fit (their values do not change
what a refresh costs). Prints a markdown table (median and max of `--repeat` runs per step).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modsnet.data.graph import InteractionRecord, apply_delta, interaction_columns_of  # noqa: E402
from modsnet.embedded import EmbeddedCluster  # noqa: E402
from services.recommender.estimators.gnn import GnnConfig, GnnEstimator  # noqa: E402


def timed(step: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Median and max milliseconds of `repeat` runs, and the last result."""
    seconds, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = step()
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds)) * 1000, max(seconds) * 1000, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--members", type=int, default=2, help="GNN ensemble size (the services' test size: 2)")
    args = parser.parse_args(argv)
    os.environ["MODSNET_BUILTIN_LIBRARIES"] = "tabzoo"
    rows = []
    with tempfile.TemporaryDirectory() as tmp, EmbeddedCluster(Path(tmp) / "home", worker_processes=-1) as cluster:
        knowledge = cluster.client.knowledge
        median, worst, snapshot = timed(lambda: knowledge.snapshot("tabzoo"), args.repeat)
        rows.append(("graph snapshot from knowledge (gRPC; what every refresh read before)", median, worst))
        # What a refresh reads now: the change since the graph it holds (here one feedback record), put on it.
        model_id, dataset_id = snapshot.models[0].model_id, snapshot.datasets[0].dataset_id
        knowledge.add_interactions("tabzoo", [], [InteractionRecord(model_id, dataset_id, 0.7, provenance="feedback")])

        def delta() -> Any:
            return apply_delta(snapshot, knowledge.snapshot_since("tabzoo", snapshot.graph_version))

        median, worst, applied = timed(delta, args.repeat)
        assert applied == knowledge.snapshot("tabzoo"), "the delta put on the snapshot is not the whole graph"
        rows.append(("the change since the graph held, put on it (gRPC; now)", median, worst))
        config = GnnConfig(members=args.members, steps=20)
        served = GnnEstimator(snapshot, config=config)
        served.serve_onnx()
        # The newer graph: one feedback record, as after a search of a dataset the graph knows.
        first = snapshot.datasets[0].dataset_id
        records = [*interaction_columns_of(snapshot), InteractionRecord(snapshot.models[0].model_id, first, 0.7)]
        newer = dataclasses.replace(snapshot, interactions=records)
        weights = served.state()
        median, worst, _ = timed(lambda: GnnEstimator(newer, config=config, weights=weights), args.repeat)
        rows.append(("weights on the newer graph (prepare + embed)", median, worst))
        refreshed = GnnEstimator(newer, config=config, weights=weights)
        median, worst, _ = timed(lambda: refreshed.serve_onnx(), args.repeat)
        rows.append(("ONNX: a new export (before)", median, worst))
        median, worst, _ = timed(lambda: refreshed.serve_onnx(like=served), args.repeat)
        rows.append(("ONNX: the older model with the new constants (now)", median, worst))
    print(
        f"`python benchmarks/refresh.py --repeat {args.repeat} --members {args.members}` on TabZoo "
        f"({len(snapshot.models)} models, {len(snapshot.datasets)} datasets, "
        f"{len(snapshot.interactions):,} records), {os.cpu_count()} cores\n"
    )
    print("| refresh step | median ms | max ms |\n|---|---:|---:|")
    for name, median, worst in rows:
        print(f"| {name} | {median:.0f} | {worst:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
