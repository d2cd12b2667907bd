"""Synthetic model libraries at scale: 10k to 1M models and up to 10M interactions, for benchmarks.

    python -m modsnet.offline.synthetic_library --models 100000 --datasets 1000 --interactions 1000000 \
        --seed 0 --out DIR

writes a bundle folder (the format of design.md, "Library bundle"; it passes `read_bundle`'s checks) that
looks like a real library where it matters to the engine:

* **popularity** is a power law: model of popularity rank r is measured with probability ∝ r^-`MODEL_ALPHA`,
  dataset of rank r ∝ r^-`DATASET_ALPHA` (a few models and datasets have thousands of records, most have a
  handful, as on Hugging Face and OpenML), with every model and dataset measured at least once;
* **scores** have a planted low-rank structure plus noise: P(d, m) = 0.5 + 0.5·sigmoid(b_m + c_d + u_d·v_m + ε),
  where u_d is a fixed function of the dataset's features and v_m comes from the model's family, so an
  estimator that reads features and families has something to learn, and the noise ε something it cannot;
* **dataset features** are rows of the real TabZoo `dataset_features/tabular.csv` (tabular/v1), sampled with
  replacement and jittered, so their scales and correlations are those of real tables;
* **model metadata and costs**: a family, a size in parameters (log-normal around the family's), and per
  record train/inference seconds and memory that grow with the model's size and the dataset's rows.

Interactions stream to disk in chunks (`CHUNK` records): no step holds a Python object per record, only
numpy arrays (8 bytes a record for the pair keys), so 10M interactions fit in about 1 GiB. The output is
deterministic for a seed, and written in the canonical order (dataset_id, model_id) with ids zero-padded.
Written into a temp folder beside `--out` and renamed into place, so a failed run leaves nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

TABZOO_FEATURES = Path(__file__).resolve().parents[1] / "libraries" / "tabzoo" / "dataset_features" / "tabular.csv"
MODEL_ALPHA = 0.9  # Zipf exponent of model popularity
DATASET_ALPHA = 0.7  # Zipf exponent of dataset coverage
RANK = 4  # dimension of the planted score structure
FAMILIES = 24
CHUNK = 500_000  # interactions computed and written per step
NOISE = 0.25  # sd of the unexplained part of a score, on the logit scale


@dataclass(frozen=True)
class LibrarySpec:
    models: int
    datasets: int
    interactions: int
    seed: int = 0
    name: str = ""

    @property
    def library_name(self) -> str:
        return self.name or f"synth-{self.models}m-{self.datasets}d"

    def check(self) -> None:
        if self.models < 1 or self.datasets < 1:
            raise ValueError("--models and --datasets must be at least 1")
        if self.interactions < max(self.models, self.datasets):
            raise ValueError(
                f"--interactions {self.interactions} must be at least max(models, datasets) = "
                f"{max(self.models, self.datasets)}: every model and dataset is measured at least once"
            )
        if self.interactions > self.models * self.datasets // 2:
            raise ValueError(
                f"--interactions {self.interactions} is over half of models x datasets "
                f"({self.models * self.datasets}): a library that dense is not what this generator imitates"
            )


def _zipf_weights(n: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """Probabilities ∝ rank^-alpha, the ranks shuffled over the ids (id order says nothing of popularity)."""
    weights = np.arange(1, n + 1, dtype=np.float64) ** -alpha
    rng.shuffle(weights)
    return weights / weights.sum()


def _capped(p: np.ndarray, draws: int, cap: int) -> np.ndarray:
    """`p` with no entry expecting over `cap` of `draws` (the excess spread over the rest, proportionally):
    a model cannot be measured on more datasets than exist, and drawing it as if it could only makes repeats."""
    for _ in range(20):
        over = p * draws > cap
        if not over.any():
            break
        p = np.where(over, cap / draws, p)
        free = ~over
        p[free] *= (1 - p[over].sum()) / p[free].sum()
    return p / p.sum()


def _pair_keys(spec: LibrarySpec, rng: np.random.Generator) -> np.ndarray:
    """`spec.interactions` distinct pairs as sorted int64 keys dataset * models + model.

    Every model and every dataset gets one pair first (a permutation each, so none is left without a
    record), the rest drawn from the two power laws (each model capped at half the datasets, each dataset
    at half the models) until enough distinct pairs exist.
    """
    m, d, k = spec.models, spec.datasets, spec.interactions
    model_p = _capped(_zipf_weights(m, MODEL_ALPHA, rng), k, max(1, d // 2))
    dataset_p = _capped(_zipf_weights(d, DATASET_ALPHA, rng), k, max(1, m // 2))
    n = max(m, d)
    base = rng.permutation(n) % d * m + np.arange(n) % m
    keys = np.unique(base)
    while len(keys) < k:
        want = int((k - len(keys)) * 1.2) + 1024
        drawn = rng.choice(d, size=want, p=dataset_p) * np.int64(m) + rng.choice(m, size=want, p=model_p)
        fresh = np.setdiff1d(np.unique(drawn), keys, assume_unique=True)
        if len(fresh) > k - len(keys):  # keep a random subset, not the smallest keys
            fresh = rng.choice(fresh, size=k - len(keys), replace=False)
        keys = np.union1d(keys, fresh)
    return keys


def _ids(prefix: str, index: np.ndarray, n: int) -> np.ndarray:
    width = len(str(max(n - 1, 0)))
    return np.char.add(prefix, np.char.zfill(index.astype(str), width))


def generate(spec: LibrarySpec, out: str | os.PathLike[str], *, log: bool = False) -> Path:
    """Write the bundle folder `out` (which must not exist, or be empty); returns its path."""
    spec.check()
    target = Path(out)
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target}: exists and is not empty")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=target.parent))
    started = time.perf_counter()
    try:
        _write(spec, staging, started if log else None)
        staging.chmod(0o755)
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _say(started: float | None, what: str) -> None:
    if started is not None:
        print(f"[{time.perf_counter() - started:7.1f}s] {what}", file=sys.stderr, flush=True)


def _write(spec: LibrarySpec, folder: Path, started: float | None) -> None:
    rng = np.random.default_rng(spec.seed)
    m, d = spec.models, spec.datasets
    model_ids, dataset_ids = _ids("m", np.arange(m), m), _ids("d", np.arange(d), d)

    # Datasets: real TabZoo feature rows, sampled and jittered by 5% of each column's spread.
    real = pd.read_csv(TABZOO_FEATURES)
    names = [c for c in real.columns if c != "dataset_id"]
    table = real[names].to_numpy(dtype=np.float64)
    spread = np.nan_to_num(np.nanstd(table, axis=0))
    feats = table[rng.integers(0, len(table), size=d)] + rng.normal(size=(d, len(names))) * 0.05 * spread
    low, high = np.nanmin(table, axis=0), np.nanmax(table, axis=0)
    feats = np.clip(feats, low, high)  # shares stay in [0, 1], counts stay positive
    rows_log10 = feats[:, names.index("log_rows")] if "log_rows" in names else np.full(d, 3.0)
    features_log10 = feats[:, names.index("log_features")] if "log_features" in names else np.full(d, 1.0)
    n_rows = np.maximum(10, np.round(10**rows_log10)).astype(np.int64)
    n_features = np.maximum(1, np.round(10**features_log10)).astype(np.int64)

    # The planted structure: u_d from the standardised features, v_m from the family.
    z = np.nan_to_num((feats - np.nanmean(table, axis=0)) / np.where(spread > 0, spread, 1.0))
    u = np.tanh(z @ rng.normal(size=(len(names), RANK)) / np.sqrt(len(names)) * 2.0)
    c = z @ rng.normal(size=len(names)) / np.sqrt(len(names)) * 0.5
    family = rng.choice(FAMILIES, size=m, p=_zipf_weights(FAMILIES, 1.0, rng))
    centres = rng.normal(size=(FAMILIES, RANK))
    v = centres[family] + 0.3 * rng.normal(size=(m, RANK))
    b = rng.normal(0.5, 0.4, size=FAMILIES)[family] + 0.2 * rng.normal(size=m)
    family_size = rng.uniform(5.5, 9.5, size=FAMILIES)  # log10 parameters
    params = np.round(10 ** (family_size[family] + 0.3 * rng.normal(size=m))).astype(np.int64)

    (folder / "library.yaml").write_text(
        yaml.safe_dump(
            {
                "name": spec.library_name,
                "description": (
                    f"synthetic library: {m} models x {d} datasets, {spec.interactions} interactions; power-law "
                    "popularity, planted rank-4 scores plus noise, dataset features sampled from TabZoo's"
                ),
                "modality": "tabular",
                "task": "classification",
                "metric": "balanced_accuracy",
                "higher_is_better": True,
                "version": "1",
                "source": f"modsnet.offline.synthetic_library seed {spec.seed} (not measurements)",
                "metric_range": [0.0, 1.0],
            },
            sort_keys=False,
        )
    )
    pd.DataFrame(
        {"model_id": model_ids, "family": np.char.add("fam", family.astype(str)), "parameters": params}
    ).to_csv(folder / "models.csv", index=False)
    pd.DataFrame({"dataset_id": dataset_ids, "n_rows": n_rows, "n_features": n_features}).to_csv(
        folder / "datasets.csv", index=False
    )
    (folder / "dataset_features").mkdir()
    frame = pd.DataFrame(np.round(feats, 6), columns=names)
    frame.insert(0, "dataset_id", dataset_ids)
    frame.to_csv(folder / "dataset_features" / "tabular.csv", index=False)
    _say(started, f"{m} models, {d} datasets written")

    keys = _pair_keys(spec, rng)
    _say(started, f"{len(keys)} pairs drawn")
    with open(folder / "interactions.csv", "w", encoding="utf-8", newline="") as handle:
        handle.write("model_id,dataset_id,score,train_seconds,inference_seconds,memory_bytes\n")
        for start in range(0, len(keys), CHUNK):
            part = keys[start : start + CHUNK]
            di, mi = part // m, part % m
            logit = b[mi] + c[di] + np.einsum("ij,ij->i", u[di], v[mi]) + NOISE * rng.normal(size=len(part))
            score = 0.5 + 0.5 / (1 + np.exp(-logit))
            work = params[mi] * n_rows[di].astype(np.float64)
            train = work * 2e-9 * np.exp(0.3 * rng.normal(size=len(part)))
            infer = train * 0.05 * np.exp(0.2 * rng.normal(size=len(part)))
            memory = np.round(params[mi] * 4 + n_rows[di] * n_features[di] * 8)
            pd.DataFrame(
                {
                    "model_id": model_ids[mi],
                    "dataset_id": dataset_ids[di],
                    "score": np.round(score, 6),
                    "train_seconds": np.round(train, 6),
                    "inference_seconds": np.round(infer, 8),
                    "memory_bytes": memory.astype(np.int64),
                }
            ).to_csv(handle, header=False, index=False)
            _say(started, f"{min(start + CHUNK, len(keys))} interactions written")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modsnet.offline.synthetic_library", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--models", type=int, required=True)
    parser.add_argument("--datasets", type=int, required=True)
    parser.add_argument("--interactions", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="", help="library name (default synth-<M>m-<D>d)")
    parser.add_argument("--out", required=True, help="bundle folder to write (must not exist or be empty)")
    args = parser.parse_args(argv)
    spec = LibrarySpec(args.models, args.datasets, args.interactions, args.seed, args.name)
    try:
        path = generate(spec, args.out, log=True)
    except (ValueError, FileExistsError) as exc:
        parser.error(str(exc))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
