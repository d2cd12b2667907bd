"""Which ImageZoo datasets lie nearest an upload in `image/v1` feature space (one feature space, shown).

    python benchmarks/imagezoo_nearest.py examples/digits --library modsnet/libraries/imagezoo

The upload is read by `load_exemplar` and described by `dataset_features`, as a search does; the library's
features (dataset_features/image.csv) were made the same way from each task's folder. Distances are RMS over
features standardised by the library's median and IQR (as the kNN estimator compares datasets), clipped at
±5; the cosine is that of the 16 projected mean-embedding features (embedding_00-15) alone.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from modsnet.data.exemplar import dataset_features, load_exemplar


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("upload", type=Path)
    parser.add_argument("--library", type=Path, default=Path("modsnet/libraries/imagezoo"))
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    started = time.perf_counter()
    exemplar = load_exemplar(args.upload, name=args.upload.name)
    feature_set, features = dataset_features(exemplar)
    seconds = time.perf_counter() - started
    table = pd.read_csv(args.library / "dataset_features" / "image.csv").set_index("dataset_id")
    groups = pd.read_csv(args.library / "datasets.csv").set_index("dataset_id")["source_group"]
    raw = table.to_numpy(dtype=float)
    query = np.array([features[c] for c in table.columns], dtype=float)
    center = np.median(raw, axis=0)
    q75, q25 = np.percentile(raw, [75, 25], axis=0)
    scale = (q75 - q25) / 1.349
    std = raw.std(axis=0)
    scale = np.where(scale > 1e-12, scale, np.where(std > 1e-12, std, 1.0))
    standardised = np.clip((raw - center) / scale, -5, 5)
    distance = np.sqrt(np.mean((standardised - np.clip((query - center) / scale, -5, 5)) ** 2, axis=1))
    embedding = [i for i, c in enumerate(table.columns) if c.startswith("embedding_") and c[-2:].isdigit()]
    a, b = raw[:, embedding], query[embedding]
    cosine = a @ b / (np.linalg.norm(a, axis=1) * np.linalg.norm(b) + 1e-12)
    print(f"{args.upload} ({exemplar.n_items} images, {feature_set}, described in {seconds:.1f} s)")
    print("| rank | dataset | source group | standardised distance | cosine of mean embeddings |")
    print("|---:|---|---|---:|---:|")
    for rank, i in enumerate(np.argsort(distance)[: args.top], start=1):
        name = table.index[i]
        print(f"| {rank} | {name} | {groups[name]} | {distance[i]:.2f} | {cosine[i]:.3f} |")


if __name__ == "__main__":
    main()
