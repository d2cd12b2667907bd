"""OBOE's error and runtime matrices (KDD 2019, udellgroup/oboe) as a tabular library bundle.

`error_matrix.csv` holds the cross-validated balanced error of scikit-learn settings (columns, each a
Python dict literal `{'algorithm': ..., 'hyperparameters': {...}}`) on OpenML datasets (rows, by
zero-padded OpenML id); `runtime_matrix.csv` has the training seconds in the same shape, and
`dataset_sizes.csv` the OpenML id, rows and features of each dataset (its header row is `,0,1`, so
columns are read by position). Scores become balanced accuracy (1 - error) so that higher is better,
as for every other library.
"""

from __future__ import annotations

import ast
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modsnet.data.bundle import Bundle
from modsnet.offline.importers import ImportReport, finite_number, read_source_csv, size_features, table, write_library
from modsnet.runtime.errors import InvalidArgument

SOURCE = "OBOE (KDD 2019), udellgroup/oboe @9c5b47d, BSD-3-Clause"
ERRORS = "error_matrix.csv"
RUNTIMES = "runtime_matrix.csv"
SIZES = "dataset_sizes.csv"


def import_oboe(src: str | Path, out: str | Path, name: str = "oboe") -> ImportReport:
    """Import OBOE's matrices from `src` as the bundle `name`; empty or out-of-range cells are counted."""
    folder = Path(src)
    errors = _matrix(folder, ERRORS)
    runtimes = _aligned(folder, RUNTIMES, errors)
    settings = {header: _setting(folder / ERRORS, header) for header in errors.columns}
    slugs = {header: _slug(*setting) for header, setting in settings.items()}
    if len(set(slugs.values())) != len(slugs):
        repeated = sorted(s for s, n in Counter(slugs.values()).items() if n > 1)
        raise InvalidArgument(f"{folder / ERRORS}: columns repeat the setting(s) {', '.join(repeated)}")
    dataset_ids = {row: _dataset_id(folder / ERRORS, row) for row in errors.index}

    error = _numbers(folder / ERRORS, errors)
    seconds = _numbers(folder / RUNTIMES, runtimes)
    refused: Counter[str] = Counter()
    missing = np.isnan(error)
    out_of_range = ~missing & ((error < 0) | (error > 1))
    if missing.any():
        refused["missing_error"] = int(missing.sum())
    if out_of_range.any():
        refused["error_out_of_range"] = int(out_of_range.sum())
    rows, columns = np.nonzero(~missing & ~out_of_range)
    model_ids = [slugs[h] for h in errors.columns]
    row_ids = [dataset_ids[r] for r in errors.index]
    interactions = [
        (model_ids[j], row_ids[i], 1.0 - float(error[i, j]), _finite(seconds[i, j]))
        for i, j in zip(rows.tolist(), columns.tolist(), strict=True)
    ]

    sizes = _sizes(folder)
    bundle = Bundle(
        meta={
            "name": name,
            "description": (
                "scikit-learn classifier settings on OpenML classification datasets, from OBOE's error "
                "matrix. score: balanced accuracy, 1 - cross-validated balanced error (higher is better); "
                "train_seconds from its runtime matrix."
            ),
            "modality": "tabular",
            "task": "classification",
            "metric": "balanced_accuracy",
            "higher_is_better": True,
            "version": 1,
            "source": SOURCE,
        },
        models=table(
            "models.csv",
            ("model_id", "algorithm", "hyperparameters"),
            ((slugs[h], algorithm, json.dumps(params, sort_keys=True)) for h, (algorithm, params) in settings.items()),
        ),
        datasets=table(
            "datasets.csv",
            ("dataset_id", "openml_id", "n_rows", "n_features"),
            ((d, int(d.removeprefix("openml-")), *sizes.get(d, (None, None))) for d in dataset_ids.values()),
        ),
        interactions=table("interactions.csv", ("model_id", "dataset_id", "score", "train_seconds"), interactions),
        features={"size": size_features((d, *sizes.get(d, (None, None)), None) for d in dataset_ids.values())},
    )
    return write_library(bundle, out, refused, Counter())


def _matrix(folder: Path, file: str) -> pd.DataFrame:
    frame = read_source_csv(folder, file, [], index_col=0)
    frame.index = [str(label).strip() for label in frame.index]
    return frame


def _aligned(folder: Path, file: str, like: pd.DataFrame) -> pd.DataFrame:
    """`file`'s matrix in the order of `like`, refused when it lacks one of `like`'s rows or columns."""
    frame = _matrix(folder, file)
    for labels, have, kind in ((like.columns, frame.columns, "column"), (like.index, frame.index, "row")):
        if missing := [label for label in labels if label not in set(have)]:
            raise InvalidArgument(f"{folder / file}: {kind} {missing[0]!r} of {ERRORS} is missing")
    return frame.loc[like.index, like.columns]


def _numbers(path: Path, frame: pd.DataFrame) -> np.ndarray:
    """The matrix as floats, NaN where a cell is empty or NaN; any other non-number is refused by name."""
    values = frame.apply(pd.to_numeric, errors="coerce")
    empty = frame.apply(lambda column: column.str.lower().isin(["", "nan"]))
    bad = (values.isna() & ~empty).to_numpy()
    if bad.any():
        i, j = (int(k[0]) for k in np.nonzero(bad))
        cell = frame.iat[i, j]
        raise InvalidArgument(f"{path}: column {frame.columns[j]!r}, row {frame.index[i]!r}: {cell!r} is not a number")
    return values.to_numpy(dtype=float)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _setting(path: Path, header: str) -> tuple[str, dict[str, Any]]:
    """(algorithm, hyperparameters) from a column header, read as a literal (never evaluated as code)."""
    try:
        setting = ast.literal_eval(header)
    except (ValueError, SyntaxError):
        setting = None
    if (
        not isinstance(setting, dict)
        or not isinstance(setting.get("algorithm"), str)
        or not isinstance(setting.get("hyperparameters", {}), dict)
    ):
        raise InvalidArgument(
            f"{path}: column {header!r} is not a setting {{'algorithm': ..., 'hyperparameters': {{...}}}}"
        )
    return setting["algorithm"], dict(setting.get("hyperparameters", {}))


def _slug(algorithm: str, params: dict[str, Any]) -> str:
    """A readable id that names the whole setting, e.g. `KNN-n_neighbors=5-p=1` (the grid's key order)."""
    return "-".join([algorithm, *(f"{key}={value}" for key, value in params.items())])


def _dataset_id(path: Path, label: str) -> str:
    try:
        return f"openml-{int(label)}"
    except ValueError:
        raise InvalidArgument(f"{path}: row {label!r} is not an OpenML dataset id") from None


def _sizes(folder: Path) -> dict[str, tuple[float | None, float | None]]:
    """`openml-<id>` -> (rows, features); the file's columns are read by position (its header is junk)."""
    frame = read_source_csv(folder, SIZES, [])
    if frame.shape[1] != 3:
        raise InvalidArgument(
            f"{folder / SIZES}: expected 3 columns (OpenML id, rows, features), found {frame.shape[1]}"
        )
    sizes: dict[str, tuple[float | None, float | None]] = {}
    for openml_id, n_rows, n_features in frame.itertuples(index=False):
        if (key := finite_number(openml_id)) is not None and key.is_integer():
            sizes[f"openml-{int(key)}"] = (finite_number(n_rows), finite_number(n_features))
    return sizes
