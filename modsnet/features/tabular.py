"""Tabular uploads: parse a CSV/TSV safely, choose its target column, and describe it with meta-features.

`read_table` refuses anything that is not a rectangular text table with a one-line message naming the file,
because that message goes straight back to the person who uploaded it. `tabular_features` works on a
bounded random sample, so describing a million-row upload costs about what a 50k-row one does. The
built-in library (`modsnet.offline.zoo.tabular`) is described by these very functions, so a query's features and
the library's are comparable by construction.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import itertools
import math
import os
import re
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import pandas as pd

from modsnet.data.text_decoding import text_encoding
from modsnet.runtime.errors import InvalidArgument, ResourceExhausted

__all__ = [
    "FEATURE_NAMES",
    "FEATURE_SET",
    "feature_columns",
    "infer_target",
    "read_table",
    "read_table_sample",
    "stratified_sample",
    "tabular_features",
]

FEATURE_SET = "tabular/v1"
"""Version of the feature vector: bump it whenever a feature's definition changes."""

FEATURE_NAMES: tuple[str, ...] = (
    "log_rows",
    "log_features",
    "log_rows_per_feature",
    "n_classes",
    "class_entropy",
    "minority_share",
    "majority_share",
    "share_numeric",
    "share_categorical",
    "share_missing",
    "share_rows_with_missing",
    "mean_abs_skew",
    "mean_kurtosis",
    "mean_abs_corr",
    "mean_cardinality_categorical",
    "max_mutual_info_share",
    "mean_mutual_info_share",
    "landmark_1nn",
    "landmark_stump",
    "landmark_naive_bayes",
)
"""The keys of `tabular_features`, in a fixed order (the column order of `dataset_features/tabular.csv`)."""

_DELIMITERS = (",", "\t", ";", "|")  # ties go to the earlier one
_SNIFF_CHARS = 65_536
_SNIFF_ROWS = 50
_NON_BLANK = re.compile(rb"\S")
_MISSING_TOKENS = ("", "?")  # beyond pandas' defaults; '?' is how UCI and KEEL files mark missing values

_TARGET_NAMES = ("class", "label", "target", "outcome", "y")  # in order of preference
_MAX_CLASSES = 1000

# An upload of more rows or cells than these is parsed from a seeded uniform sample of its rows (its size
# stays exact): four times what the features below sample, so they describe it as they would the whole.
KEEP_ROWS = 200_000
KEEP_CELLS = 20_000_000
KEEP_MIN_ROWS = 10_000
_SAMPLE_CELLS = 5_000_000  # wide tables get fewer sample rows, so the sample's memory stays bounded
_DESCRIBED_COLUMNS = 100  # per-column statistics use at most this many (seeded) feature columns
_CORR_COLUMNS = 64
_CORR_ROWS = 10_000
_MI_BINS = 10
_TOP_LEVELS = 20  # categorical levels kept apart; the rest share a code, so an id column is not informative
_SKEW_CLIP = 10.0
_KURTOSIS_CLIP = 50.0
_LANDMARK_ROWS = 2_000
_LANDMARK_FOLDS = 3


# ----------------------------------------------------------------------------------------------- parsing


def read_table(
    source: str | os.PathLike[str] | bytes | BinaryIO,
    *,
    name: str,
    max_rows: int = 5_000_000,
    max_columns: int = 10_000,
) -> pd.DataFrame:
    """Parse a delimited text table with a header row, or refuse it with a message naming `name`.

    The delimiter is sniffed among , tab ; and |. Text is read as UTF-8 (a BOM is dropped), else as
    Windows-1252, else Latin-1: legacy spreadsheet exports are common, and bytes that are not valid UTF-8
    were almost never meant as UTF-8. Cells are stripped of padding, '?' and blanks read as missing, ±inf
    reads as missing (no model can use it). Row numbers in messages count the header as row 1, as a spreadsheet
    does. Raises `InvalidArgument` for a malformed table, `ResourceExhausted` past a size limit.
    """
    return read_table_sample(source, name=name, max_rows=max_rows, max_columns=max_columns, keep_cells=None)[0]


def read_table_sample(
    source: str | os.PathLike[str] | bytes | BinaryIO,
    *,
    name: str,
    max_rows: int = 5_000_000,
    max_columns: int = 10_000,
    keep_cells: int | None = KEEP_CELLS,
    seed: int = 0,
) -> tuple[pd.DataFrame, int]:
    """`read_table` for uploads of any size: (the table, or a sample of its rows; its number of data rows).

    Every row is checked (shape, encoding), but when the table has more than `KEEP_ROWS` rows or
    `keep_cells` cells only a seeded uniform sample of that many rows (at least `KEEP_MIN_ROWS`) is parsed,
    in file order, so memory stays at the file's bytes plus a bounded sample whatever the upload's size. The
    bytes are scanned in blocks and never decoded whole.
    """
    data = _read_bytes(source)
    encoding = text_encoding(data, name, what="a text table")
    if not _NON_BLANK.search(data, 3 if encoding == "utf-8-sig" and data.startswith(codecs.BOM_UTF8) else 0):
        raise InvalidArgument(f"{name}: the file is empty")
    delimiter = _sniff_delimiter(_head_text(data, encoding))
    width, rows = _check_shape(data, encoding, delimiter, name=name, max_rows=max_rows, max_columns=max_columns)
    keep = rows if keep_cells is None else min(KEEP_ROWS, max(KEEP_MIN_ROWS, keep_cells // width))
    if rows > keep:
        chosen = np.sort(np.random.default_rng(seed).choice(rows, size=keep, replace=False))
        table: io.BytesIO | io.StringIO = _sampled_records(data, encoding, delimiter, chosen)
        read_encoding = encoding if isinstance(table, io.BytesIO) else None
    else:
        table, read_encoding = io.BytesIO(data), encoding  # shares the bytes, no copy
    try:
        df = pd.read_csv(
            table,
            sep=delimiter,
            encoding=read_encoding,
            skipinitialspace=True,
            na_values=list(_MISSING_TOKENS),
            index_col=False,
            low_memory=False,
        )
    except pd.errors.ParserError as exc:  # the shape check passed, so this is a quoting corner case
        raise InvalidArgument(f"{name}: {str(exc).splitlines()[0]}") from exc
    df = _clean(df)
    if not df.notna().to_numpy().any():
        raise InvalidArgument(f"{name}: no usable values (every cell is empty, NaN or inf)")
    return df, rows


def _read_bytes(source: str | os.PathLike[str] | bytes | BinaryIO) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as handle:
            return handle.read()
    return source.read()


def _head_text(data: bytes, encoding: str) -> str:
    """The first whole lines of the table (about `_SNIFF_CHARS` bytes) as text, for the delimiter sniffer."""
    head = data[: _SNIFF_CHARS + 1]
    if len(data) > _SNIFF_CHARS:
        head = head[: head.rfind(b"\n") + 1] or head
    return head.decode(encoding, errors="replace")  # a cut multi-byte character cannot matter to a delimiter


def _sniff_delimiter(sample: str) -> str:
    """The delimiter that splits the first rows into the most fields, consistently.

    Our own rule rather than `csv.Sniffer`, whose guesses on short or numeric samples are erratic. When no
    delimiter is consistent, the one giving the widest header wins, so the ragged-row message that follows
    speaks of the delimiter the user most likely meant.
    """

    def fit(delimiter: str) -> tuple[bool, int]:
        reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter, skipinitialspace=True)
        try:
            rows = [row for row in itertools.islice(reader, 2 * _SNIFF_ROWS) if row][:_SNIFF_ROWS]
        except csv.Error:
            return False, 0
        if not rows:
            return False, 0
        width = len(rows[0])
        return width > 1 and all(len(row) == width for row in rows), width

    return max(_DELIMITERS, key=fit)


def _check_shape(
    data: bytes, encoding: str, delimiter: str, *, name: str, max_rows: int, max_columns: int
) -> tuple[int, int]:
    """(columns, data rows); refuses a table whose rows do not all have the header's width, naming the first.

    pandas fills short rows with NaN silently and numbers long ones by a count that skips blank lines, so
    field counts are checked here, against the file's own line numbers.
    """
    width = rows = 0
    ragged: tuple[int, int] | None = None  # the first row of another width: (line, fields)
    for line, fields, _ in _records(data, encoding, delimiter, name):
        if not width:
            width = fields
            if width > max_columns:
                raise ResourceExhausted(f"{name}: {width:,} columns, more than the limit of {max_columns:,}")
            if width < 2:
                header = _head_text(data, encoding).strip().split("\n", 1)[0].strip()
                raise InvalidArgument(
                    f"{name}: only one column ({header!r}); a table needs at least two "
                    "(looked for a , ; tab or | delimiter)"
                )
            continue
        rows += 1
        if fields != width and ragged is None:
            ragged = line, fields
    if not width:  # only quoted blanks
        raise InvalidArgument(f"{name}: the file is empty")
    if rows == 0:
        raise InvalidArgument(f"{name}: no data rows after the header")
    if rows > max_rows:
        raise ResourceExhausted(f"{name}: {rows:,} rows, more than the limit of {max_rows:,}")
    if ragged is not None:
        noun = "field" if ragged[1] == 1 else "fields"
        raise InvalidArgument(f"{name}: row {ragged[0]} has {ragged[1]} {noun}, the header has {width}")
    return width, rows


def _records(data: bytes, encoding: str, delimiter: str, name: str) -> Iterator[tuple[int, int, bytes | list[str]]]:
    """(1-based line number, field count, the record) of each non-blank record, header first.

    pandas skips blank lines, so these are what it reads. Without quotes or bare CRs a record is a line and
    its field count a delimiter count on the bytes (ASCII delimiters read the same in every accepted
    encoding), about six times faster than the csv module, which handles the general case (quoted
    delimiters and line breaks; the number is then the record's last line). Blocks at a time: a large
    upload is never split into lines whole.
    """
    if b'"' not in data and data.count(b"\r") == data.count(b"\r\n"):
        separator = delimiter.encode()
        number = 0
        for block in _line_blocks(data):
            lines = block.split(b"\n")
            if block.endswith(b"\n"):
                lines.pop()
            for line in lines:
                number += 1
                fields = line.count(separator) + 1
                if fields > 1 or line.strip():
                    yield number, fields, line
        return
    text = io.TextIOWrapper(io.BytesIO(data), encoding=encoding, newline="")
    reader = csv.reader(text, delimiter=delimiter, skipinitialspace=True, strict=True)
    try:
        for row in reader:
            if row and (len(row) > 1 or row[0].strip()):
                yield reader.line_num, len(row), row
    except csv.Error as exc:
        raise InvalidArgument(f"{name}: line {reader.line_num}: {exc}") from exc


def _line_blocks(data: bytes, size: int = 1 << 22) -> Iterator[bytes]:
    """`data` in pieces of about `size` bytes, each ending at a line break (the last one may not)."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", start + size)
        end = len(data) if end < 0 else end + 1
        yield data[start:end]
        start = end


def _sampled_records(data: bytes, encoding: str, delimiter: str, chosen: np.ndarray) -> io.BytesIO | io.StringIO:
    """The header and the data records at the sorted indices `chosen`, as a table pandas can read."""
    wanted = iter(chosen.tolist())
    target = next(wanted, -1)
    header: bytes | list[str] | None = None
    kept: list[bytes | list[str]] = []
    for index, (_, _, record) in enumerate(_records(data, encoding, delimiter, "")):
        if header is None:
            header = record
            continue
        if index - 1 == target:
            kept.append(record)
            target = next(wanted, -1)
    if isinstance(header, bytes):
        return io.BytesIO(b"\n".join([header, *(r for r in kept if isinstance(r, bytes))]))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header or [])
    writer.writerows(r for r in kept if isinstance(r, list))
    out.seek(0)
    return out


def _clean(df: pd.DataFrame) -> pd.DataFrame:
    """Strip text cells, read missing tokens as NaN, numbers that were padded as numbers, ±inf as NaN."""
    columns: dict[str, pd.Series] = {}
    for column in df.columns:
        values = df[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            values = values.replace([np.inf, -np.inf], np.nan)
        elif pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
            values = values.str.strip()
            values = values.mask(values.isin(_MISSING_TOKENS))
            with contextlib.suppress(ValueError, TypeError):  # else genuinely text: a categorical column
                values = pd.to_numeric(values).replace([np.inf, -np.inf], np.nan)
        columns[column] = values
    return pd.DataFrame(columns, index=df.index)


# ----------------------------------------------------------------------------------------------- target


def infer_target(df: pd.DataFrame, target: str | None, *, name: str) -> str:
    """The classification target: the column named `target`, else one named like a label, else the last.

    A named target matches exactly, else case- and padding-insensitively when that is unambiguous. The
    target must have 2..min(1000, rows/2) distinct values, or it is not something a classifier can learn.
    """
    columns = [str(column) for column in df.columns]
    if target is not None:
        column = _find_column(columns, target, name)
        how = ""
    else:
        by_name = {c.strip().lower(): c for c in reversed(columns)}  # reversed: the first match wins
        column = next((by_name[t] for t in _TARGET_NAMES if t in by_name), columns[-1])
        reason = "of its name" if column.strip().lower() in _TARGET_NAMES else "it is the last column"
        how = f" (taken as the target because {reason}; name the target to choose another)"
    values = df[column].dropna()
    limit = max(2, min(_MAX_CLASSES, len(df) // 2))
    distinct = values.nunique()
    if distinct == 0:
        raise InvalidArgument(f"{name}: column {column!r} is empty; a classification target needs classes{how}")
    if distinct == 1:
        raise InvalidArgument(f"{name}: column {column!r} has only one class ({values.iloc[:1].tolist()[0]!r}){how}")
    if distinct > limit:
        raise InvalidArgument(
            f"{name}: column {column!r} has {distinct:,} distinct values; "
            f"a classification target needs 2-{limit:,}{how}"
        )
    return column


def _find_column(columns: list[str], target: str, name: str) -> str:
    if target in columns:
        return target
    loose = [c for c in columns if c.strip().lower() == target.strip().lower()]
    if len(loose) == 1:
        return loose[0]
    shown = ", ".join(repr(c) for c in columns[:8])
    more = f", … ({len(columns):,} in all)" if len(columns) > 8 else ""
    raise InvalidArgument(f"{name}: no column {target!r}; the columns are {shown}{more}")


# ----------------------------------------------------------------------------------------------- features


def feature_columns(df: pd.DataFrame, target: str) -> tuple[list[str], list[str]]:
    """Numeric and categorical feature columns, as the features and the library's pipelines both see them.

    A bool column counts as categorical: its two values are labels, not magnitudes.
    """
    numeric: list[str] = []
    categorical: list[str] = []
    for column in df.columns:
        if column == target:
            continue
        values = df[column]
        is_number = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        (numeric if is_number else categorical).append(column)
    return numeric, categorical


def stratified_sample(codes: np.ndarray, size: int, seed: int, *, min_per_class: int = 20) -> np.ndarray:
    """Sorted indices of a seeded sample of about `size` labelled rows (code >= 0) that keeps every class.

    A uniform draw is proportional to the class shares in expectation; classes it left with fewer than
    min(count, min_per_class) rows are topped up, so a rare class survives sampling. The cost is
    O(size) plus a few vectorised passes over `codes`, never a sort of the whole table.
    """
    labelled = np.flatnonzero(codes >= 0)
    if len(labelled) <= size:
        return labelled
    rng = np.random.default_rng(seed)
    chosen = rng.choice(labelled, size=size, replace=False)
    counts = np.bincount(codes[labelled])
    missing = np.minimum(counts, min_per_class) - np.bincount(codes[chosen], minlength=len(counts))
    if (missing > 0).any():
        taken = np.zeros(len(codes), dtype=bool)
        taken[chosen] = True
        short = np.append(missing > 0, False)  # index -1 (unlabelled) maps to the appended False
        extra = rng.permutation(np.flatnonzero(short[codes] & ~taken))
        rank = pd.Series(codes[extra]).groupby(codes[extra]).cumcount().to_numpy()
        chosen = np.concatenate([chosen, extra[rank < missing[codes[extra]]]])
    return np.sort(chosen)


def tabular_features(
    df: pd.DataFrame, target: str, *, sample_rows: int = 50_000, seed: int = 0, table_rows: int | None = None
) -> dict[str, float]:
    """Meta-features of a classification table, keyed by `FEATURE_NAMES`: all finite, deterministic per seed.

    Sizes and class shares are exact (`table_rows` is the whole table's row count when `df` is a uniform
    sample of it, from `read_table_sample`; the class shares are then the sample's); everything else comes
    from a stratified sample of at most `sample_rows` rows (fewer for very wide tables) and at most 100
    seeded feature columns. The three landmarkers are the mean balanced accuracy (the library's metric) of
    1-NN, a decision stump and Gaussian naive Bayes under 3-fold CV on at most 2,000 rows; where they
    cannot be run (no class has 3 rows) they take the chance level 1/n_classes.
    """
    if target not in df.columns:
        raise InvalidArgument(f"no column {target!r} to use as the target")
    numeric, categorical = feature_columns(df, target)
    n_features = len(numeric) + len(categorical)
    if n_features == 0:
        raise InvalidArgument(f"no feature columns besides the target {target!r}")
    codes, _ = pd.factorize(df[target])
    if not (codes >= 0).any():
        raise InvalidArgument(f"the target column {target!r} has no values")
    counts = np.bincount(codes[codes >= 0])
    shares = counts / counts.sum()
    n_classes = len(counts)
    chance = 1.0 / n_classes

    rng = np.random.default_rng(seed)
    budget = min(sample_rows, max(_LANDMARK_ROWS, _SAMPLE_CELLS // n_features))
    rows = stratified_sample(codes, budget, seed)
    sample = df.iloc[rows]
    y = np.unique(codes[rows], return_inverse=True)[1]
    missing = sample[numeric + categorical].isna().to_numpy()

    described_num, described_cat = _pick_columns(numeric, categorical, rng)
    scaled = _scaled_matrix(sample, described_num)
    varying = _varying(scaled)
    binned = [_quantile_codes(column) for column in scaled.T]
    levels = [_level_codes(sample[column]) for column in described_cat]
    mi_shares = _mutual_info_shares(binned + levels, y)
    landmarks = _landmarks(scaled, levels, y, seed=seed, chance=chance)
    skew, kurtosis = _moments(scaled[:, varying])
    cardinality = [math.log10(1 + sample[column].nunique()) for column in described_cat]

    n_rows = max(len(df) if table_rows is None else table_rows, 1)
    features = {
        "log_rows": math.log10(n_rows),
        "log_features": math.log10(n_features),
        "log_rows_per_feature": math.log10(n_rows / n_features),
        "n_classes": float(n_classes),
        "class_entropy": _entropy(shares) / math.log(n_classes) if n_classes > 1 else 0.0,
        "minority_share": float(shares.min()),
        "majority_share": float(shares.max()),
        "share_numeric": len(numeric) / n_features,
        "share_categorical": len(categorical) / n_features,
        "share_missing": float(missing.mean()),
        "share_rows_with_missing": float(missing.any(axis=1).mean()),
        "mean_abs_skew": skew,
        "mean_kurtosis": kurtosis,
        "mean_abs_corr": _mean_abs_corr(scaled[:, varying], rng),
        "mean_cardinality_categorical": float(np.mean(cardinality)) if cardinality else 0.0,
        "max_mutual_info_share": float(mi_shares.max()) if len(mi_shares) else 0.0,
        "mean_mutual_info_share": float(mi_shares.mean()) if len(mi_shares) else 0.0,
        "landmark_1nn": landmarks[0],
        "landmark_stump": landmarks[1],
        "landmark_naive_bayes": landmarks[2],
    }
    return {key: float(features[key]) for key in FEATURE_NAMES}


def _pick_columns(numeric: list[str], categorical: list[str], rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """At most `_DESCRIBED_COLUMNS` feature columns, drawn with the seed, each list in table order."""
    columns = numeric + categorical
    if len(columns) <= _DESCRIBED_COLUMNS:
        return numeric, categorical
    keep = set(rng.choice(len(columns), size=_DESCRIBED_COLUMNS, replace=False).tolist())
    return (
        [c for i, c in enumerate(numeric) if i in keep],
        [c for i, c in enumerate(categorical, start=len(numeric)) if i in keep],
    )


def _scaled_matrix(sample: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The numeric columns as floats divided by their largest magnitude (NaN for missing).

    Every statistic taken from it is scale-invariant, and values in [-1, 1] cannot overflow in a 4th power.
    """
    matrix = sample[columns].to_numpy(dtype=float, na_value=np.nan, copy=True)
    matrix[~np.isfinite(matrix)] = np.nan
    scale = np.abs(np.where(np.isnan(matrix), 0.0, matrix)).max(axis=0, initial=0.0)
    return matrix / np.where(scale > 0, scale, 1.0)


def _varying(matrix: np.ndarray) -> np.ndarray:
    """Columns with at least two distinct present values (the others have no shape to describe)."""
    present = ~np.isnan(matrix)
    high = np.where(present, matrix, -np.inf).max(axis=0, initial=-np.inf)
    low = np.where(present, matrix, np.inf).min(axis=0, initial=np.inf)
    return high > low


def _moments(matrix: np.ndarray) -> tuple[float, float]:
    """Mean |skewness| and mean excess kurtosis over columns, clipped so one wild column cannot dominate."""
    if matrix.shape[1] == 0:
        return 0.0, 0.0
    present = ~np.isnan(matrix)
    count = present.sum(axis=0)
    mean = np.where(present, matrix, 0.0).sum(axis=0) / count
    deviation = np.where(present, matrix - mean, 0.0)
    m2 = (deviation**2).sum(axis=0) / count
    m3 = (deviation**3).sum(axis=0) / count
    m4 = (deviation**4).sum(axis=0) / count
    skew = np.clip(np.abs(m3 / m2**1.5), 0.0, _SKEW_CLIP)
    kurtosis = np.clip(m4 / m2**2 - 3.0, -3.0, _KURTOSIS_CLIP)
    return float(skew.mean()), float(kurtosis.mean())


def _mean_abs_corr(matrix: np.ndarray, rng: np.random.Generator) -> float:
    """Mean |Pearson r| over pairs of at most 64 columns and 10,000 rows; missing cells count as the mean."""
    n_rows, n_columns = matrix.shape
    if n_columns < 2:
        return 0.0
    if n_columns > _CORR_COLUMNS:
        matrix = matrix[:, np.sort(rng.choice(n_columns, size=_CORR_COLUMNS, replace=False))]
    if n_rows > _CORR_ROWS:
        matrix = matrix[np.sort(rng.choice(n_rows, size=_CORR_ROWS, replace=False))]
    # C order: this OpenBLAS takes ~100x longer on the transposed product of a Fortran-ordered array.
    standard = np.ascontiguousarray(_standardise(matrix))
    corr = standard.T @ standard / len(standard)
    upper = np.triu_indices(corr.shape[0], k=1)
    return float(np.clip(np.abs(corr[upper]), 0.0, 1.0).mean())


def _standardise(matrix: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per column; missing cells become 0 (the mean), constant columns all 0."""
    present = ~np.isnan(matrix)
    count = np.maximum(present.sum(axis=0), 1)
    mean = np.where(present, matrix, 0.0).sum(axis=0) / count
    deviation = np.where(present, matrix - mean, 0.0)
    std = np.sqrt((deviation**2).sum(axis=0) / count)
    return deviation / np.where(std > 0, std, 1.0)


def _quantile_codes(column: np.ndarray) -> np.ndarray:
    """Decile bins of a numeric column (ties merge bins); missing values get a bin of their own."""
    present = ~np.isnan(column)
    if not present.any():
        return np.zeros(len(column), dtype=np.intp)
    edges = np.unique(np.quantile(column[present], np.linspace(0, 1, _MI_BINS + 1)[1:-1]))
    return np.where(present, np.searchsorted(edges, column, side="right"), len(edges) + 1)


def _level_codes(values: pd.Series) -> np.ndarray:
    """The most frequent levels of a categorical column as codes 0..19, the rest as 20, missing as 21."""
    codes, _ = pd.factorize(values)
    counts = np.bincount(codes[codes >= 0])
    top = np.argsort(-counts, kind="stable")[:_TOP_LEVELS]
    remap = np.full(len(counts) + 1, _TOP_LEVELS)  # the extra slot is for code -1 (missing)
    remap[top] = np.arange(len(top))
    remap[-1] = _TOP_LEVELS + 1
    return remap[codes]


def _entropy(shares: np.ndarray) -> float:
    shares = shares[shares > 0]
    return float(-(shares * np.log(shares)).sum())


def _mutual_info_shares(columns: list[np.ndarray], y: np.ndarray) -> np.ndarray:
    """Each coded column's mutual information with the target, as a share of the target's entropy."""
    n_classes = int(y.max()) + 1
    target_entropy = _entropy(np.bincount(y) / len(y))
    if target_entropy == 0 or not columns:
        return np.zeros(len(columns))
    shares = []
    for codes in columns:
        joint = np.bincount(codes * n_classes + y, minlength=(int(codes.max()) + 1) * n_classes)
        p = joint.reshape(-1, n_classes) / len(y)
        expected = p.sum(axis=1, keepdims=True) * p.sum(axis=0, keepdims=True)
        nonzero = p > 0
        information = float((p[nonzero] * np.log(p[nonzero] / expected[nonzero])).sum())
        shares.append(min(max(information / target_entropy, 0.0), 1.0))
    return np.array(shares)


def _landmarks(
    scaled: np.ndarray, levels: list[np.ndarray], y: np.ndarray, *, seed: int, chance: float
) -> tuple[float, float, float]:
    """Balanced accuracy of 1-NN, a stump and Gaussian NB (3-fold CV, ≤2,000 rows); chance where futile.

    Numerics are median-imputed and standardised, categoricals one-hot encoded on their top levels.
    Classes with fewer rows than folds are left out: they cannot be stratified.
    """
    rows = stratified_sample(y, _LANDMARK_ROWS, seed, min_per_class=_LANDMARK_FOLDS)
    counts = np.bincount(y[rows])
    rows = rows[counts[y[rows]] >= _LANDMARK_FOLDS]
    if len(np.unique(y[rows])) < 2:
        return chance, chance, chance
    numeric = scaled[rows]
    medians = np.zeros(numeric.shape[1])
    for j, column in enumerate(numeric.T):
        present = column[~np.isnan(column)]
        medians[j] = np.median(present) if len(present) else 0.0
    numeric = np.where(np.isnan(numeric), medians, numeric)
    one_hot = [np.eye(int(codes.max()) + 1)[codes[rows]] for codes in levels]
    x = np.hstack([_standardise(numeric), *one_hot])
    if not (x.std(axis=0) > 0).any():  # nothing varies: nothing to learn, and NB's variances would be 0
        return chance, chance, chance
    # scikit-learn takes a second to import: only here, not for the other modalities' use of this module.
    from sklearn.model_selection import StratifiedKFold
    from sklearn.naive_bayes import GaussianNB
    from sklearn.tree import DecisionTreeClassifier

    target = y[rows]
    scores = np.zeros(3)
    # The tree's own dtype, converted once: its input checks (what `fit` would convert) were a third of the
    # features' time on a 10k-row upload, for the same tree.
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    folds = StratifiedKFold(n_splits=_LANDMARK_FOLDS, shuffle=True, random_state=seed)
    for train, test in folds.split(x, target):
        stump = DecisionTreeClassifier(max_depth=1, random_state=seed)
        stump.fit(x32[train], target[train], check_input=False)
        predictions = (
            _nearest_neighbour(x[train], target[train], x[test]),
            stump.predict(x32[test], check_input=False),
            GaussianNB().fit(x[train], target[train]).predict(x[test]),
        )
        for i, predicted in enumerate(predictions):
            scores[i] += _balanced_accuracy(target[test], predicted) / _LANDMARK_FOLDS
    return float(scores[0]), float(scores[1]), float(scores[2])


def _balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """scikit-learn's `balanced_accuracy_score` on integer labels, the same arithmetic without its input checks
    (~10 ms a call, nine calls a table): the mean recall over the classes of `truth`."""
    labels, codes = np.unique(np.concatenate([truth, predicted]), return_inverse=True)
    n = len(labels)
    confusion = np.bincount(codes[: len(truth)] * n + codes[len(truth) :], minlength=n * n).reshape(n, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_class = np.diagonal(confusion) / confusion.sum(axis=1)
    return float(np.mean(per_class[~np.isnan(per_class)]))


def _nearest_neighbour(train: np.ndarray, labels: np.ndarray, test: np.ndarray) -> np.ndarray:
    """1-NN labels by squared Euclidean distance, exact ties going to the first training row.

    Plain numpy rather than KNeighborsClassifier, whose OpenMP kernel stalls on cores shared with other
    work, and whose tie-breaking is not specified.
    """
    train, test = np.ascontiguousarray(train), np.ascontiguousarray(test)  # see _mean_abs_corr on BLAS and order
    # |train|² - 2 test·train (+ |test|², the same per row), built in place: the same numbers (negation and
    # addition in either order are exact) without three temporaries of test x train.
    distances = test @ train.T
    distances *= -2.0
    distances += (train**2).sum(axis=1)[None, :]
    # Rounded, so exact ties (common in discrete data) stay ties whatever the BLAS summation order.
    return labels[np.round(distances, 9, out=distances).argmin(axis=1)]
