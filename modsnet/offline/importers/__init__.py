"""Importers: other groups' published records turned into library bundles (design.md, "Library bundle").

`transfergraph.import_transfergraph` and `oboe.import_oboe` read a source folder as published, refuse and
count its junk rows (one warning, never a crash), and write one bundle folder through
`modsnet.data.bundle.write_bundle` (staged in a temp folder, renamed into place). The bundle is validated
with the same reader an upload goes through before anything is written, so an importer can never leave
a bundle that the knowledge service would refuse. Output is deterministic: sorted rows, fixed columns,
floats at 8 significant digits.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from modsnet.data.bundle import Bundle, Table, bundle_members, parse_members, write_bundle
from modsnet.data.columns import finite_number
from modsnet.runtime.errors import InvalidArgument

logger = logging.getLogger(__name__)

# Tokens that a shifted or truncated CSV line leaves where a name should be (seen in TransferGraph).
_SPILL_TOKENS = frozenset({"", "none", "null", "nan", "true", "false", "lora"})


@dataclass(frozen=True)
class ImportReport:
    """What an import wrote, so its counts can be checked against the source's documentation."""

    library: str
    models: int  # rows of models.csv
    datasets: int  # rows of datasets.csv
    interactions: int
    scored_models: int  # models with at least one interaction
    scored_datasets: int  # datasets with at least one interaction
    probes: int = 0
    similarity_pairs: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # malformed source rows/cells, by reason
    excluded: dict[str, int] = field(default_factory=dict)  # valid rows left out by design, by reason

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_source_csv(folder: Path, file: str, required: Sequence[str], **options: Any) -> pd.DataFrame:
    """A source CSV with every cell as a stripped string; refuses a missing file or column by name."""
    path = folder / file
    if not path.is_file():
        raise InvalidArgument(f"{path}: file is missing")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, **options)
    except (ValueError, pd.errors.ParserError) as exc:
        raise InvalidArgument(f"{path}: not a readable CSV file ({exc})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    for column in required:
        if column not in frame.columns:
            raise InvalidArgument(f"{path}: column {column!r} is missing")
    return frame.apply(lambda col: col.str.strip())


def is_name(cell: str) -> bool:
    """Whether a cell can be an id, not a number or token spilled there from a broken line."""
    if cell.lower() in _SPILL_TOKENS:
        return False
    try:
        float(cell)
    except ValueError:
        return True
    return False


def fmt(value: object) -> str:
    """One spelling per value: integral numbers as integers, other floats at 8 significant digits."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(float(f"{value:.8g}"))
    return str(value)


def metadata_cell(cell: str) -> str:
    """A metadata cell in canonical spelling (TransferGraph writes counts as floats: '1000.0' -> '1000')."""
    value = finite_number(cell)
    return fmt(value) if value is not None else cell


def table(file: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Table:
    """A bundle table from positional rows of Python values."""
    return Table(file, list(columns), [dict(zip(columns, map(fmt, row), strict=True)) for row in rows])


def size_features(rows: Iterable[tuple[str, float | None, float | None, float | None]]) -> Table:
    """`dataset_features/size.csv` from (dataset_id, rows, features, classes), where known.

    Other groups' records describe datasets by little more than their size; writing it under the names
    the feature extractors use (`modsnet.features.tabular.FEATURE_NAMES`) puts their datasets in the same
    feature space as an uploaded file, so similar-dataset search works across them.
    """
    out = []
    for dataset_id, n_rows, n_features, n_classes in rows:
        if n_rows is None and n_classes is None:
            continue
        log_rows = math.log10(max(n_rows, 1.0)) if n_rows is not None else None
        log_features = math.log10(max(n_features, 1.0)) if n_features is not None else None
        per_feature = log_rows - log_features if log_rows is not None and log_features is not None else None
        out.append((dataset_id, log_rows, log_features, per_feature, n_classes))
    columns = ["dataset_id", "log_rows", "log_features", "log_rows_per_feature", "n_classes"]
    keep = [i for i in range(len(columns)) if i == 0 or any(r[i] is not None for r in out)]
    return table("dataset_features/size.csv", [columns[i] for i in keep], ([r[i] for i in keep] for r in out))


def _warn_refused(library: str, refused: Mapping[str, int]) -> None:
    """One warning for all refused source rows, so a bad import is noticed without flooding the log."""
    if refused:
        detail = ", ".join(f"{reason}={count}" for reason, count in sorted(refused.items()))
        logger.warning("%s: refused %d source rows or cells (%s)", library, sum(refused.values()), detail)


def write_library(
    bundle: Bundle, out: str | os.PathLike[str], refused: Counter[str], excluded: Counter[str]
) -> ImportReport:
    """Validate `bundle` as an upload would be, write it atomically to `out`, and report its counts."""
    parse_members(bundle_members(bundle))
    write_bundle(bundle, out)
    _warn_refused(bundle.name, refused)
    pairs = [(row["model_id"], row["dataset_id"]) for row in bundle.interactions.rows]
    return ImportReport(
        library=bundle.name,
        models=len(bundle.models.rows),
        datasets=len(bundle.datasets.rows),
        interactions=len(pairs),
        scored_models=len({m for m, _ in pairs}),
        scored_datasets=len({d for _, d in pairs}),
        probes=len(bundle.probes.rows) if bundle.probes else 0,
        similarity_pairs=len(bundle.similarity.rows) if bundle.similarity else 0,
        refused=dict(sorted(refused.items())),
        excluded=dict(sorted(excluded.items())),
    )
