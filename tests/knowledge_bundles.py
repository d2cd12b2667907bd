"""Library bundles built in memory for the knowledge store's tests and benchmark, of any size and shape.

Rows are dicts of strings, as `read_bundle` gives them, so a store sees exactly what an uploaded bundle
would bring; nothing touches the disk, so a million interactions cost only the time to make the dicts.
"""

from __future__ import annotations

import hashlib
import math
import random

from modsnet.data.bundle import Bundle, Table


def fingerprint(dataset_id: str, salt: str = "") -> str:
    return hashlib.sha256(f"{salt}{dataset_id}".encode()).hexdigest()


def make_bundle(
    name: str = "lib",
    *,
    interactions: int = 24,
    models: int | None = None,
    seed: int = 0,
    extras: bool = True,
) -> Bundle:
    """A valid bundle with `interactions` records over `models` models (about √interactions by default).

    Every (model, dataset) pair appears at most once. `extras` adds what the format allows beyond the four
    required files: dataset similarities, probes, two feature tables (one covering half the datasets),
    fingerprints and text that needs quoting, so a store has every kind of row to keep exactly.
    """
    rng = random.Random(seed)
    n_models = models or max(1, math.isqrt(interactions))
    n_datasets = max(1, math.ceil(interactions / n_models))
    model_ids = [f"m{j}" for j in range(n_models)]
    dataset_ids = [f"d{i}" for i in range(n_datasets)]
    meta = {
        "name": name,
        "description": f'synthetic library {seed}: «ünïcode», "quotes", commas',
        "modality": "tabular",
        "task": "classification",
        "metric": "accuracy",
        "higher_is_better": True,
        "version": str(seed),
        "source": "tests/knowledge_bundles.py",
    }
    model_rows = [{"model_id": m, "family": "up" if j % 2 == 0 else "down, odd"} for j, m in enumerate(model_ids)]
    dataset_columns = ["dataset_id", "n_rows", *(["fingerprint"] if extras else [])]
    dataset_rows = []
    for i, d in enumerate(dataset_ids):
        row = {"dataset_id": d, "n_rows": str(100 + i)}
        if extras:
            row["fingerprint"] = fingerprint(d, salt=name)
        dataset_rows.append(row)
    interaction_rows = []
    for k in range(interactions):
        j, i = k % n_models, k // n_models
        interaction_rows.append(
            {
                "model_id": model_ids[j],
                "dataset_id": dataset_ids[i],
                "score": f"{rng.random():.6f}",
                "train_seconds": f"{0.1 * (j + 1):.3f}",
                "inference_seconds": "" if k % 5 == 0 else "0.01",
                "memory_bytes": str(1000 * (j + 1)),
            }
        )
    bundle = Bundle(
        meta,
        Table("models.csv", ["model_id", "family"], model_rows),
        Table("datasets.csv", dataset_columns, dataset_rows),
        Table(
            "interactions.csv",
            ["model_id", "dataset_id", "score", "train_seconds", "inference_seconds", "memory_bytes"],
            interaction_rows,
        ),
    )
    if extras:
        pairs = [(a, b) for a in dataset_ids for b in dataset_ids if a < b][:50]
        bundle.similarity = Table(
            "dataset_similarity.csv",
            ["dataset_a", "dataset_b", "distance"],
            [{"dataset_a": a, "dataset_b": b, "distance": f"{rng.random():.4f}"} for a, b in pairs],
        )
        bundle.probes = Table(
            "probes.csv",
            ["model_id", "dataset_id", "probe", "value", "seconds"],
            [
                {
                    "model_id": r["model_id"],
                    "dataset_id": r["dataset_id"],
                    "probe": "logme",
                    "value": "0.5",
                    "seconds": "",
                }
                for r in interaction_rows[:20]
            ],
        )
        bundle.features = {
            "tabular": Table(
                "dataset_features/tabular.csv",
                ["dataset_id", "log_rows", "classes"],
                [
                    {"dataset_id": d, "log_rows": f"{math.log(100 + i):.5f}", "classes": ""}
                    for i, d in enumerate(dataset_ids)
                ],
            ),
            "extra": Table(
                "dataset_features/extra.csv",
                ["dataset_id", "skew"],
                [{"dataset_id": d, "skew": f"{i / 7:.3f}"} for i, d in enumerate(dataset_ids[::2])],
            ),
        }
    return bundle


def pair(row: dict[str, str]) -> dict[str, str]:
    return {"model_id": row["model_id"], "dataset_id": row["dataset_id"]}


def row_digest(rows: list[dict[str, str]]) -> str:
    """An order-independent checksum of rows, to tell two versions of a table apart without keeping both."""
    lines = sorted("\x1f".join(f"{k}={v}" for k, v in sorted(row.items())) for row in rows)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
