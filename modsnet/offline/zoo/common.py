"""What the library generators share: choosing ids, the resumable results log (and reuse of an earlier bundle's
measurements), progress line and atomic bundle swap."""

from __future__ import annotations

import io
import json
import multiprocessing
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

import numpy as np
import pandas as pd

from modsnet.runtime.errors import InvalidArgument

_T = TypeVar("_T")


@dataclass(frozen=True)
class Generated:
    """What a run produced: library counts, and how many pairs were measured now or reused from work."""

    models: int
    datasets: int
    interactions: int
    measured: int
    reused: int
    seconds: float


def cached_embeddings(
    path: Path, embed: Callable[[Sequence[Any]], np.ndarray], items: Sequence[Any], unit: str
) -> tuple[np.ndarray, float]:
    """Embeddings of `items` and seconds per item, from the .npy cache at `path` or computed and cached atomically.

    The first item is embedded once before the timing: a network's one-off load is no per-item cost.
    """
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return np.load(path), json.loads(meta.read_text())[f"seconds_per_{unit}"]
    embed(items[:1])
    started = time.perf_counter()
    vectors = embed(items)
    per_item = (time.perf_counter() - started) / max(len(items), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part.npy")
    np.save(partial, vectors)
    partial.replace(path)
    meta.write_text(json.dumps({f"seconds_per_{unit}": per_item, f"{unit}s": len(items)}))
    return vectors, per_item


def choose(items: list[_T], ids: Sequence[str] | None, key: Callable[[_T], str], kind: str) -> list[_T]:
    """The items named by `ids` (all when None), in id order; an unknown id is refused, naming the known ones."""
    if ids is None:
        return items
    by_id = {key(item): item for item in items}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise InvalidArgument(f"unknown {kind} ids {unknown}; known: {sorted(by_id)}")
    return [by_id[i] for i in sorted(set(ids))]


def load_results(path: Path) -> dict[str, dict[str, Any]]:
    """Finished results by key, from the JSON-lines log a generator appends to (resuming skips these)."""
    results: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interrupted run
            results[record["key"]] = record
    return results


class Progress:
    """A progress line on stderr every few seconds: done/total, rate and ETA."""

    def __init__(self, label: str, total: int, done: int, unit: str, stream: TextIO | None, every: float = 5.0):
        self.label, self.unit = label, unit
        self.total, self.done, self.stream, self.every = total, done, stream, every
        self.started = self.last = time.monotonic()
        self.measured = 0

    def step(self, amount: int = 1) -> None:
        self.done += amount
        self.measured += amount
        now = time.monotonic()
        if self.stream is None or (now - self.last < self.every and self.done < self.total):
            return
        self.last = now
        rate = self.measured / max(now - self.started, 1e-9)
        eta = time.strftime("%H:%M:%S", time.gmtime((self.total - self.done) / max(rate, 1e-9)))
        print(
            f"{self.label}: {self.done}/{self.total} {self.unit}, {rate:.1f}/s, ETA {eta}", file=self.stream, flush=True
        )


def measure_groups(
    groups: Sequence[Any],
    run_group: Callable[[Any], list[dict[str, Any]]],
    *,
    results: dict[str, dict[str, Any]],
    results_path: Path,
    bar: Progress,
    jobs: int,
    seed: int,
    init_worker: Callable[[], None] | None = None,
) -> None:
    """Run each group (an encoder's models on one dataset: `dataset_id`, `encoder_id`) in worker processes,
    appending every record to the results log as it comes and adding it to `results`.

    Dataset by dataset (in a seeded order that mixes the sources), every encoder of one before the next:
    a run stopped early leaves whole rows of the library, spread over the sources.
    """
    if not groups:
        return
    torn = results_path.exists() and results_path.stat().st_size > 0 and not results_path.read_bytes().endswith(b"\n")
    with results_path.open("a") as log:
        if torn:
            log.write("\n")
        shuffled = np.random.default_rng(seed).permutation(sorted({g.dataset_id for g in groups}))
        rank = {dataset_id: i for i, dataset_id in enumerate(shuffled)}
        order = sorted(groups, key=lambda g: (rank[g.dataset_id], g.encoder_id))
        with worker_pool(jobs, init_worker) as pool:
            for future in as_completed([pool.submit(run_group, g) for g in order]):
                for record in future.result():
                    if record["status"] != "ok":
                        print(
                            f"{bar.label}: {record['model_id']} on {record['dataset_id']}: {record['status']} "
                            f"{record.get('error', '')}",
                            file=sys.stderr,
                        )
                    results[record["key"]] = record
                    log.write(json.dumps(record, sort_keys=True) + "\n")
                    bar.step()
                log.flush()


def swap_in(staging: Path, out: Path) -> None:
    """Put a fully written bundle folder at `out`, replacing any earlier one with two renames."""
    if out.exists():
        retired = out.with_name(f".{out.name}-old-{uuid.uuid4().hex}")
        out.rename(retired)
        staging.rename(out)
        shutil.rmtree(retired)
    else:
        staging.rename(out)


def write_bundle(
    out: Path, manifest: dict[str, Any], tables: dict[str, Any], artifacts: dict[str, bytes] | None = None
) -> None:
    """Write a bundle (library.yaml, the CSV tables by relative path, artifacts/) beside `out`, then swap it in:
    a reader sees the old library or the new one."""
    import yaml

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        staging.chmod(0o755)
        (staging / "library.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False, width=100))
        for relative, table in tables.items():
            path = staging / relative
            path.parent.mkdir(exist_ok=True)
            table.to_csv(path, index=False, float_format="%.6g", lineterminator="\n")
        for name, data in (artifacts or {}).items():
            (staging / "artifacts").mkdir(exist_ok=True)
            (staging / "artifacts" / name).write_bytes(data)
        swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _csv_rows(table: pd.DataFrame, id_column: str) -> dict[str, dict[str, str]]:
    """Rows by id as the bundle's CSV spells them (the writer's float format), every value a string."""
    text = table.to_csv(index=False, float_format="%.6g", lineterminator="\n")
    return _read_rows(io.StringIO(text), id_column)


def _read_rows(source: Any, id_column: str) -> dict[str, dict[str, str]]:
    frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    return {row[id_column]: row for row in frame.to_dict("records")}


def _same_row(old: dict[str, str], new: dict[str, str]) -> bool:
    """Equal on every column either has; a column one side lacks reads as empty (a column added since)."""
    return all(old.get(column, "") == new.get(column, "") for column in set(old) | set(new))


def bundle_records(
    bundle: Path, manifest: dict[str, Any], models: pd.DataFrame, datasets: pd.DataFrame
) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[str, dict[str, float]]]:
    """What an earlier bundle of this generator measured that a run now may reuse instead of measuring again.

    Reused: each interaction whose model row (models.csv) and dataset row (datasets.csv) are what this run
    writes, cell for cell, in a bundle whose `source` (package versions) and seed are this run's; and the
    features of each such dataset. The bundle wrote numbers at 6 significant digits, which written again give
    the same cells: a bundle grown this way equals one measured from scratch (timings aside, which no two
    runs share). Returns (records by (model_id, dataset_id), features by dataset_id); empty when nothing fits.
    """
    import yaml

    try:
        old_manifest = yaml.safe_load((bundle / "library.yaml").read_text())
        old_models = _read_rows(bundle / "models.csv", "model_id")
        old_datasets = _read_rows(bundle / "datasets.csv", "dataset_id")
        interactions = pd.read_csv(bundle / "interactions.csv", dtype={"model_id": str, "dataset_id": str})
        features_path = next(iter(sorted((bundle / "dataset_features").glob("*.csv"))), None)
        features = pd.read_csv(features_path, dtype={"dataset_id": str}) if features_path else None
    except (OSError, StopIteration, ValueError, yaml.YAMLError):
        return {}, {}
    seed = re.compile(r"\(seed (\d+)\)")
    old_seed = seed.search(str(old_manifest.get("description", "")))
    new_seed = seed.search(str(manifest.get("description", "")))
    if (
        not isinstance(old_manifest, dict)
        or old_manifest.get("generator") != manifest.get("generator")
        or old_manifest.get("source") != manifest.get("source")
        or old_seed is None
        or new_seed is None
        or old_seed.group(1) != new_seed.group(1)
    ):
        return {}, {}
    new_models, new_datasets = _csv_rows(models, "model_id"), _csv_rows(datasets, "dataset_id")
    same_models = {m for m, row in new_models.items() if m in old_models and _same_row(old_models[m], row)}
    same_datasets = {d for d, row in new_datasets.items() if d in old_datasets and _same_row(old_datasets[d], row)}
    records = {}
    for row in interactions.to_dict("records"):
        if row["model_id"] in same_models and row["dataset_id"] in same_datasets:
            record: dict[str, Any] = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
            memory = record.get("memory_bytes")
            if memory is not None:
                record["memory_bytes"] = int(memory)
            records[(row["model_id"], row["dataset_id"])] = record
    reused_features = {}
    if features is not None:
        for row in features.to_dict("records"):
            if row["dataset_id"] in same_datasets:
                reused_features[row["dataset_id"]] = {k: float(v) for k, v in row.items() if k != "dataset_id"}
    return records, reused_features


def worker_pool(jobs: int, initializer: Callable[[], None] | None = None) -> ProcessPoolExecutor:
    """`jobs` worker processes started by a fork server, not forked from this process: a process whose other
    threads are inside gRPC (a test session, a notebook with a client) cannot fork safely (gRPC aborts the child:
    "Check failed: next_worker->state == KICKED")."""
    return ProcessPoolExecutor(
        max_workers=jobs, initializer=initializer, mp_context=multiprocessing.get_context("forkserver")
    )


def parallel_map(
    function: Callable[[_T], Any], items: Sequence[_T], jobs: int, init_worker: Callable[[], None] | None = None
) -> list[Any]:
    """`function` of each item, in order, in up to `jobs` worker processes (in this process when one job)."""
    if jobs <= 1 or len(items) <= 1:
        if init_worker is not None:
            init_worker()
        return [function(item) for item in items]
    with worker_pool(jobs, init_worker) as pool:
        return list(pool.map(function, items))


def write_trunk(path: Path, vectors: np.ndarray, labels: Sequence[str], spec: Any, header: dict[str, Any]) -> Path:
    """Train a transfer model's trunk on a source's embeddings and write it (atomically) as its .npz artifact."""
    from modsnet.models.heads import train_trunk, trunk_npz

    trunk = train_trunk(vectors, list(labels), spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(trunk_npz(header, trunk))
    partial.replace(path)
    return path


def trunk_digest(source_digest: str, shares_rows: bool) -> str:
    """What a transfer pair's key holds of its trunk: its source's digest, marked when the task shares rows with
    the source, where the trunk is trained in each fold without the held-out rows. The mark gives the pair its
    own key, so it is never taken from an older bundle, which scored it with the shipped trunk (it had seen
    those rows)."""
    return source_digest + (":less-held-out" if shares_rows else "")


def check_trunk_sources(sources: Sequence[str]) -> None:
    """A trunk source id is part of a model id, whose parts '--' separates."""
    for source in sources:
        if "--" in source:
            raise ValueError(f"{source!r}: a trunk source id may not hold '--' (it separates a model id's parts)")
