"""Metadata columns the estimators must not learn from: the one profiler of `models.csv` / `datasets.csv` columns.

Published tables carry columns that describe the file, not the models or datasets: a pandas index
(`Unnamed: 0`), ids, hashes, a value every row shares, label lists, prose. An estimator that reads them as
features finds patterns that are not there (an index orders models by how the file was sorted; a unique
name per row makes every model its own category). `junk_columns` names each such column and why; it
reads only the cells, so the knowledge service warns at import and the estimators leave the same columns
out of a snapshot's records (`modsnet.data.graph_build`). A column is junk when it is

* an id by name: `id` or `*_id`;
* an index: distinct integers counting the rows (0..n-1 or 1..n, in any order, gaps from rows without a
  value allowed), or distinct integers under an index's name (`index`, `Unnamed: 0`, an empty name);
* constant: one distinct value, empty cells aside (or no value at all);
* a list: most cells a list literal, `['a', 'b']`, `[1, 2]`, a JSON array;
* a name per row: a different single token (no spaces) in nearly every row, such as a hash, a file name
  or a repository name, unless the values name known records (a model's source dataset);
* free text: a different multi-word string in nearly every row.

What stays: numbers (sizes, counts, scores; a unique float measurement is a measurement), categories
whose values repeat, and key/value mappings such as `{"n_estimators": 50}` (a model's settings, unique
per model but made of shared keys and values).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence

_NUMERIC_SHARE = 0.8  # a column is numeric when this share of its filled cells are numbers (as the GNN reads it)
_LIST_SHARE = 0.8  # a column is a list column when this share of its filled cells are list literals
_DISTINCT_SHARE = 0.9  # "a different value in nearly every row"
_MIN_DISTINCT_ROWS = 3  # fewer filled cells than this say nothing about uniqueness
_INDEX_SLACK = 1.1  # an index may skip a tenth of the rows' numbers (rows dropped before writing)
_REFERENCE_SHARE = 0.5  # a column whose values name known records this often is a reference
_INDEX_NAMES = re.compile(r"^(|index|idx|level_0|unnamed:? ?\d*)$")
_LIST = re.compile(r"^\[.*\]$", re.DOTALL)
_MAPPING = re.compile(r"^\{.*\}$", re.DOTALL)


def is_id_column(name: str) -> bool:
    """An id column (OpenML's dataset id, say): a number with no meaning as a magnitude."""
    return name == "id" or name.endswith("_id")


def finite_number(cell: object) -> float | None:
    """A cell as a finite float, or None when it is not one."""
    try:
        value = float(cell)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def junk_columns(
    rows: Sequence[Mapping[str, str]], *, key: str = "", references: Collection[str] = ()
) -> dict[str, str]:
    """Column -> why the estimators ignore it, for every junk column of `rows`, in first-seen column order.

    `rows` are a table's rows or records' metadata dicts (a missing cell counts as empty); `key` is the
    rows' own id column (`model_id`), never profiled; `references` are ids a column may name (the
    library's dataset ids), which make it a reference rather than a name per row.
    """
    columns = list(dict.fromkeys(column for row in rows for column in row if column != key))
    out = {}
    for column in columns:
        reason = column_junk(column, [row.get(column, "") for row in rows], references=references)
        if reason:
            out[column] = reason
    return out


def column_junk(name: str, cells: Sequence[str], *, references: Collection[str] = ()) -> str:
    """Why the column `name` with `cells` (one per row, "" where empty) is junk, or "" when it is usable."""
    if is_id_column(name):
        return "an id (by its name)"
    filled = [cell.strip() for cell in cells if cell.strip() != ""]
    distinct = set(filled)
    if len(distinct) <= 1:
        return "constant (no value)" if not distinct else f"constant (every filled cell is {_short(filled[0])})"
    numbers = [finite_number(cell) for cell in filled]
    if sum(value is not None for value in numbers) >= _NUMERIC_SHARE * len(filled):
        return _index_junk(name, [v for v in numbers if v is not None], rows=len(cells))
    if references and sum(cell in references for cell in filled) >= _REFERENCE_SHARE * len(filled):
        return ""
    if sum(bool(_LIST.match(cell)) for cell in filled) >= _LIST_SHARE * len(filled):
        return "a list in each cell (free text)"
    if len(filled) < _MIN_DISTINCT_ROWS or len(distinct) < _DISTINCT_SHARE * len(filled):
        return ""  # values repeat: a category
    if sum(bool(_MAPPING.match(cell)) for cell in filled) >= _LIST_SHARE * len(filled):
        return ""  # key/value settings: unique per row, but their keys and values are shared
    if sum(len(cell.split()) > 1 for cell in filled) >= _DISTINCT_SHARE * len(filled):
        return "free text (a different string in nearly every row)"
    return "a different name in nearly every row (an id)"


def _index_junk(name: str, values: Sequence[float], *, rows: int) -> str:
    """Why numeric `values` (the column's numbers) are an index, or "" when they are a measurement."""
    if not all(v == int(v) for v in values) or len(set(values)) != len(values):
        return ""  # a fraction, or repeats: a measurement or a count
    low, high = min(values), max(values)
    if len(values) >= _MIN_DISTINCT_ROWS and low in (0, 1) and high - low + 1 <= _INDEX_SLACK * rows + 1:
        return f"an index ({int(low)}..{int(high)}, one per row)"
    if _INDEX_NAMES.match(name.strip().lower()):
        return "an index (distinct integers under an index's name)"
    return ""


def _short(cell: str, width: int = 24) -> str:
    return repr(cell if len(cell) <= width else cell[: width - 3] + "...")
