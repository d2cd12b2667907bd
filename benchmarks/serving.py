"""How the recommender serves the GNN, end to end: first use, restart, new graph version, search latency.

    .venv/bin/python benchmarks/serving.py [--libraries tabzoo xrdzoo] [--searches 15] [--out FILE]

For each built-in library, on a fresh embedded cluster (the one-process default: SQLite, local folder):
1. the first search: imports nothing more, trains the GNN on the library, checkpoints it, answers;
2. searches after that: median latency without probes, with the default 5 probes, and with the kNN
   estimator on a second cluster (the baseline the ratio is taken against, same run);
3. a restart on the same data folder: the first search loads the checkpoint instead of training;
4. one feedback report, then a search: the trained weights are put on the new graph version (refresh).
Exemplars: examples/saheart.csv for TabZoo; for XRDZoo a simulated silicon scan (fixed seed) written to a
temp folder. Writes a markdown page and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from modsnet.embedded import EmbeddedCluster

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("tabzoo", "xrdzoo")


def silicon_scan(path: Path) -> Path:
    two_theta = np.arange(10.0, 80.0, 0.02)
    rng = np.random.default_rng(0)
    centres = [28.44, 47.30, 56.12, 69.13, 76.38]
    clean = 50 + sum(1000 * np.exp(-0.5 * ((two_theta - c) / 0.08) ** 2) for c in centres)
    path.write_text("".join(f"{t:.2f} {y:.0f}\n" for t, y in zip(two_theta, rng.poisson(clean), strict=True)))
    return path


def _timed(call) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def _median_search(cluster: EmbeddedCluster, file: Path, library: str, searches: int, probes: int) -> float:
    times = [
        _timed(lambda: cluster.client.search(file, library=library, probe_budget=probes))[0] for _ in range(searches)
    ]
    return statistics.median(times)


def measure(library: str, file: Path, searches: int, work: Path) -> dict[str, float | str]:
    os.environ["MODSNET_BUILTIN_LIBRARIES"] = library
    home = work / f"{library}-home"
    row: dict[str, float | str] = {"library": library}
    with EmbeddedCluster(home) as cluster:
        row["first search s"], first = _timed(lambda: cluster.client.search(file, library=library, probe_budget=0))
        info = cluster.client.estimator_info(library)
        row["train s"] = info.train_seconds
        row["interactions"] = info.interactions
        row["backend"] = info.backend
        row["search ms"] = 1000 * _median_search(cluster, file, library, searches, 0)
        row["search + 5 probes ms"] = 1000 * _median_search(cluster, file, library, searches, 5)
        probed = cluster.client.search(file, library=library, probe_budget=5)
        row["probe s (sum)"] = sum(p.seconds for p in probed.probes)
        seconds, _ = _timed(lambda: cluster.client.report_performance(first.query_id, first.models[0].model_id, 0.5))
        row["feedback ms"] = 1000 * seconds
        row["refresh search s"], _ = _timed(lambda: cluster.client.search(file, library=library, probe_budget=0))
        row["refresh origin"] = cluster.client.estimator_info(library).origin
    home = work / f"{library}-home-restart"
    with EmbeddedCluster(home) as cluster:  # a first start: imports and trains, so the restart has a checkpoint
        cluster.client.search(file, library=library, probe_budget=0)
    with EmbeddedCluster(home) as cluster:
        row["restart search s"], _ = _timed(lambda: cluster.client.search(file, library=library, probe_budget=0))
        row["restart origin"] = cluster.client.estimator_info(library).origin
    with EmbeddedCluster(work / f"{library}-knn", estimator="knn") as cluster:
        cluster.client.search(file, library=library, probe_budget=0)
        row["knn search ms"] = 1000 * _median_search(cluster, file, library, searches, 0)
    return row


COLUMNS = (
    ("library", "{}"),
    ("interactions", "{:,}"),
    ("train s", "{:.1f}"),
    ("first search s", "{:.1f}"),
    ("restart search s", "{:.2f}"),
    ("refresh search s", "{:.2f}"),
    ("search ms", "{:.0f}"),
    ("knn search ms", "{:.0f}"),
    ("search + 5 probes ms", "{:.0f}"),
    ("probe s (sum)", "{:.2f}"),
)


def report(rows: list[dict[str, float | str]], argv: list[str], seconds: float) -> str:
    command = "python benchmarks/serving.py " + shlex.join(argv)
    lines = [
        "# Benchmark: serving the GNN",
        "",
        f"`{command.strip()}` — {dt.date.today().isoformat()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, {seconds:.0f} s. Medians of repeated searches through the embedded cluster "
        "(upload, features, ranking, query log); ratios are within this run.",
        "",
        "| " + " | ".join(name for name, _ in COLUMNS) + " | GNN / kNN search | restart from | after feedback |",
        "|" + "---|" * (len(COLUMNS) + 3),
    ]
    for row in rows:
        cells = [fmt.format(row[name]) for name, fmt in COLUMNS]
        ratio = float(row["search ms"]) / float(row["knn search ms"])
        lines.append(
            "| " + " | ".join([*cells, f"{ratio:.2f}", str(row["restart origin"]), str(row["refresh origin"])]) + " |"
        )
    lines += [
        "",
        "`train s` is the GNN fit on first use (checkpointed to storage); `restart search s` is the first search",
        "after a restart, which loads that checkpoint; `refresh search s` the first search after one feedback",
        "report (the graph version moved: the trained weights are put on the new graph, no refit);",
        f"scoring backend: {rows[0]['backend'] if rows else '-'}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=LIBRARIES)
    parser.add_argument("--searches", type=int, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-serving.md")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = {"tabzoo": ROOT / "examples" / "saheart.csv", "xrdzoo": silicon_scan(work / "silicon.xy")}
        for library in args.libraries:
            rows.append(measure(library, files[library], args.searches, work))
    text = report(rows, argv, time.perf_counter() - started)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
