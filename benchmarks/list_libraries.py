"""ListLibraries on the embedded SQLite store holding the four built-in libraries: with its per-version counts
kept (what every search asks) against counting each time (what it did before), same process, same store; then
the listing right after each feedback (one record added to TabZoo), with the counts carried by the write against
counted again.

    .venv/bin/python benchmarks/list_libraries.py [--repeat 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modsnet.data.bundle import read_bundle  # noqa: E402
from modsnet.data.graph import InteractionRecord  # noqa: E402
from services.knowledge.backends.sqlite import SqliteKnowledgeStore  # noqa: E402

BUILT_IN = ("tabzoo", "textzoo", "imagezoo", "xrdzoo")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="modsnet-list-") as tmp:
        store = SqliteKnowledgeStore(Path(tmp) / "knowledge.db")
        for i, name in enumerate(BUILT_IN):
            bundle = read_bundle(ROOT / "modsnet" / "libraries" / name)
            store.import_bundle(bundle, blob_id=f"{i:064d}", replace=False, artifacts={})
        records = sum(info.interactions for info in store.list_libraries())
        for label, forget in (("counts kept per graph version", False), ("counted every time (before)", True)):
            seconds = []
            for _ in range(args.repeat):
                if forget:
                    store._counts.clear()  # what the store did before: three COUNT(*) per library per call
                start = time.perf_counter()
                store.list_libraries()
                seconds.append(time.perf_counter() - start)
            p50 = statistics.median(seconds) * 1000
            print(f"{label}: p50 {p50:.2f} ms ({len(BUILT_IN)} libraries, {records} records)")
        some = store.snapshot("tabzoo").interactions[0]
        for label, forget in (("after each feedback, counts carried by the write", False),
                              ("after each feedback, counted again (before)", True)):  # fmt: skip
            seconds = []
            for _ in range(args.repeat):
                record = InteractionRecord(some.model_id, some.dataset_id, 0.5, provenance="feedback")
                store.add_interactions("tabzoo", [], [record])
                if forget:
                    store._counts.pop("tabzoo", None)
                start = time.perf_counter()
                store.list_libraries()
                seconds.append(time.perf_counter() - start)
            print(f"{label}: p50 {statistics.median(seconds) * 1000:.2f} ms")
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
