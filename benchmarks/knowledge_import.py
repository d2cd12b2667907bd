"""Knowledge store throughput: library import, snapshot and Redis memory, embedded SQLite against Redis.

    .venv/bin/python benchmarks/knowledge_import.py [--sizes 100000 1000000] [--out docs/benchmarks-knowledge.md]

Each size is one synthetic library built in memory (rows of strings, as a parsed bundle gives them; about
√n models × √n datasets, three cost columns), imported into a fresh SQLite file and into a fresh real
redis-server started here in a temp folder with the production persistence (AOF, `appendfsync always`).
`import` is `import_bundle` (staging in batches and the atomic switch); `snapshot` is `snapshot()`, what
the GraphSnapshot stream sends; Redis memory is the growth of INFO `used_memory` over the import, per
interaction. Timings are wall-clock seconds of one run on a shared machine: compare rows of one run.
"""

# ruff: noqa: E402 - the tests folder goes on sys.path before the imports from it

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the in-memory synthetic bundles of the tests

from knowledge_bundles import make_bundle

from modsnet.offline.devservers.redis import RedisServer
from services.knowledge.backends.redis import RedisKnowledgeStore
from services.knowledge.backends.sqlite import SqliteKnowledgeStore
from services.knowledge.store import KnowledgeStore


def timed(action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def measure(store: KnowledgeStore, size: int, memory: Callable[[], int] | None) -> dict[str, float]:
    """Import a library of `size` interactions, then snapshot it; the bundle is gone before the snapshot."""
    row = imported(store, size, memory)
    row["snapshot_s"] = timed(lambda: store.snapshot("bench"))
    store.delete_library("bench")
    return row


def imported(store: KnowledgeStore, size: int, memory: Callable[[], int] | None) -> dict[str, float]:
    bundle = make_bundle("bench", interactions=size, extras=False)
    before = memory() if memory else 0
    seconds = timed(lambda: store.import_bundle(bundle, blob_id=f"blob-{size}", replace=True, artifacts={}))
    row = {"interactions": size, "import_s": seconds, "per_s": size / seconds}
    if memory:
        row["bytes_per_interaction"] = (memory() - before) / size
    return row


def run(sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            sqlite = SqliteKnowledgeStore(Path(tmp) / f"knowledge-{size}.sqlite3")
            rows.append({"backend": "sqlite", **measure(sqlite, size, None)})
            sqlite.close()
            print(rows[-1], flush=True)
        with RedisServer(Path(tmp) / "redis") as server:
            client = server.client()
            for size in sizes:
                client.flushall()
                store = RedisKnowledgeStore(server.url)
                rows.append(
                    {"backend": "redis", **measure(store, size, lambda: int(client.info("memory")["used_memory"]))}
                )
                store.close()
                print(rows[-1], flush=True)
            client.close()
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| backend | interactions | import (s) | interactions/s | snapshot (s) | Redis memory per interaction (B) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        memory = f"{r['bytes_per_interaction']:.0f}" if "bytes_per_interaction" in r else "–"
        lines.append(
            f"| {r['backend']} | {r['interactions']:,} | {r['import_s']:.1f} | {r['per_s']:,.0f} | "
            f"{r['snapshot_s']:.1f} | {memory} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="interactions per run")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args()
    rows = run(args.sizes)
    text = table(rows)
    print(text)
    if args.out:
        redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
        command = shlex.join(["python", "benchmarks/knowledge_import.py", *sys.argv[1:]])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            "# Knowledge store: import, snapshot, memory\n\n"
            f"`{command}`, {datetime.date.today().isoformat()}, Python {platform.python_version()}, "
            f"{' '.join(redis_version[:3])}, {os.cpu_count()} CPUs (load average "
            f"{os.getloadavg()[0]:.1f} at the end).\n\n"
            f"{(__doc__ or '').split(chr(10) + chr(10), 2)[2].strip()}\n\n{text}\n"
        )


if __name__ == "__main__":
    main()
