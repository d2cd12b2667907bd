"""What adaptive probing costs in wall time: a search's probes one at a time, in rounds, or all in one round.

    python benchmarks/probe_rounds.py [--budget 5] [--rounds 1 2 5] [--repeats 5] [--estimator knn]

An embedded cluster with TabZoo; the same upload (examples/saheart.csv, and a 3,000-row table of
examples/ when present) searched `--repeats` times per round size after a warm-up search; probes run in the
query service's worker processes, as a search runs them. Round size = `--budget` is the old batch (one
SelectProbes, one worker call). Medians of: the search, its select + probes stages, the seconds the probes
themselves took (their fits: which models a policy picks changes it) and the rest (the rounds' overhead:
SelectProbes calls, sending the upload to a worker, sampling it).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from modsnet.embedded import EmbeddedCluster
from services.query.core import QueryCore

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=5)
    parser.add_argument("--rounds", nargs="+", type=int, default=[1, 2, 5])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--estimator", default="knn", help="knn (no training wait) or gnn")
    parser.add_argument("--files", nargs="+", type=Path, default=[ROOT / "examples" / "saheart.csv"])
    args = parser.parse_args()
    cores: list[QueryCore] = []
    build = QueryCore.__init__

    def keep(self: QueryCore, *a: object, **k: object) -> None:  # the cluster's query core, to set its rounds
        build(self, *a, **k)  # type: ignore[arg-type]
        cores.append(self)

    QueryCore.__init__ = keep  # type: ignore[method-assign]
    import os

    os.environ["MODSNET_BUILTIN_LIBRARIES"] = "tabzoo"
    with tempfile.TemporaryDirectory() as home, EmbeddedCluster(home, estimator=args.estimator) as cluster:
        core = cores[0]
        print("| file | probes per round | search s | select + probes s | of which measuring s | overhead s | probes |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for path in args.files:
            cluster.client.search(path, k=5, probe_budget=args.budget)  # warm-up: estimator, workers, caches
            for per_round in args.rounds:
                core.probe_round = per_round
                wall, probing, measuring, measured = [], [], [], []
                for _ in range(args.repeats):
                    started = time.perf_counter()
                    answer = cluster.client.search(path, k=5, probe_budget=args.budget)
                    wall.append(time.perf_counter() - started)
                    probing.append(sum(t.seconds for t in answer.timings if t.stage in ("select", "probes")))
                    measuring.append(sum(p.seconds for p in answer.probes))
                    measured.append(len(answer.probes))
                overhead = statistics.median(a - b for a, b in zip(probing, measuring, strict=True))
                print(
                    f"| {path.name} | {per_round} | {statistics.median(wall):.2f} | {statistics.median(probing):.2f} | "
                    f"{statistics.median(measuring):.2f} | {overhead:.2f} | {statistics.median(measured):g} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
