"""Where one Recommend's time goes at 10k models (issue 13): thread CPU per layer, per-call p50/p99, collections.

    .venv/bin/python benchmarks/recommend_layers.py {layers,time,gc} [--estimator gnn|knn] [--calls N] [--steps S]

Over `benchmarks/scale.py`'s 10k library (run its generate and import steps first) and its 200 queries, with the
recommender core in-process as `--steps serve` runs it. The GNN's trained weights are kept as a checkpoint in
.cache/scale/checkpoints (a file store): the first run fits (`--steps` per member, 20 by default: a query's
cost depends on the members, not the steps), later runs, this checkout's or another's, load the same weights.

- layers: thread CPU ms per call of each layer for one query (the blend, each member, the GNN's inputs and its
  ONNX run, top_k and its parts);
- time: wall and thread-CPU p50/p99 of `recommend` over `--calls` calls;
- gc: the garbage collections during `--calls` calls, and which of the slowest calls had one;
- grpc: the same library served by the one-process cluster (`--steps load`'s): thread CPU of `core.recommend`, of
  the servicer's `Recommend` (request to records, core, reply), of the reply's conversion, and the process CPU of
  a whole call through gRPC from one client thread (so what gRPC, the interceptor and the client stub add).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale

from modsnet.data.graph import Constraints

SIZE = "10k"
CHECKPOINTS = scale.CACHE / "checkpoints"


FileStorage = scale.FileStorage  # checkpoints as files, as scale.py's serve step keeps them


def served_core(estimator: str, steps: int) -> tuple[Any, Any, list[dict[str, float]]]:
    from services.knowledge.backends.sqlite import SqliteKnowledgeStore
    from services.recommender.core import RecommenderCore
    from services.recommender.estimators.gnn import GnnConfig

    store = SqliteKnowledgeStore(scale.db_of(SIZE))
    knowledge = scale._StoreKnowledge(store)
    core = RecommenderCore(
        knowledge,  # type: ignore[arg-type]
        FileStorage(CHECKPOINTS),  # type: ignore[arg-type]
        estimator=estimator,
        train_inline_limit=10**12,
        gnn_config=GnnConfig(steps=steps),
        max_staleness_seconds=0,
    )
    start = time.perf_counter()
    served = core.fitted(scale.name_of(SIZE))
    print(f"{served.estimator.name} ({served.origin}, {served.backend}) in {time.perf_counter() - start:.1f} s")
    queries = scale._queries(knowledge.last or store.snapshot(scale.name_of(SIZE)), scale.QUERIES)
    return core, served, queries


def recommend(core: Any, served: Any, features: dict[str, float]) -> Any:
    return core.recommend(
        scale.name_of(SIZE), features, k=10, constraints=Constraints(), probe_budget=0,
        known_version=served.graph_version,
    )  # fmt: skip


def cpu_ms(function: Callable[[], Any], calls: int) -> float:
    start = time.thread_time()
    for _ in range(calls):
        function()
    return (time.thread_time() - start) * 1000 / calls


def layers(core: Any, served: Any, queries: list[dict[str, float]], calls: int) -> None:
    from services.recommender.core import top_k
    from services.recommender.ranking import Order, allowed_mask

    blend, features = served.estimator, queries[0]
    primary = blend.primary
    vectors = blend.score_all(features)
    allowed = np.flatnonzero(allowed_mask(served.table, Constraints()))
    order = Order.of(vectors.scores, vectors.uncertainty, blend.sign, served.table)
    rows: list[tuple[str, Callable[[], Any]]] = [
        ("core.recommend", lambda: recommend(core, served, features)),
        ("  blend.score_all", lambda: blend.score_all(features)),
        ("    blend.weights_for", lambda: blend.weights_for(features, known_dataset=None, probes=())),
    ]
    if hasattr(primary, "query"):  # the GNN
        inputs = primary.query(features).inputs
        rows += [
            ("    GNN score_all", lambda: primary.score_all(features)),
            ("      GNN query inputs", lambda: primary.query(features)),
            ("      ONNX run", lambda: primary.run(inputs)),
        ]
    rows += [
        ("    kNN member score_all", lambda: blend.knn.score_all(features)),
        ("    popularity member", lambda: blend.knn.score_popularity(features)),
        ("  top_k", lambda: top_k(served, vectors, Constraints(), (), k=10, higher_is_better=True)),
        ("    Order.first (argpartition)", lambda: order.first(allowed, 10)),
        ("    10 shown predictions", lambda: [vectors.prediction(int(j)) for j in order.first(allowed, 10)]),
    ]
    weights = blend.weights_for(features, known_dataset=None, probes=())
    print(f"blend weights {dict(zip(blend.blend.members, weights, strict=True))}")
    for name, function in rows:
        function()
        print(f"{cpu_ms(function, calls):8.3f} ms  {name}")


def timed(core: Any, served: Any, queries: list[dict[str, float]], calls: int) -> None:
    wall, cpu = [], []
    for i in range(calls):
        t, c = time.perf_counter(), time.thread_time()
        recommend(core, served, queries[i % len(queries)])
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - t)
    ms, cpu_ms_ = np.array(wall) * 1000, np.array(cpu) * 1000
    print(f"{calls} calls: wall p50 / p99 {np.percentile(ms, 50):.2f} / {np.percentile(ms, 99):.2f} ms, "
          f"CPU p50 / p99 {np.percentile(cpu_ms_, 50):.2f} / {np.percentile(cpu_ms_, 99):.2f} ms")  # fmt: skip


def collections(core: Any, served: Any, queries: list[dict[str, float]], calls: int) -> None:
    events: list[tuple[int, float]] = []
    begun = [0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            begun[0] = time.perf_counter()
        else:
            events.append((info["generation"], (time.perf_counter() - begun[0]) * 1000))

    print(f"tracked objects {len(gc.get_objects()):,}, thresholds {gc.get_threshold()}")
    gc.callbacks.append(callback)
    wall, during = [], []
    try:
        for i in range(calls):
            seen = len(events)
            t = time.perf_counter()
            recommend(core, served, queries[i % len(queries)])
            wall.append((time.perf_counter() - t) * 1000)
            during.append(events[seen:])
    finally:
        gc.callbacks.remove(callback)
    for generation in (0, 1, 2):
        ms = [d for g, d in events if g == generation]
        if ms:
            print(f"generation {generation}: {len(ms)} collections, mean {np.mean(ms):.2f} ms, max {max(ms):.2f} ms")
    slowest = np.argsort(-np.array(wall))[: max(1, calls // 100)]
    with_gc = sum(1 for j in slowest if during[j])
    print(f"slowest 1% ({len(slowest)} calls, from {wall[slowest[-1]]:.1f} ms): {with_gc} had a collection")


def through_grpc(estimator: str, calls: int) -> None:
    import tempfile

    from modsnet.embedded import EmbeddedCluster
    from modsnet.runtime.convert import ranking_to_pb
    from modsnet.runtime.stubs import RecommenderClient
    from modsnet.v1 import recommender_pb2 as rpb
    from services.knowledge.backends.sqlite import SqliteKnowledgeStore
    from services.recommender.servicer import RecommenderServicer, _ranking

    library = scale.name_of(SIZE)
    store = SqliteKnowledgeStore(scale.db_of(SIZE))
    queries = scale._queries(store.snapshot(library), 50)
    store.close()
    home = Path(tempfile.mkdtemp(prefix="layers-home-"))
    (home / "knowledge.sqlite3").symlink_to(scale.db_of(SIZE))
    with EmbeddedCluster(home, import_builtins=False, estimator=estimator, train_inline_limit=10**12) as cluster:
        client = RecommenderClient(cluster.addresses["recommender"], timeout=3600)  # the first call fits
        known: Any = scale._known_version(cluster.addresses["knowledge"], library)
        version = known.get("graph_version", 0)
        client.recommend(library, queries[0], feature_set="tabular/v1", k=10, **known)
        core = cluster.recommender_core
        servicer = RecommenderServicer(core)
        requests = []
        for features in queries:
            request = rpb.RecommendRequest(library=library, k=10, graph_version=version)
            request.features.feature_set = "tabular/v1"
            request.features.values.update(features)
            requests.append(request)
        answers = [
            core.recommend(library, q, k=10, constraints=Constraints(), probe_budget=0, known_version=version)
            for q in queries
        ]
        at = [0]

        def each(function: Callable[[int], Any]) -> Callable[[], Any]:
            def one() -> Any:
                at[0] += 1
                return function(at[0] % len(queries))

            return one

        rows: list[tuple[str, Callable[[], Any], Callable[[], float]]] = [
            ("core.recommend", each(lambda i: core.recommend(library, queries[i], k=10, constraints=Constraints(),
                                                             probe_budget=0, known_version=version)), time.thread_time),
            ("servicer.Recommend", each(lambda i: servicer.Recommend(requests[i], None)), time.thread_time),
            ("  reply: _ranking + ranking_to_pb", each(lambda i: ranking_to_pb(_ranking(answers[i]))),
             time.thread_time),
            ("a call through gRPC, 1 client thread (process CPU)",
             each(lambda i: client.recommend(library, queries[i], feature_set="tabular/v1", k=10, **known)),
             time.process_time),
        ]  # fmt: skip
        print(f"reply {len(ranking_to_pb(_ranking(answers[0])).SerializeToString())} bytes")
        for name, function, clock in rows:
            for _ in range(20):
                function()
            start = clock()
            for _ in range(calls):
                function()
            print(f"{(clock() - start) * 1000 / calls:8.3f} ms  {name}")
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("layers", "time", "gc", "grpc"))
    parser.add_argument("--estimator", choices=("gnn", "knn"), default="gnn")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--steps", type=int, default=20, help="GNN training steps per member when it must fit")
    args = parser.parse_args()
    if args.mode == "grpc":
        through_grpc(args.estimator, args.calls)
        return 0
    core, served, queries = served_core(args.estimator, args.steps)
    try:
        for features in queries[:20]:  # warm: the first calls build caches
            recommend(core, served, features)
        {"layers": layers, "time": timed, "gc": collections}[args.mode](core, served, queries, args.calls)
    finally:
        core.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
