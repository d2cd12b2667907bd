"""Concurrency and the Recommend fast path: Recommend at 10k models, searches/s and feedback under load.

    .venv/bin/python benchmarks/recommend_speed.py [--models 10000] [--datasets 20] [--seconds 10]
        [--clients 1 8 32] [--skip-search | --skip-recommend] [--out docs/benchmarks-concurrency.md]

On one embedded cluster (the one-process default: every service and this benchmark's clients in one process,
so gRPC figures share one GIL with the servers):
1. a synthetic tabular library of `--models` models x `--datasets` datasets (every pair scored, costs and a
   metadata column per model; tests/synthetic.py's generator), its GNN trained once (`modsnet train`);
2. Recommend in the service's own code (`RecommenderCore.recommend` on the trained checkpoint: the fast path)
   against the path before it (every model's Prediction built, filtered one by one, fully sorted), same
   run, same queries; then Recommend through gRPC, one client for latency, `--clients` for throughput;
3. Search on TabZoo of a 10,000-row x 20-column CSV, warm, without probes and with 5;
4. `--clients` clients each looping search (no probes) then feedback on its answer: searches/s and the
   feedback latency while searches run, searching the same file (a known dataset after its first feedback:
   each search waits for the graph with its own records) or a new file each time (answered at once by the
   estimator of the graph before the latest feedback while one background job refreshes it); 3 and 4 again
   with every refresh on the request path (`max_staleness_seconds` 0, the behaviour before), and with the
   parsing on the RPC threads too.
Prints a markdown page; `--out` also writes it there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from synthetic import make_table, write_library  # noqa: E402

from benchmarks._loops import throughput  # noqa: E402
from modsnet.data.graph import Constraints  # noqa: E402
from modsnet.embedded import EmbeddedCluster  # noqa: E402
from modsnet.features.tabular import tabular_features  # noqa: E402
from modsnet.runtime.stubs import KnowledgeClient, RecommenderClient, StorageClient  # noqa: E402
from services.recommender.core import Ranked, RecommenderCore  # noqa: E402
from services.recommender.estimators.gnn import GnnConfig  # noqa: E402
from services.recommender.recommendation import answer_positions, recommend_one  # noqa: E402


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    values = np.array(seconds) * 1000
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def timed(call: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def old_path(core: RecommenderCore, library: str, features: dict[str, float], k: int, constraints: Constraints):  # type: ignore[no-untyped-def]
    """Recommend as it was before the fast path (the reference of the equivalence test)."""
    served = core.fitted(library)
    estimator = served.estimator
    predictions = estimator.predict(features, known_dataset=None, probes=[])
    allowed = [p for p in predictions if constraints.allows(served.models[p.model_id])]
    allowed.sort(key=lambda p: (-estimator.sign * p.score, p.uncertainty, p.model_id))
    pick = recommend_one(allowed, [], higher_is_better=True, k=k)
    keep = next(i for i, p in enumerate(allowed) if p.model_id == pick.model_id) if pick else None
    return [
        Ranked(i + 1, allowed[i], served.models[allowed[i].model_id]) for i in answer_positions(len(allowed), k, keep)
    ]


def recommend_section(cluster: EmbeddedCluster, args: argparse.Namespace, work: Path) -> list[str]:
    folder = write_library(work / "big", name="big", n_models=args.models, n_datasets=args.datasets, seed=1)
    models = pd.read_csv(folder / "models.csv")
    models["size"] = np.where(np.arange(len(models)) % 3 == 0, "small", "large")  # a metadata constraint's column
    models.to_csv(folder / "models.csv", index=False)
    start = time.perf_counter()
    cluster.client.import_library(folder)
    imported = time.perf_counter() - start
    start = time.perf_counter()
    info = cluster.client.train("big")
    trained = time.perf_counter() - start
    queries = [tabular_features(make_table(300, 3 + i % 15, 2 + i % 3, 100 + i), "class") for i in range(20)]
    # The service's own code on the trained checkpoint (it loads it from storage: no training here).
    members, steps = int(os.environ.get("MODSNET_GNN_MEMBERS", 0)), int(os.environ.get("MODSNET_GNN_STEPS", 0))
    default = GnnConfig()
    config = GnnConfig(members=members or default.members, steps=steps or default.steps)
    core = RecommenderCore(
        KnowledgeClient(cluster.addresses["knowledge"]), StorageClient(cluster.addresses["storage"]), gnn_config=config
    )
    served = core.fitted("big")
    assert served.origin == "checkpoint", served.origin
    cheap = Constraints(max_train_seconds=0.1 * args.models / 2, require_metadata={"size": "small"})
    rows = []
    for label, constraints in (("no constraints", Constraints()), ("cost + metadata constraints", cheap)):
        turn = iter(range(10**9))

        def fast(c: Constraints = constraints, t: Iterator[int] = turn) -> object:
            return core.recommend("big", queries[next(t) % len(queries)], k=10, constraints=c)

        def old(c: Constraints = constraints, t: Iterator[int] = turn) -> object:
            return old_path(core, "big", queries[next(t) % len(queries)], 10, c)

        for query in queries:  # the same answers, on every query
            assert [r.model.model_id for r in core.recommend("big", query, k=10, constraints=constraints).models] == [
                r.model.model_id for r in old_path(core, "big", query, 10, constraints)
            ]
        fast_p = percentiles(timed(fast, args.repeat))
        old_p = percentiles(timed(old, max(5, args.repeat // 10)))
        rows.append(
            f"| in the service, {label} | {fast_p[0]:.1f} | {fast_p[1]:.1f} | {old_p[0]:.1f} | {old_p[1]:.1f} | "
            f"{old_p[0] / fast_p[0]:.0f}x |"
        )
    core.close()
    client = RecommenderClient(cluster.addresses["recommender"])
    features = queries[0]
    one = percentiles(timed(lambda: client.recommend("big", features, feature_set="tabular/v1", k=10), args.repeat))
    grpc_rows = [f"| through gRPC, 1 client | {one[0]:.1f} | {one[1]:.1f} | | | |"]
    per_second = []
    for clients in args.clients:
        rate, latencies, errors = throughput(
            clients, args.seconds, lambda _: client.recommend("big", features, feature_set="tabular/v1", k=10)
        )
        p50, p99 = percentiles(latencies) if latencies else (float("nan"), float("nan"))
        per_second.append(f"| {clients} | {rate:.0f} | {p50:.1f} | {p99:.1f} | {errors} |")
    client.close()
    return [
        f"### Recommend at {args.models:,} models",
        "",
        f"Library: {args.models:,} models x {args.datasets} datasets, every pair scored "
        f"({args.models * args.datasets:,} records); imported in {imported:.0f} s, GNN trained in {trained:.0f} s "
        f"({info.origin}, {info.backend}). k = 10; 20 query datasets in turn.",
        "",
        "| Recommend | fast p50 ms | fast p99 ms | before p50 ms | before p99 ms | before / fast |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        *grpc_rows,
        "",
        "| clients (threads, same process) | Recommend/s | p50 ms | p99 ms | errors |",
        "|---:|---:|---:|---:|---:|",
        *per_second,
        "",
    ]


def new_files(work: Path, count: int) -> Iterator[Path]:
    """Small CSVs no search has seen (each search of one adds a dataset node with its feedback), made on demand."""
    folder = work / "new"
    folder.mkdir(exist_ok=True)
    for i in range(count):
        path = folder / f"new-{i}.csv"
        make_table(200, 3 + i % 6, 2 + i % 2, 10_000 + i).to_csv(path, index=False)
        yield path


def refresh_counts() -> tuple[float, float, float]:
    """This process's recommender so far: answers from an estimator behind the graph, refreshes on the request
    path (a version the cache had not reached), refreshes in the background."""
    from prometheus_client import REGISTRY

    stale = REGISTRY.get_sample_value("modsnet_estimator_cache_total", {"result": "stale"}) or 0.0
    inline = background = 0.0
    for metric in REGISTRY.collect():
        if metric.name != "modsnet_estimator_fits":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels["reason"].endswith(":refreshed"):
                if sample.labels["reason"].startswith("background"):
                    background += sample.value
                else:
                    inline += sample.value
    return stale, inline, background


def search_section(cluster: EmbeddedCluster, args: argparse.Namespace, work: Path, where: str) -> tuple[str, list[str]]:
    table = make_table(10_000, 19, 3, 5)  # 19 features + the class: 20 columns
    csv = work / "wide.csv"
    table.to_csv(csv, index=False)
    start = time.perf_counter()
    cluster.client.search(csv, library="tabzoo", probe_budget=0)
    first_seconds = time.perf_counter() - start
    no_probes = percentiles(timed(lambda: cluster.client.search(csv, library="tabzoo", probe_budget=0), 10))
    # The same shape, a file no search has seen each time (its upload is stored, not found in storage).
    wide_files = []
    for i in range(10):
        wide_files.append(work / f"wide-{where[:6].strip()}-{i}.csv")
        make_table(10_000, 19, 3, 1000 + i).to_csv(wide_files[-1], index=False)
    fresh_wide = iter(wide_files)
    new_wide = percentiles(
        timed(lambda: cluster.client.search(next(fresh_wide), library="tabzoo", probe_budget=0), len(wide_files))
    )
    probed = percentiles(timed(lambda: cluster.client.search(csv, library="tabzoo", probe_budget=5), 10))
    small = ROOT / "examples" / "saheart.csv"
    fresh_files = iter(new_files(work, len(args.clients) * int(60 * args.seconds)))
    rows = []
    for loop, pick in (("same file", lambda: small), ("new file each", lambda: next(fresh_files))):
        for clients in args.clients:
            searched: list[float] = []
            feedback: list[float] = []
            lock = threading.Lock()

            def search_then_feedback(
                searched: list[float] = searched,
                feedback: list[float] = feedback,
                lock: threading.Lock = lock,
                pick: Callable[[], Path] = pick,
            ) -> None:
                with lock:
                    path = pick()
                start = time.perf_counter()
                answer = cluster.client.search(path, library="tabzoo", probe_budget=0)
                middle = time.perf_counter()
                cluster.client.report_performance(answer.query_id, answer.models[0].model_id, 0.7)
                with lock:
                    searched.append(middle - start)
                    feedback.append(time.perf_counter() - middle)

            before = refresh_counts()
            _, _, errors = throughput(clients, args.seconds, lambda _, call=search_then_feedback: call())
            stale, inline, background = (after - was for after, was in zip(refresh_counts(), before, strict=True))
            rate = len(searched) / args.seconds
            search_p = percentiles(searched) if searched else (float("nan"), float("nan"))
            feedback_p = percentiles(feedback) if feedback else (float("nan"), float("nan"))
            rows.append(
                f"| {where} | {loop} | {clients} | {rate:.1f} | {search_p[0]:.0f} | {search_p[1]:.0f} | "
                f"{feedback_p[0]:.0f} | {feedback_p[1]:.0f} | {stale:.0f} | {inline:.0f} / {background:.0f} | "
                f"{errors} |"
            )
    single = (
        f"| {where} | {first_seconds:.1f} | {no_probes[0]:.0f} | {no_probes[1]:.0f} | {new_wide[0]:.0f} | "
        f"{new_wide[1]:.0f} | {probed[0]:.0f} | {probed[1]:.0f} |"
    )
    return single, rows


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--datasets", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=200, help="Recommend calls timed per row")
    parser.add_argument("--seconds", type=float, default=10.0, help="per load row")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--skip-search", action="store_true", help="only the Recommend section")
    parser.add_argument("--skip-recommend", action="store_true", help="only the Search and feedback section")
    parser.add_argument("--out", type=Path, help="also write the page here (docs/benchmarks-concurrency.md)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]  # the machine's other work while this ran, for reading the figures
    os.environ["MODSNET_BUILTIN_LIBRARIES"] = "tabzoo"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lines: list[str] = []
        with EmbeddedCluster(work / "home", import_builtins=not args.skip_search, worker_processes=0) as cluster:
            if not args.skip_recommend:
                lines = recommend_section(cluster, args, work)
            if not args.skip_search:
                searches = [search_section(cluster, args, work, "worker processes")]
        if not args.skip_search:
            # The same data folder (TabZoo's GNN loads from its checkpoint): every search after feedback waits
            # for the refresh (max staleness 0), then CPU work back on the RPC threads too.
            with EmbeddedCluster(work / "home", worker_processes=0, max_staleness_seconds=0) as cluster:
                searches.append(search_section(cluster, args, work, "worker processes, refresh inline (before)"))
            with EmbeddedCluster(work / "home", worker_processes=-1, max_staleness_seconds=0) as cluster:
                searches.append(search_section(cluster, args, work, "RPC threads, refresh inline (before)"))
            lines += [
                "### Search and feedback (TabZoo)",
                "",
                "Warm searches of a 10,000-row x 20-column CSV, 10 each (first: the first search of the cluster; "
                "with worker processes it trains TabZoo's GNN, then the second cluster loads its checkpoint); "
                "new file: 10 other CSVs of the same shape, each searched once:",
                "",
                "| parsing, features, probes on | first s | p50 ms | p99 ms | new file p50 ms | new file p99 ms | "
                "5 probes p50 ms | 5 probes p99 ms |",
                "|---|---:|---:|---:|---:|---:|---:|---:|",
                *(single for single, _ in searches),
                "",
                f"Clients loop: search a CSV (no probes), then feedback on its top model; {args.seconds:.0f} s per "
                "row; searches/s counts the searches of the row (those in flight at its end finish and count) over "
                "those seconds. Search latency excludes the feedback. Same file: examples/saheart.csv every time, "
                "a known dataset after its first feedback, so each search waits for the graph with its own records; "
                "new file each: a 200-row CSV no search has seen (what most users bring), answered by the estimator "
                "of the graph before the latest feedback for up to max_staleness_seconds (10 s) while it refreshes. "
                "Behind: answers from an estimator behind the graph; refreshes: on the request path / in the "
                "background.",
                "",
                "| parsing, features, probes on | search | clients | searches/s | search p50 ms | search p99 ms | "
                "feedback p50 ms | feedback p99 ms | behind | refreshes | errors |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
                *(row for _, rows in searches for row in rows),
                "",
            ]
    command = "python benchmarks/recommend_speed.py " + shlex.join(argv)
    header = [
        "# Benchmark: concurrency and the Recommend fast path",
        "",
        f"`{command.strip()}` — {dt.date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} cores "
        f"(shared with other work while it ran: load average {load_before:.0f} at the start, "
        f"{os.getloadavg()[0]:.0f} at the end), {time.perf_counter() - started:.0f} s. One embedded cluster: the "
        "services and the benchmark's client threads share one process.",
        "",
    ]
    text = "\n".join(header + lines)
    if args.out is not None:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
