"""Scale benchmark: synthetic libraries of 10k, 100k and 1M models, through every step that grows with them.

    .venv/bin/python benchmarks/scale.py [--sizes 10k 100k 1m] [--steps generate import snapshot serve]
        [--redis] [--estimator gnn|knn] [--baseline-checkout ../main] [--out docs/benchmarks-scale.md]

Sizes (models x datasets, interactions): 10k = 10,000 x 300, 100,000; 100k = 100,000 x 1,000, 1,000,000;
1m = 1,000,000 x 3,000, 10,000,000. Each step runs in a child process, so its wall time and peak RSS
(`wait4`'s ru_maxrss) are its own:

1. generate: `modsnet.offline.synthetic_library` into .cache/scale/ (kept; a later run reuses it and
   reports the time of the run that made it);
2. import: `read_bundle` (every check) then the SQLite store's import, into .cache/scale/NAME.sqlite3;
   with `--redis` also into a redis-server this script starts (client-side RSS; the server's memory apart);
3. snapshot: the store's `snapshot()` (columnar); with `--baseline-checkout PATH` the same step run with
   PATH's code first (an older checkout of this project on the same database file), the before/after pair;
4. serve: the recommender core in-process (`RecommenderCore` over the store, as the service runs it, no
   probes): the first fit (time and peak RSS; what `modsnet train` does, calibration included), then the
   p50/p99 of `recommend` over 200 queries with a held-in dataset's features jittered, each with the graph
   version the query service would pass (a checkout without that argument asks the store each call).
   MODSNET_GNN_MEMBERS / MODSNET_GNN_STEPS shorten the GNN's fit as they do the cluster's (a query's cost
   depends on the members, not the steps: for latency work, not for quality). With `--checkpoints` the core
   keeps the trained weights in .cache/scale/checkpoints (a file store, never committed) as the storage
   service would: the first run fits and saves them, a later run (this checkout's or `--baseline-checkout`'s)
   with the same settings loads them and skips the training (its "fit" is then the graph's preparation, the
   kNN beside it and the ONNX export). Skipped, with the reason, when the estimator's dense (datasets x
   models) matrices would not fit `--memory-gib`, and stopped at `--serve-timeout`;
5. load: Recommend through gRPC on the one-process cluster, again with the version the query service passes.

Prints a markdown table (with the command and the machine) and writes it to `--out`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "scale"
SIZES = {
    "10k": (10_000, 300, 100_000),
    "100k": (100_000, 1_000, 1_000_000),
    "1m": (1_000_000, 3_000, 10_000_000),
}
STEPS = ("generate", "import", "snapshot", "serve", "load")
# Dense float64 (datasets x models) arrays the estimators build while fitting (scores, z, masks, the
# kNN prior, the training copies): measured ~10 at 10k models; the rest of the memory is small beside them.
DENSE_ARRAYS = 10
QUERIES = 200
CHECKPOINTS = CACHE / "checkpoints"


def name_of(size: str) -> str:
    return f"synth-{size}"


def bundle_of(size: str) -> Path:
    return CACHE / name_of(size)


def db_of(size: str) -> Path:
    return CACHE / f"{name_of(size)}.sqlite3"


# ----------------------------------------------------------------------------------------------------
# Children: one step each, a JSON line on stdout


def child_generate(size: str) -> dict[str, Any]:
    from modsnet.offline.synthetic_library import LibrarySpec, generate

    models, datasets, interactions = SIZES[size]
    start = time.perf_counter()
    generate(LibrarySpec(models, datasets, interactions, seed=0, name=name_of(size)), bundle_of(size))
    return {"seconds": time.perf_counter() - start}


def child_import(size: str, redis_url: str = "") -> dict[str, Any]:
    from modsnet.data.bundle import read_bundle

    start = time.perf_counter()
    bundle = read_bundle(bundle_of(size))
    checked = time.perf_counter() - start
    if redis_url:
        from services.knowledge.backends.redis import RedisKnowledgeStore

        store: Any = RedisKnowledgeStore(redis_url, allow_no_persistence=True, socket_timeout=600)
    else:
        from services.knowledge.backends.sqlite import SqliteKnowledgeStore

        db_of(size).unlink(missing_ok=True)
        store = SqliteKnowledgeStore(db_of(size))
    info, _ = store.import_bundle(bundle, blob_id=f"{size:0>64}", replace=True, artifacts={})
    store.close()
    return {"seconds": time.perf_counter() - start, "check_seconds": checked, "interactions": info.interactions}


def child_snapshot(size: str, redis_url: str = "") -> dict[str, Any]:
    if redis_url == "grpc":  # as the recommender gets it: the knowledge service's stream, then the client
        from modsnet.embedded import EmbeddedCluster

        home = Path(tempfile.mkdtemp(prefix="scale-home-"))
        (home / "knowledge.sqlite3").symlink_to(db_of(size))
        with EmbeddedCluster(home, import_builtins=False) as cluster:
            start = time.perf_counter()
            snapshot = cluster.client.knowledge.snapshot(name_of(size))
            seconds = time.perf_counter() - start
        return {"seconds": seconds, "interactions": len(snapshot.interactions)}
    if redis_url:
        from services.knowledge.backends.redis import RedisKnowledgeStore

        store: Any = RedisKnowledgeStore(redis_url, allow_no_persistence=True, socket_timeout=600)
    else:
        from services.knowledge.backends.sqlite import SqliteKnowledgeStore

        store = SqliteKnowledgeStore(db_of(size))
    start = time.perf_counter()
    snapshot = store.snapshot(name_of(size))
    seconds = time.perf_counter() - start
    store.close()
    return {
        "seconds": seconds,
        "interactions": len(snapshot.interactions),
        "kind": type(snapshot.interactions).__name__,
    }


class _StoreKnowledge:
    """What the recommender core asks of the knowledge service, answered by the store in-process."""

    def __init__(self, store: Any):
        self.store = store
        self.last: Any = None  # the last snapshot given (the benchmark's queries come from it: 1M takes minutes)

    def graph_version(self, library: str) -> int:
        return int(self.store.graph_version(library))

    def graph_head(self, library: str) -> tuple[int, str]:
        version, bundle_blob_id, _ = self.store.graph_head(library)
        return int(version), bundle_blob_id

    def snapshot(self, library: str) -> Any:
        self.last = self.store.snapshot(library)
        return self.last

    def snapshot_since(self, library: str, since_version: int) -> Any:
        return self.store.delta(library, since_version) or self.snapshot(library)

    def close(self) -> None:
        self.store.close()


class FileStorage:
    """The storage service's blob and pointer calls the core makes for checkpoints, as files."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def put_bytes(self, data: bytes, *, name: str = "") -> Any:
        blob_id = hashlib.sha256(data).hexdigest()
        (self.folder / blob_id).write_bytes(data)
        return argparse.Namespace(blob_id=blob_id)

    def get_bytes(self, blob_id: str) -> bytes:
        return (self.folder / blob_id).read_bytes()

    def set_pointer(self, name: str, blob_id: str) -> None:
        (self.folder / name.replace("/", "_")).write_text(blob_id)

    def get_pointer(self, name: str) -> str:
        from modsnet.runtime.errors import NotFound

        path = self.folder / name.replace("/", "_")
        if not path.exists():
            raise NotFound(name)
        return path.read_text()

    def close(self) -> None:
        pass


def _queries(snapshot: Any, count: int) -> list[dict[str, float]]:
    """`count` held-in datasets' features, each value jittered by 5% (seed 0): new datasets near the library's."""
    import numpy as np

    rng = np.random.default_rng(0)
    queries = []
    for k in rng.choice(len(snapshot.datasets), size=count):
        features = snapshot.datasets[int(k)].features
        queries.append({f: v * (1 + 0.05 * rng.normal()) for f, v in features.items()})
    return queries


def _gnn_config() -> Any:
    """The GNN's settings with MODSNET_GNN_MEMBERS / MODSNET_GNN_STEPS as the embedded cluster (`--steps load`)
    takes them; None (the defaults) without. Fewer steps shorten the fit and leave a query's cost as it is (the
    query module's size depends on the members, not the steps)."""
    members, steps = int(os.environ.get("MODSNET_GNN_MEMBERS") or 0), int(os.environ.get("MODSNET_GNN_STEPS") or 0)
    if members <= 0 and steps <= 0:
        return None
    from services.recommender.estimators.gnn import GnnConfig

    default = GnnConfig()
    return GnnConfig(members=members or default.members, steps=steps or default.steps)


def child_serve(size: str, estimator: str, checkpoints: str = "") -> dict[str, Any]:
    import numpy as np

    from modsnet.data.graph import Constraints
    from services.knowledge.backends.sqlite import SqliteKnowledgeStore
    from services.recommender.core import RecommenderCore

    store = SqliteKnowledgeStore(db_of(size))
    library = name_of(size)
    knowledge = _StoreKnowledge(store)
    # The GNN's training in this process (no worker): its CPU seconds and peak RSS are this child's.
    storage = FileStorage(CHECKPOINTS) if checkpoints else None
    core = RecommenderCore(
        knowledge, storage, estimator=estimator, train_inline_limit=10**12, training_processes=-1,  # type: ignore[arg-type]
        gnn_config=_gnn_config(),
    )  # fmt: skip
    start, cpu = time.perf_counter(), time.process_time()
    served = core.fitted(library)
    fit_seconds, fit_cpu = time.perf_counter() - start, time.process_time() - cpu
    queries = _queries(knowledge.last, QUERIES)
    knowledge.last = None
    # As the query service calls it: with the version its search read (a checkout without the argument asks).
    known = {"known_version": served.graph_version} if _takes(core.recommend, "known_version") else {}
    times, cpu_times = [], []
    for features in queries:
        t, c = time.perf_counter(), time.thread_time()
        core.recommend(library, features, k=10, constraints=Constraints(), probe_budget=0, **known)
        cpu_times.append(time.thread_time() - c)
        times.append(time.perf_counter() - t)
    core.close()
    ms, cpu_ms = np.array(times) * 1000, np.array(cpu_times) * 1000
    return {
        "seconds": fit_seconds,
        "cpu_seconds": fit_cpu,
        "estimator": served.estimator.name,
        "origin": served.origin,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "cpu_p50_ms": float(np.percentile(cpu_ms, 50)),
        "cpu_p99_ms": float(np.percentile(cpu_ms, 99)),
    }


def _takes(function: Any, argument: str) -> bool:
    """Whether the checkout's `function` has this argument (the baseline may be older)."""
    import inspect

    return argument in inspect.signature(function).parameters


def _known_version(knowledge_address: str, library: str) -> dict[str, int]:
    """Recommend's `graph_version` as the query service passes it (the version its search read from knowledge),
    where the checkout's client has the argument; {} for an older checkout (its Recommend asks knowledge)."""
    from modsnet.runtime.stubs import KnowledgeClient, RecommenderClient

    if not _takes(RecommenderClient.recommend, "graph_version"):
        return {}
    knowledge = KnowledgeClient(knowledge_address)
    try:
        return {"graph_version": knowledge.graph_version(library)}
    finally:
        knowledge.close()


def _client_process(address: str, library: str, queries: list[dict[str, float]], start_at: float,
                    seconds: float, offset: int, known: dict[str, int]) -> int:  # fmt: skip
    """One client process: Recommend calls from `start_at` for `seconds` (wall clock); how many it made."""
    from modsnet.runtime.stubs import RecommenderClient

    client = RecommenderClient(address)
    time.sleep(max(0.0, start_at - time.time()))
    done, k, end = 0, offset, start_at + seconds
    while time.time() < end:
        client.recommend(library, queries[k % len(queries)], feature_set="tabular/v1", k=10, **known)
        done, k = done + 1, k + 1
    client.close()
    return done


def _rate_processes(address: str, library: str, queries: list[dict[str, float]], clients: int, seconds: float,
                    known: dict[str, int]) -> float:  # fmt: skip
    """Recommend/s of `clients` client processes (spawned: no GIL shared with the servers or each other)."""
    import multiprocessing

    start_at = time.time() + 15.0  # the children import the client first
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        counts = pool.starmap(
            _client_process, [(address, library, queries, start_at, seconds, i, known) for i in range(clients)]
        )
    return sum(counts) / seconds


def child_load(size: str, estimator: str, clients: str = "1,8", seconds: str = "20") -> dict[str, Any]:
    """Recommend through gRPC on the one-process cluster over this library (the service as deployed, its
    clients threads of this process): one client's p50/p99, then Recommend/s at each client count."""
    import numpy as np
    from _loops import throughput  # (this checkout's, beside this script: see benchmarks/_loops.py)

    from modsnet.embedded import EmbeddedCluster
    from modsnet.runtime.stubs import RecommenderClient
    from services.knowledge.backends.sqlite import SqliteKnowledgeStore

    store = SqliteKnowledgeStore(db_of(size))
    queries = _queries(store.snapshot(name_of(size)), 50)
    store.close()
    home = Path(tempfile.mkdtemp(prefix="scale-home-"))
    (home / "knowledge.sqlite3").symlink_to(db_of(size))
    out: dict[str, Any] = {"estimator": estimator}
    with EmbeddedCluster(home, import_builtins=False, estimator=estimator, train_inline_limit=10**12) as cluster:
        client = RecommenderClient(cluster.addresses["recommender"], timeout=3600)  # the first call fits
        known = _known_version(cluster.addresses["knowledge"], name_of(size))
        out["caller_version"] = bool(known)

        def call(k: int) -> Any:
            return client.recommend(name_of(size), queries[k % len(queries)], feature_set="tabular/v1", k=10, **known)

        start = time.perf_counter()
        first = call(0)
        out["first_seconds"] = time.perf_counter() - start  # the fit, on the service's first Recommend
        out["served_by"] = first.estimator if hasattr(first, "estimator") else ""
        one = []
        for k in range(QUERIES):
            t = time.perf_counter()
            call(k)
            one.append(time.perf_counter() - t)
        out["grpc_p50_ms"], out["grpc_p99_ms"] = (float(np.percentile(np.array(one) * 1000, q)) for q in (50, 99))
        for n in (int(c) for c in clients.split(",")):
            # Clients as processes: the servers' process serves alone (the local cluster's clients are others).
            out[f"processes_per_second_{n}"] = _rate_processes(
                cluster.addresses["recommender"], name_of(size), queries, n, float(seconds), known
            )
            cpu = time.process_time()
            load = throughput(n, float(seconds), call)
            out[f"per_second_{n}"] = rate = load.per_second
            if load.errors:  # (calls that raised: not in the rate)
                out[f"errors_{n}"] = load.errors
            # CPU of the whole process (servers and clients) per call: what bounds Recommend/s on a busy machine.
            out[f"cpu_ms_per_call_{n}"] = (time.process_time() - cpu) * 1000 / max(rate * float(seconds), 1.0)
        client.close()
    return out


# ----------------------------------------------------------------------------------------------------
# Parent: runs each child, measures it


def run_child(args: list[str], *, pythonpath: str | None = None, timeout: float | None = None) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=pythonpath or str(ROOT))
    command = [sys.executable, str(Path(__file__).resolve()), "--child", *args]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if deadline is not None and time.monotonic() > deadline:
            process.kill()
            _, status, usage = os.wait4(process.pid, 0)
            return {"error": f"stopped after {timeout:.0f} s", "wall": time.perf_counter() - start,
                    "peak_gib": usage.ru_maxrss / 1024**2}  # fmt: skip
        time.sleep(0.2)
    out = process.stdout.read().decode() if process.stdout else ""
    err = process.stderr.read().decode() if process.stderr else ""
    result: dict[str, Any] = {"wall": time.perf_counter() - start, "peak_gib": usage.ru_maxrss / 1024**2}
    if os.waitstatus_to_exitcode(status) != 0:
        result["error"] = (err.strip().splitlines() or ["failed"])[-1][:200]
        return result
    result.update(json.loads(out.strip().splitlines()[-1]))
    return result


def dense_gib(size: str) -> float:
    models, datasets, _ = SIZES[size]
    return DENSE_ARRAYS * models * datasets * 8 / 1024**3


def fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}{unit}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--redis", action="store_true", help="also import into and snapshot from a redis-server")
    parser.add_argument("--redis-only", action="store_true", help="with --redis: leave the SQLite steps out")
    parser.add_argument("--estimator", choices=("gnn", "knn"), default="gnn")
    parser.add_argument("--baseline-checkout", help="an older checkout of this project: its snapshot, for before/after")
    parser.add_argument("--memory-gib", type=float, default=20.0, help="skip serve when dense arrays exceed this")
    parser.add_argument("--serve-timeout", type=float, default=1800.0)
    parser.add_argument("--checkpoints", action="store_true", help="serve: keep / reuse the GNN's weights (.cache)")
    parser.add_argument("--clients", default="1,8", help="load: client thread counts, comma-separated")
    parser.add_argument("--load-seconds", type=float, default=20.0, help="load: seconds per client count")
    parser.add_argument("--out", help="markdown file to write")
    args = parser.parse_args(argv)

    if args.child:
        step, size, *rest = args.child
        functions = {"generate": child_generate, "import": child_import, "snapshot": child_snapshot,
                     "serve": child_serve, "load": child_load}  # fmt: skip
        print(json.dumps(functions[step](size, *rest)))
        return 0

    started = time.perf_counter()
    CACHE.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    redis = None
    redis_url = ""
    if args.redis:
        from modsnet.offline.devservers.redis import RedisServer

        redis = RedisServer(tempfile.mkdtemp(prefix="scale-redis-"), persistent=False)
        redis.start()
        redis_url = redis.url
    try:
        for size in args.sizes:
            row: dict[str, Any] = {"size": size, "shape": SIZES[size]}
            stamp = CACHE / f"{name_of(size)}.generate.json"
            if "generate" in args.steps or not bundle_of(size).exists():
                if bundle_of(size).exists() and stamp.exists():
                    row["generate"] = {**json.loads(stamp.read_text()), "cached": True}
                else:
                    row["generate"] = run_child(["generate", size])
                    if "error" in row["generate"]:
                        rows.append(row)
                        continue  # nothing to import
                    stamp.write_text(json.dumps(row["generate"]))
            sqlite = not (args.redis and args.redis_only)
            if "import" in args.steps:
                if sqlite:
                    row["import"] = run_child(["import", size])
                if redis is not None:
                    with redis.client() as client:
                        client.flushall()
                    row["import_redis"] = run_child(["import", size, redis_url])
                    with redis.client() as client:
                        row["import_redis"]["server_gib"] = client.info("memory")["used_memory"] / 1024**3
            base = str(Path(args.baseline_checkout).resolve()) if args.baseline_checkout else ""
            if "snapshot" in args.steps and sqlite:
                if base:
                    row["snapshot_before"] = run_child(["snapshot", size], pythonpath=base)
                row["snapshot"] = run_child(["snapshot", size])
                if base:
                    row["grpc_before"] = run_child(["snapshot", size, "grpc"], pythonpath=base)
                row["grpc"] = run_child(["snapshot", size, "grpc"])
            if "snapshot" in args.steps and redis is not None and "import_redis" in row:
                if base:
                    row["snapshot_redis_before"] = run_child(["snapshot", size, redis_url], pythonpath=base)
                row["snapshot_redis"] = run_child(["snapshot", size, redis_url])
            if "serve" in args.steps and sqlite:
                serve = ["serve", size, args.estimator, *(["checkpoints"] if args.checkpoints else [])]
                if base:  # the code before: dense (datasets x models) arrays, skipped where they cannot fit
                    need = dense_gib(size)
                    if need > args.memory_gib:
                        row["serve_before"] = {
                            "error": f"not run: dense datasets x models arrays need ~{need:,.0f} GiB"
                        }
                    else:
                        row["serve_before"] = run_child(serve, pythonpath=base, timeout=args.serve_timeout)
                row["serve"] = run_child(serve, timeout=args.serve_timeout)
            if "load" in args.steps and sqlite:
                if base:
                    row["load_before"] = run_child(
                        ["load", size, args.estimator, args.clients, str(args.load_seconds)],
                        pythonpath=base,
                        timeout=args.serve_timeout,
                    )
                row["load"] = run_child(
                    ["load", size, args.estimator, args.clients, str(args.load_seconds)], timeout=args.serve_timeout
                )
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        if redis is not None:
            redis.stop()
    when = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (CACHE / f"rows-{when}.json").write_text(json.dumps(rows, indent=1))  # the raw figures, kept beside the data
    text = report(rows, argv if argv is not None else sys.argv[1:], time.perf_counter() - started, args.estimator)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


def _cell(step: dict[str, Any] | None, key: str = "wall", unit: str = " s") -> str:
    if not step:
        return "—"
    if "error" in step:
        return f"{step['error']}"
    return fmt(step.get(key), unit)


def report(rows: list[dict[str, Any]], argv: list[str], seconds: float, estimator: str) -> str:
    lines = [
        "## Scale",
        "",
        f"`python benchmarks/scale.py {shlex.join(argv)}` — {dt.date.today()}, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; {seconds:,.0f} s in all. Each step is a "
        "child process: wall seconds and its peak RSS (GiB). Recommend: in-process `RecommenderCore` over the "
        f"SQLite store, estimator {estimator}, no probes, {QUERIES} queries.",
        "",
        "| size (models × datasets, interactions) | generate | import (SQLite) | peak | snapshot | peak | "
        "snapshot before | over gRPC | before | fit (`modsnet train`) | peak | Recommend p50 | p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        models, datasets, interactions = row["shape"]
        gen = row.get("generate")
        gen_cell = "—" if not gen else ("cached " if gen.get("cached") else "") + _cell(gen, "seconds")
        serve = row.get("serve")
        lines.append(
            f"| {row['size']} ({models:,} × {datasets:,}, {interactions:,}) | {gen_cell} "
            f"| {_cell(row.get('import'))} | {_cell(row.get('import'), 'peak_gib', '')} "
            f"| {_cell(row.get('snapshot'), 'seconds')} | {_cell(row.get('snapshot'), 'peak_gib', '')} "
            f"| {_cell(row.get('snapshot_before'), 'seconds')} "
            f"| {_cell(row.get('grpc'), 'seconds')} | {_cell(row.get('grpc_before'), 'seconds')} "
            f"| {_cell(serve, 'seconds')} | {_cell(serve, 'peak_gib', '') if serve and 'error' not in serve else '—'} "
            f"| {_cell(serve, 'p50_ms', ' ms') if serve and 'error' not in serve else '—'} "
            f"| {_cell(serve, 'p99_ms', ' ms') if serve and 'error' not in serve else '—'} |"
        )
    if any("serve" in row for row in rows):
        lines += [
            "",
            "Fit and Recommend, now and with `--baseline-checkout` (before): the fit's wall and CPU seconds and peak "
            "RSS; Recommend's wall and CPU (this thread's) p50 / p99 in ms. CPU time is what an idle core would "
            "take; the wall time includes the waits of a shared machine.",
            "",
            "| size | served by | fit wall | fit CPU | peak GiB | Recommend p50 | p99 | CPU p50 | CPU p99 "
            "| before: fit | peak GiB | p50 | p99 | CPU p50 |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            if "serve" not in row:
                continue
            now, before = row["serve"], row.get("serve_before")

            def value(step: dict[str, Any] | None, key: str, unit: str = " ms") -> str:
                return "—" if not step or "error" in step or key not in step else fmt(step[key], unit)

            lines.append(
                f"| {row['size']} | {now.get('estimator', '—')} | {_cell(now, 'seconds')} "
                f"| {value(now, 'cpu_seconds', ' s')} | {value(now, 'peak_gib', '')} | {value(now, 'p50_ms')} "
                f"| {value(now, 'p99_ms')} | {value(now, 'cpu_p50_ms')} | {value(now, 'cpu_p99_ms')} "
                f"| {_cell(before, 'seconds')} | {value(before, 'peak_gib', '')} | {value(before, 'p50_ms')} "
                f"| {value(before, 'p99_ms')} | {value(before, 'cpu_p50_ms')} |"
            )
    if any("load" in row for row in rows):
        lines += [
            "",
            "Recommend through gRPC on the one-process cluster (`EmbeddedCluster` over the same database; clients "
            "are threads of the same process): one client's p50 / p99 (ms), then Recommend/s and the process's "
            "CPU ms per call at each client count; before: the same with `--baseline-checkout`.",
            "",
            "| size | served by | first call (fit) | p50 | p99 | Recommend/s by client threads | CPU ms/call "
            "| by client processes | before: p50 | threads | processes |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            if "load" not in row:
                continue
            now, before = row["load"], row.get("load_before") or {}

            def rates(step: dict[str, Any], key: str = "per_second_") -> str:
                found = {k[len(key) :]: v for k, v in step.items() if k.startswith(key)}
                return ", ".join(f"{n}: {v:,.0f}" if "per_second" in key else f"{n}: {v:.1f}" for n, v in found.items())

            lines.append(
                f"| {row['size']} | {now.get('served_by', now.get('error', '—'))} | {_cell(now, 'first_seconds')} "
                f"| {_cell(now, 'grpc_p50_ms', ' ms')} | {_cell(now, 'grpc_p99_ms', ' ms')} | {rates(now) or '—'} "
                f"| {rates(now, 'cpu_ms_per_call_') or '—'} | {rates(now, 'processes_per_second_') or '—'} "
                f"| {_cell(before, 'grpc_p50_ms', ' ms') if before else '—'} "
                f"| {rates(before) or before.get('error', '—')} | {rates(before, 'processes_per_second_') or '—'} |"
            )
    if any("import_redis" in row for row in rows):
        lines += [
            "",
            "Redis (one redis-server, no persistence, started by the script): import wall / client peak / server "
            "memory; snapshot now and before.",
            "",
            "| size | import | client peak GiB | server GiB | snapshot | snapshot before |",
            "|---|---|---|---|---|---|",
        ]
        for row in rows:
            if "import_redis" in row:
                r = row["import_redis"]
                lines.append(
                    f"| {row['size']} | {_cell(r)} | {_cell(r, 'peak_gib', '')} | {_cell(r, 'server_gib', '')} "
                    f"| {_cell(row.get('snapshot_redis'), 'seconds')} "
                    f"| {_cell(row.get('snapshot_redis_before'), 'seconds')} |"
                )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
