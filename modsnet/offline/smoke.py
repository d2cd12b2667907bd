"""Smoke checks of running services: a search of every kind through the query service, failing on any error.

    python -m modsnet.offline.smoke [--kinds table,text,image,xrd] [--table FILE] [--cluster .cluster]

The services are those MODSNET_*_ADDR name, else the local cluster's (`make up`) recorded in --cluster.

`make smoke` runs it against the local cluster (`make up`), `make image-smoke` against the four services started
from the container image, and `tests/test_wheel.py` uses its inputs against services started from the wheel.

Inputs are generated, so the check needs nothing but the services: a table (or `--table`, default
examples/saheart.csv when present), a text CSV, a folder of PNG images in class subfolders and an XRD scan of
silicon. Each searches its built-in library (TabZoo, TextZoo, ImageZoo, XRDZoo), which must be on the
services (`make up` and the image smoke import them); a missing one fails the check.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

# XRD first: a first search of a library trains its GNN in the background, and TabZoo's training is the
# longest; searched after it, the scan would wait for the CPU that training holds.
KINDS = ("xrd", "table", "text", "image")
SILICON_PEAKS = (28.44, 47.30, 56.12, 69.13, 76.38)  # silicon's reflections with Cu Kα, degrees 2θ
_WORDS = {
    "sport": "match goal team player coach season league score win defeat stadium referee",
    "science": "experiment theory cell energy molecule research data model physics protein lab",
    "finance": "market stock price bank interest rate loan investor profit budget tax inflation",
}
WARM_UP_SECONDS = 900.0  # a first GNN training of TabZoo takes about a minute on two idle cores
LIBRARIES = {"table": "tabzoo", "xrd": "xrdzoo", "text": "textzoo", "image": "imagezoo"}


# -- inputs ---------------------------------------------------------------------------------------------------


def write_scan(path: Path, seed: int = 0) -> Path:
    """A Cu Kα powder scan of silicon (five Gaussian reflections on a flat background, Poisson counts), .xy."""
    two_theta = np.arange(10.0, 80.0, 0.02)
    clean = 50 + sum(1000 * np.exp(-0.5 * ((two_theta - c) / 0.08) ** 2) for c in SILICON_PEAKS)
    counts = np.random.default_rng(seed).poisson(clean)
    path.write_text("".join(f"{t:.2f} {y:d}\n" for t, y in zip(two_theta, counts, strict=True)))
    return path


def write_table(path: Path, rows: int = 300, seed: int = 0) -> Path:
    """A classification table with a planted signal: the class is the sign of a noisy linear score."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 5))
    y = (x @ np.array([1.0, -0.5, 0.8, 0.0, 0.3]) + 0.5 * rng.normal(size=rows)) > 0
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow([*(f"f{i}" for i in range(5)), "label"])
        out.writerows([*(f"{v:.4f}" for v in row), "yes" if cls else "no"] for row, cls in zip(x, y, strict=True))
    return path


def write_text_csv(path: Path, rows: int = 60, seed: int = 0) -> Path:
    """A labelled corpus (columns text, label): each text draws most of its words from its label's topic."""
    rng = np.random.default_rng(seed)
    topics = {label: words.split() for label, words in _WORDS.items()}
    common = ["the", "a", "of", "and", "to", "in", "is", "was", "for", "on", "with"]
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["text", "label"])
        for i in range(rows):
            label = list(topics)[i % len(topics)]
            words = [str(rng.choice(topics[label] if rng.random() < 0.6 else common)) for _ in range(25)]
            out.writerow([" ".join(words).capitalize() + ".", label])
    return path


def write_image_folder(folder: Path, per_class: int = 6, seed: int = 0) -> Path:
    """PNG images in one subfolder per class: red-ish squares and blue-ish stripes, 64×64 with noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label in ("squares", "stripes"):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, size=(64, 64, 3))
            if label == "squares":
                lo, hi = sorted(rng.integers(8, 56, size=2))
                pixels[lo:hi, lo:hi, 0] += 180
            else:
                pixels[:, :: int(rng.integers(4, 9)), 2] += 180
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / label / f"{i}.png")
    return folder


# -- libraries ------------------------------------------------------------------------------------------------


def sample_library(source: Path, out: Path, *, name: str, datasets: int) -> Path:
    """A copy of a library bundle folder with its first `datasets` datasets only (every model kept).

    A smaller graph trains its first GNN in seconds, so a check that starts from empty services sees the
    full answer (the GNN estimator, probes) without waiting for the whole library's first training.
    """
    out.mkdir(parents=True, exist_ok=True)
    meta = yaml.safe_load((source / "library.yaml").read_text())
    meta["name"] = name
    meta["description"] = f"the first {datasets} datasets of {source.name}, for smoke checks"
    (out / "library.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    (out / "models.csv").write_bytes((source / "models.csv").read_bytes())
    kept = _copy_rows(source / "datasets.csv", out / "datasets.csv", lambda row, n: n < datasets)
    _copy_rows(source / "interactions.csv", out / "interactions.csv", lambda row, n: row["dataset_id"] in kept)
    if (source / "dataset_features").is_dir():
        (out / "dataset_features").mkdir(exist_ok=True)
        for table in (source / "dataset_features").glob("*.csv"):
            _copy_rows(table, out / "dataset_features" / table.name, lambda row, n: row["dataset_id"] in kept)
    if (source / "artifacts").is_dir():
        (out / "artifacts").mkdir(exist_ok=True)
        for artifact in (source / "artifacts").iterdir():
            (out / "artifacts" / artifact.name).write_bytes(artifact.read_bytes())
    return out


def _copy_rows(source: Path, target: Path, keep) -> set[str]:  # type: ignore[no-untyped-def]
    """Copy the rows `keep(row, kept_so_far)` accepts; the dataset ids of the rows kept."""
    kept: set[str] = set()
    with source.open(newline="") as handle, target.open("w", newline="") as out:
        reader = csv.DictReader(handle)
        writer = csv.DictWriter(out, fieldnames=list(reader.fieldnames or []))
        writer.writeheader()
        for row in reader:
            if keep(row, len(kept)):
                writer.writerow(row)
                kept.add(row.get("dataset_id", ""))
    return kept


# -- the check ------------------------------------------------------------------------------------------------


def service_addresses(cluster: Path) -> dict[str, str]:
    """MODSNET_*_ADDR where set, else the addresses the local cluster in `cluster` recorded."""
    names = ("query", "knowledge", "storage", "recommender")
    if os.environ.get("MODSNET_QUERY_ADDR"):
        return {s: os.environ.get(f"MODSNET_{s.upper()}_ADDR", "") for s in names}
    from modsnet.offline.localcluster import read_state

    state = read_state(cluster)
    if state is None:
        raise SystemExit(f"smoke: MODSNET_QUERY_ADDR is unset and no local cluster is recorded in {cluster} (make up)")
    return {s: state["addresses"][s] for s in names}


def run(kinds: Sequence[str], *, addresses: dict[str, str], table: Path | None, work: Path, out=print) -> int:  # type: ignore[no-untyped-def]
    """Search each kind through the query service at `addresses`; the number of failures."""
    from modsnet.client import Client

    token = os.environ.get("MODSNET_TOKEN") or None
    client = Client(
        query=addresses["query"], knowledge=addresses["knowledge"], storage=addresses["storage"], token=token
    )
    failures = 0
    try:
        present = {lib.name for lib in client.list_libraries()}
        inputs: dict[str, tuple[Path, str]] = {}
        for kind in kinds:
            library = LIBRARIES[kind]
            if library not in present:
                out(f"FAIL {kind}: library {library} is not on the services (import the built-in libraries)")
                failures += 1
                continue
            if kind == "table":
                inputs[kind] = (table or write_table(work / "table.csv"), library)
            elif kind == "xrd":
                inputs[kind] = (write_scan(work / "silicon.xy"), library)
            elif kind == "text":
                inputs[kind] = (write_text_csv(work / "corpus.csv"), library)
            else:
                inputs[kind] = (write_image_folder(work / "images"), library)
        if addresses.get("recommender"):
            failures += _warm_up(addresses["recommender"], [library for _, library in inputs.values()], token, out)
        for kind, (path, library) in inputs.items():
            started = time.perf_counter()
            try:
                answer = client.search(path, library=library, k=3)
            except Exception as exc:  # any error fails the check: say which search and why
                failures += 1
                out(f"FAIL {kind}: {path.name} on {library}: {getattr(exc, 'message', None) or exc}")
                continue
            if not answer.models:
                failures += 1
                out(f"FAIL {kind}: {path.name} on {library}: no models in the answer")
                continue
            top = answer.models[0]
            out(
                f"ok   {kind:<5} {path.name} on {answer.library}: top {top.model_id} ({top.predicted_score:.3f}), "
                f"{len(answer.probes)} probes, {answer.estimator}, {time.perf_counter() - started:.1f} s"
            )
    finally:
        client.close()
    return failures


def _warm_up(address: str, libraries: Sequence[str], token: str | None, out) -> int:  # type: ignore[no-untyped-def]
    """Ask the recommender what serves each library, waiting as long as a first GNN training takes.

    A library's first search waits for its first training only as long as the search's own deadline allows;
    on a busy machine a fresh cluster's first searches would then test the machine's speed, not the path.
    The number of libraries the recommender could not serve.
    """
    from modsnet.runtime.auth import ClientCredentials
    from modsnet.runtime.stubs import RecommenderClient

    recommender = RecommenderClient(
        address, timeout=WARM_UP_SECONDS, credentials=ClientCredentials.from_files(token=token)
    )
    failures = 0
    try:
        for library in dict.fromkeys(libraries):
            started = time.perf_counter()
            try:
                info = recommender.estimator_info(library)
            except Exception as exc:  # any error fails the check
                failures += 1
                out(f"FAIL {library}: the recommender cannot serve it: {getattr(exc, 'message', None) or exc}")
                continue
            out(f"ok   {library}: {info.estimator} ({info.origin}), {time.perf_counter() - started:.1f} s")
    finally:
        recommender.close()
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated, of: " + ", ".join(KINDS))
    parser.add_argument("--table", type=Path, help="the table to search (default examples/saheart.csv if present)")
    parser.add_argument("--cluster", type=Path, default=Path(".cluster"), help="the local cluster's folder")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown kind {unknown[0]!r}; kinds: {', '.join(KINDS)}")
    table = args.table or (Path("examples/saheart.csv") if Path("examples/saheart.csv").is_file() else None)
    with tempfile.TemporaryDirectory(prefix="modsnet-smoke-") as work:
        failures = run(kinds, addresses=service_addresses(args.cluster), table=table, work=Path(work))
    print("smoke: " + ("all searches answered" if not failures else f"{failures} failed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
