"""TabZoo's probe records: settings measured the way a search's probe measures them, on a subset of datasets.

    python -m modsnet.offline.zoo.tabular_probes --bundle modsnet/libraries/tabzoo --work .cache/tabzoo-probes --jobs 2

A search probes a TabZoo setting on the rows TabZoo measures a table on: a stratified sample of at most
`probing.SAMPLE_ROWS` (= TabZoo's `ROW_CAP`) rows of the upload, drawn as the generator draws its own
(`modsnet.models.probing.measure`, seed 0, `PROBE_LIMIT_S` per probe). The recommender learns from these records
how far a probe lands from the record's scale (shift and noise, `modsnet/data/probe_scale.py`): since the probe
samples as the library did, nowhere (4,327 of the 4,332 records of the built-in bundle equal the record to its 6
digits; the other 5 are within 0.002), and the records are the evidence of that. This runs that very probe path,
every setting the probe can rebuild, on each chosen dataset as a user would upload it (the generator's
`_as_upload`), and writes the bundle's optional `probe_records.csv` (dataset_id, model_id, score, rows: the rows
the probe's sample had). A probe that fails or runs past its limit is left out, as a search leaves it out.

Datasets: by default `--datasets` of the evaluation's held-out targets (`evaluation.default_targets`, seed 0)
whose table has more than `SAMPLE_ROWS` rows (a smaller one is probed whole, as it was recorded), spread
evenly over their ids; `--ids` names them instead. Results are appended per dataset to
`<work>/probe_results.jsonl` (keyed by dataset alone: clear it when the settings or the data change), so an
interrupted run resumes. Run it after the TabZoo generator, which writes the bundle folder anew. Cost: the 28
datasets of the built-in bundle (155 settings each) took 8 minutes on 2 workers at load 3-4.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from modsnet.data.bundle import PROBE_RECORDS, read_bundle
from modsnet.data.exemplar import load_exemplar
from modsnet.data.graph_build import snapshot_from_bundle
from modsnet.models import probing
from modsnet.offline.zoo import tabular as zoo

__all__ = ["choose_datasets", "main", "measure_dataset"]

DEFAULT_DATASETS = 28


def choose_datasets(bundle: Path, count: int, seed: int = 0) -> list[str]:
    """`count` of the evaluation's held-out targets with more than SAMPLE_ROWS rows, spread over their ids."""
    from services.recommender.evaluation import default_targets  # offline: the evaluation's own draw

    snapshot = snapshot_from_bundle(read_bundle(bundle))
    rows = {d.dataset_id: float(d.metadata.get("n_rows") or 0) for d in snapshot.datasets}
    sources = {s.dataset_id for s in zoo.dataset_sources()}
    eligible = [
        t for t in default_targets(snapshot, seed=seed) if t in sources and rows.get(t, 0) > probing.SAMPLE_ROWS
    ]
    if len(eligible) <= count:
        return eligible
    return [eligible[i] for i in sorted(set(np.linspace(0, len(eligible) - 1, count).round().astype(int)))]


def measure_dataset(bundle: Path, dataset_id: str) -> list[dict[str, Any]]:
    """Every probeable setting probed on `dataset_id` as a search probes an upload of it."""
    from threadpoolctl import threadpool_limits

    snapshot = snapshot_from_bundle(read_bundle(bundle))
    models = [m for m in snapshot.models if probing.can_probe(snapshot.library, m)]
    source = next(s for s in zoo.dataset_sources() if s.dataset_id == dataset_id)
    out = []
    with tempfile.TemporaryDirectory(prefix="modsnet-probe-records-") as tmp, threadpool_limits(limits=1):
        path = Path(tmp) / f"{dataset_id}.csv"
        zoo._as_upload(source.load(), dataset_id).to_csv(path, index=False)
        exemplar = load_exemplar(path, name=path.name, target=zoo.TARGET)
        sample = probing.probe_sample(exemplar, seed=0)
        rows = 0 if sample is None else len(sample)
        for model in models:
            for p in probing.measure(snapshot.library, exemplar, [(model, None)], budget_seconds=probing.PROBE_LIMIT_S):
                out.append({"dataset_id": dataset_id, "model_id": p.model_id, "score": p.value, "rows": rows})
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modsnet.offline.zoo.tabular_probes", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--bundle", type=Path, required=True, help="the TabZoo bundle folder (probe_records.csv goes in it)"
    )
    parser.add_argument("--work", type=Path, required=True, help="folder for resumable results")
    parser.add_argument("--datasets", type=int, default=DEFAULT_DATASETS, help="how many held-out targets to probe")
    parser.add_argument("--ids", nargs="+", metavar="ID", help="probe these datasets instead")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (a dataset each)")
    args = parser.parse_args(argv)
    chosen = args.ids or choose_datasets(args.bundle, args.datasets)
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "probe_results.jsonl"
    done: dict[str, list[dict[str, Any]]] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # cut short by an interrupted run
            done[entry["dataset_id"]] = entry["records"]
    todo = [d for d in chosen if d not in done]
    started = time.perf_counter()
    print(f"tabzoo probes: {len(chosen)} datasets, {len(todo)} to measure", file=sys.stderr)
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool, open(log, "a") as out:
        futures = {pool.submit(measure_dataset, args.bundle, d): d for d in todo}
        for future in as_completed(futures):
            dataset_id = futures[future]
            done[dataset_id] = future.result()
            out.write(json.dumps({"dataset_id": dataset_id, "records": done[dataset_id]}) + "\n")
            out.flush()
            print(
                f"tabzoo probes: {dataset_id} {len(done[dataset_id])} settings ({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
            )
    rows = sorted((r for d in chosen for r in done[d]), key=lambda r: (r["dataset_id"], r["model_id"]))
    target = args.bundle / PROBE_RECORDS
    staging = target.with_name(f".{target.name}.tmp")
    with open(staging, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["dataset_id", "model_id", "score", "rows"])
        for r in rows:
            writer.writerow([r["dataset_id"], r["model_id"], f"{r['score']:.6g}", r["rows"]])
    staging.replace(target)
    print(f"tabzoo probes: {len(rows)} records of {len(chosen)} datasets -> {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
