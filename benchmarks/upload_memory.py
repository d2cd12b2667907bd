"""Peak memory of one tabular upload: what a search of a large CSV adds to the query service.

    .venv/bin/python benchmarks/upload_memory.py [--size-mb 200]

A CSV of about `--size-mb` MB (numeric and categorical columns, a class column) is generated in a temp
folder; a fresh subprocess then does what the query service does with a spooled upload (`load_exemplar`,
then `dataset_features`) while a thread samples its resident memory every 5 ms. Reported: the file size,
the peak resident memory above the process's resident memory just before, and their ratio.
Target (issue 12): the peak at most about twice the bytes read plus a constant (it was 2.2 GB for 200 MB).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

_CHILD = r"""
import json, sys, threading, time
from modsnet.data.exemplar import Limits, dataset_features, load_exemplar

def rss():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0

path = sys.argv[1]
before = rss()
peak = [before]
done = threading.Event()

def sample():
    while not done.wait(0.005):
        peak[0] = max(peak[0], rss())

watcher = threading.Thread(target=sample, daemon=True)
watcher.start()
started = time.perf_counter()
exemplar = load_exemplar(path, name="big.csv", limits=Limits(max_bytes=1 << 31))
feature_set, features = dataset_features(exemplar)
seconds = time.perf_counter() - started
done.set()
watcher.join()
peak[0] = max(peak[0], rss())
rows = exemplar.table.shape[0] if exemplar.table is not None else 0
print(json.dumps({"before": before, "peak": peak[0], "seconds": seconds, "n_items": exemplar.n_items,
                  "rows_kept": rows, "log_rows": features["log_rows"]}))
"""


def make_csv(path: Path, size: int, seed: int = 0) -> int:
    """A CSV of about `size` bytes: 8 numeric columns, 2 categorical, a 3-class target. Returns its rows."""
    rng = np.random.default_rng(seed)
    rows = 0
    with open(path, "w") as handle:
        handle.write("a,b,c,d,e,f,g,h,colour,size,class\n")
        while handle.tell() < size:
            n = 50_000
            numbers = rng.normal(size=(n, 8)).round(5)
            colours = rng.choice(["red", "green", "blue", "grey"], size=n)
            sizes = rng.choice(["S", "M", "L"], size=n)
            classes = rng.choice(["x", "y", "z"], size=n, p=[0.6, 0.3, 0.1])
            lines = [
                ",".join(f"{v:g}" for v in row) + f",{c},{s},{k}\n"
                for row, c, s, k in zip(numbers, colours, sizes, classes, strict=True)
            ]
            handle.write("".join(lines))
            rows += n
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=float, default=200.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.csv"
        rows = make_csv(path, int(args.size_mb * 1e6))
        size = path.stat().st_size
        done = subprocess.run([sys.executable, "-c", _CHILD, str(path)], check=True, capture_output=True, text=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
    added = result["peak"] - result["before"]
    counted, kept = result["n_items"], result["rows_kept"]
    print(f"file: {size / 1e6:.0f} MB, {rows:,} rows (the exemplar counts {counted:,}, keeps {kept:,})")
    print(
        f"peak resident memory added: {added / 1e6:.0f} MB = {added / size:.2f} x the file ({result['seconds']:.1f} s)"
    )


if __name__ == "__main__":
    main()
