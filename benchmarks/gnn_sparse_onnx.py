"""The sparse GNN's query module under torch and under ONNX Runtime, in one process (issue 13).

    python benchmarks/gnn_sparse_onnx.py --size 100k [--steps 2] [--calls 300]

reads the SQLite library `benchmarks/scale.py` imported (`--steps generate import`), puts a short fit of the
sparse GNN on it (a query's cost depends on the members and the graph, not on the steps), exports its query
module to ONNX (the neighbour prior an input, the library side per-version constants) and times the same
queries (`scale._queries`: held-in datasets' features jittered) through both backends, alternating rounds so both
see the same machine: per call this thread's CPU ms of `run` (the query module, prior included) and of the
estimator's `score_all`, p50 / p99, and the largest difference between the two backends' outputs. Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scale import _queries, db_of, name_of


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _cpu_ms(call: Any, items: list[Any]) -> list[float]:
    out = []
    for item in items:
        c = time.thread_time()
        call(item)
        out.append((time.thread_time() - c) * 1000)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="100k")
    parser.add_argument("--steps", type=int, default=2, help="GNN steps per member (the query's cost does not change)")
    parser.add_argument("--members", type=int, default=0, help="ensemble size (0: the GNN's default)")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    from modsnet.features import single_threaded_blas
    from services.knowledge.backends.sqlite import SqliteKnowledgeStore
    from services.recommender.estimators.gnn import GnnConfig, GnnEstimator
    from services.recommender.estimators.gnn.sparse import SparseGnnEstimator

    single_threaded_blas()  # as the serving process
    out: dict[str, Any] = {"size": args.size}
    store = SqliteKnowledgeStore(db_of(args.size))
    snapshot = store.snapshot(name_of(args.size))
    store.close()
    default = GnnConfig()
    config = replace(default, steps=args.steps, members=args.members or default.members)
    start = time.process_time()
    gnn = SparseGnnEstimator(snapshot, config=config)
    out["fit_cpu"], out["peak_gib_torch"] = time.process_time() - start, _peak_gib()
    queries = [gnn.query(f).inputs for f in _queries(snapshot, args.calls)]
    features = _queries(snapshot, args.calls)
    arguments = [gnn._module_inputs(q) for q in queries]

    start = time.perf_counter()
    scorer = GnnEstimator.serve_onnx(gnn)  # the dense class's export, with the prior as an input
    out["export_seconds"], out["onnx_bytes"], out["peak_gib_onnx"] = (
        time.perf_counter() - start, len(gnn.onnx_model or b""), _peak_gib(),
    )  # fmt: skip
    torch_scorer = None
    worst = 0.0
    for a in arguments[:50]:
        want, got = gnn._run_torch(a), scorer.run(a)
        worst = max(worst, float(np.abs(want[0] - got[0]).max()), float(np.abs(want[1] - got[1]).max()))
    out["max_abs_difference"] = worst

    timings: dict[str, list[float]] = {"torch_module": [], "onnx_module": [], "torch_score_all": [],
                                       "onnx_score_all": []}  # fmt: skip
    for _ in range(args.rounds):
        timings["torch_module"] += _cpu_ms(gnn._run_torch, arguments)
        timings["onnx_module"] += _cpu_ms(scorer.run, arguments)
        gnn.scorer = torch_scorer
        timings["torch_score_all"] += _cpu_ms(gnn.score_all, features)
        gnn.scorer = scorer
        timings["onnx_score_all"] += _cpu_ms(gnn.score_all, features)
    for name, values in timings.items():
        out[f"{name}_cpu_ms_p50"] = float(np.percentile(values, 50))
        out[f"{name}_cpu_ms_p99"] = float(np.percentile(values, 99))
    out["prior_cpu_ms_p50"] = float(
        np.percentile(_cpu_ms(lambda q: gnn._query_prior(q["dataset_weights"]), queries), 50)
    )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
