"""A served sparse-GNN blend at 1M models, saved once and reused, for Recommend's latency (issue 13 point 5).

    python benchmarks/recommend_scale.py                      # `make bench`: both at 10k, made first if missing
    python benchmarks/recommend_scale.py build --size 1m [--steps 2]
    python benchmarks/recommend_scale.py time --size 1m [--calls 200] [--rounds 2]
    python benchmarks/recommend_scale.py layers --size 1m [--calls 50]
    python benchmarks/recommend_scale.py both --size 1m [--layer-calls 30] [--calls 200]

The full fit at 1M (`scale.py --steps serve`) takes ~22 CPU-minutes, hours of wall time on a loaded machine; a
query's cost does not depend on most of it. `build` makes what a Recommend runs on, over `scale.py`'s SQLite
library (`--steps generate import` first): the sparse GNN with the default network (3 members, the default
hidden and head sizes) trained `--steps` steps per member (a few: its answers are poor, its arithmetic per query
is the served one), the kNN and popularity fitted beside it as `fit_blend` does, and fixed blend weights with
every member in (gnn 0.5, knn 0.3, popularity 0.2: the held-out weights' search is left out, and a member of
weight 0 would not be computed). Latency figures from it are not quality figures. It pickles the estimator (its
ONNX model as bytes, no session), the library's models and 200 queries (`scale._queries`) to
.cache/scale/served-SIZE.pkl (never committed).

`time` and `layers` load that file with the code of the checkout they run in (PYTHONPATH: this one, or a base
worktree's for the before), export the GNN's query module to ONNX and serve it as the core does after a fit
(`serve_onnx`: the checkout's own module), put it in a `RecommenderCore`'s
cache as a fit would and call `core.recommend` (no probes, k 10, the graph version the query service passes):
`time` prints wall and this thread's CPU p50 / p99 over `--rounds` x `--calls` calls as JSON; `layers` the thread
CPU ms per call of each part.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import pickle
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale

WEIGHTS = (0.5, 0.3, 0.2)  # gnn, knn, popularity: every member computed


def saved(size: str) -> Path:
    return scale.CACHE / f"served-{size}.pkl"


def build(size: str, steps: int) -> None:
    from dataclasses import replace

    from services.knowledge.backends.sqlite import SqliteKnowledgeStore
    from services.recommender.estimators.blend import BlendedEstimator, BlendWeights
    from services.recommender.estimators.gnn import GnnConfig
    from services.recommender.estimators.gnn.sparse import SparseGnnEstimator

    start = time.process_time()
    store = SqliteKnowledgeStore(scale.db_of(size))
    snapshot = store.snapshot(scale.name_of(size))
    store.close()
    print(f"snapshot {time.process_time() - start:.0f} s CPU", flush=True)
    gnn = SparseGnnEstimator(snapshot, config=replace(GnnConfig(), steps=steps))
    print(f"GNN {time.process_time() - start:.0f} s CPU", flush=True)
    members = ("gnn", "knn", "popularity")
    blend = BlendWeights(members, WEIGHTS, WEIGHTS, WEIGHTS)
    estimator = BlendedEstimator.assemble(gnn, snapshot, blend, neighbours=8)
    print(f"kNN {time.process_time() - start:.0f} s CPU", flush=True)
    estimator.serve_onnx(providers=["CPUExecutionProvider"])
    print(f"ONNX {time.process_time() - start:.0f} s CPU", flush=True)
    gnn.scorer = None  # a session: made again from `onnx_model` by the loader
    gnn._cancel = gnn._progress = None
    state = {
        "estimator": estimator,
        "library": snapshot.library,
        "models": {m.model_id: m for m in snapshot.models},
        "queries": scale._queries(snapshot, scale.QUERIES),
    }
    with open(saved(size), "wb") as out:
        pickle.dump(state, out, protocol=pickle.HIGHEST_PROTOCOL)
    gib = saved(size).stat().st_size / 2**30
    print(f"saved {saved(size)} ({gib:.2f} GiB), {time.process_time() - start:.0f} s CPU")


def load(size: str) -> tuple[Any, Any, list[dict[str, float]]]:
    """The core with the saved estimator served (from its ONNX model) in its cache, the served, the queries."""
    from modsnet.features import single_threaded_blas
    from services.recommender.core import RecommenderCore, Served

    if not saved(size).exists():  # as `make bench` runs it (10k, nothing made yet): the library, then the build
        if not scale.db_of(size).exists():
            scale.CACHE.mkdir(parents=True, exist_ok=True)
            scale.child_generate(size)
            scale.child_import(size)
        build(size, 2)

    single_threaded_blas()  # as the serving process
    start = time.perf_counter()
    with open(saved(size), "rb") as source:
        state = pickle.load(source)
    estimator = state["estimator"]
    loaded = time.perf_counter() - start
    gnn = estimator.primary
    if "self._ones" in inspect.getsource(type(gnn)):  # a checkout before e915e6c: its prior reads a ones matrix
        gnn._ones = gnn.score_matrix.with_data(np.ones(len(gnn.score_matrix.data)))
    estimator.serve_onnx(providers=["CPUExecutionProvider"])  # exported by this checkout, as its fit would
    library = state["library"]
    served = Served(estimator, library, state["models"], "trained", library.graph_version, 0, time.time(), 0.0,
                    "onnxruntime:CPUExecutionProvider")  # fmt: skip
    served.table  # noqa: B018  # built with the fit in the core
    core = RecommenderCore(None, None, estimator="gnn")  # type: ignore[arg-type]  # never asks: the version is known
    core._cache[library.name] = served
    print(f"loaded in {loaded:.1f} s, served in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return core, served, state["queries"]


def recommend(core: Any, served: Any, features: dict[str, float]) -> Any:
    from modsnet.data.graph import Constraints

    return core.recommend(
        served.library.name, features, k=10, constraints=Constraints(), probe_budget=0,
        known_version=served.graph_version,
    )  # fmt: skip


def timed(size: str, calls: int, rounds: int, loaded: Any = None) -> None:
    core, served, queries = loaded or load(size)
    for features in queries[:10]:  # warm: the first calls build caches
        recommend(core, served, features)
    wall, cpu = [], []
    for _ in range(rounds):
        for i in range(calls):
            t, c = time.perf_counter(), time.thread_time()
            recommend(core, served, queries[i % len(queries)])
            cpu.append(time.thread_time() - c)
            wall.append(time.perf_counter() - t)
    ms, cpu_ms = np.array(wall) * 1000, np.array(cpu) * 1000
    print(json.dumps({
        "size": size, "calls": len(ms), "load": os.getloadavg()[0],
        "wall_p50_ms": float(np.percentile(ms, 50)), "wall_p99_ms": float(np.percentile(ms, 99)),
        "cpu_p50_ms": float(np.percentile(cpu_ms, 50)), "cpu_p99_ms": float(np.percentile(cpu_ms, 99)),
        "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }))  # fmt: skip


def cpu_ms(function: Callable[[], Any], calls: int) -> float:
    function()
    start = time.thread_time()
    for _ in range(calls):
        function()
    return (time.thread_time() - start) * 1000 / calls


def layers(size: str, calls: int, loaded: Any = None) -> None:
    from modsnet.data.graph import Constraints
    from services.recommender import ranking
    from services.recommender.core import top_k
    from services.recommender.ranking import Order

    core, served, queries = loaded or load(size)
    blend, features = served.estimator, queries[0]
    gnn = blend.primary
    vectors = blend.score_all(features)
    if hasattr(ranking, "allowed_positions"):
        allowed = ranking.allowed_positions(served.table, Constraints())
    else:  # a base checkout's
        allowed = np.flatnonzero(ranking.allowed_mask(served.table, Constraints()))
    order = Order.of(vectors.scores, vectors.uncertainty, blend.sign, served.table)
    inputs = gnn.query(features).inputs
    arguments = gnn._module_inputs(inputs)
    rows: list[tuple[str, Callable[[], Any]]] = [
        ("core.recommend", lambda: recommend(core, served, features)),
        ("  blend.score_all", lambda: blend.score_all(features)),
        ("    blend.weights_for", lambda: blend.weights_for(features, known_dataset=None, probes=())),
        ("    GNN score_all", lambda: gnn.score_all(features)),
        ("      GNN query inputs (query)", lambda: gnn.query(features)),
        ("      GNN module inputs (the prior)", lambda: gnn._module_inputs(inputs)),
        ("      GNN run (ONNX Runtime)", lambda: gnn.scorer.run(arguments)),
        ("    kNN member score_all", lambda: blend.knn.score_all(features)),
        ("    popularity member", lambda: blend.knn.score_popularity(features)),
        ("  top_k", lambda: top_k(served, vectors, Constraints(), (), k=10, higher_is_better=True)),
        ("    Order.of", lambda: Order.of(vectors.scores, vectors.uncertainty, blend.sign, served.table)),
        ("    Order.first", lambda: order.first(allowed, 10)),
        ("    10 shown predictions", lambda: [vectors.prediction(int(j)) for j in order.first(allowed, 10)]),
    ]
    out = {}
    for name, function in rows:
        out[name] = cpu_ms(function, calls)
        print(f"{out[name]:8.3f} ms  {name}", flush=True)
    print(json.dumps({"size": size, "load": os.getloadavg()[0], **out}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", default="both", choices=("build", "time", "layers", "both"))
    parser.add_argument("--size", default="10k", choices=list(scale.SIZES))
    parser.add_argument("--steps", type=int, default=2, help="build: GNN training steps per member")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--layer-calls", type=int, default=30, help="both: calls per layer")
    args = parser.parse_args()
    if args.mode == "build":
        build(args.size, args.steps)
    elif args.mode == "time":
        timed(args.size, args.calls, args.rounds)
    elif args.mode == "layers":
        layers(args.size, args.calls)
    else:  # one load: the layers over --layer-calls calls each, then the timed calls
        loaded = load(args.size)
        layers(args.size, args.layer_calls, loaded)
        timed(args.size, args.calls, args.rounds, loaded)
    return 0


if __name__ == "__main__":
    sys.exit(main())
