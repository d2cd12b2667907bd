"""Library bundles: the exchange format of model libraries (see design.md, "Library bundle").

A bundle is a folder, or a .zip / .tar.gz / .tar of one, holding `library.yaml`, `models.csv`,
`datasets.csv`, `interactions.csv` and optionally `dataset_similarity.csv`, `probes.csv`,
`probe_records.csv` (the library's metric measured the way a search's probe measures it: on a sample),
`dataset_features/*.csv` and `artifacts/`. `read_bundle` validates everything before anything is used:
a bad bundle raises `InvalidArgument` naming the file, line and column. Archives and folders are read by
`modsnet.data.archive` (in memory, never extracted, with limits on member count, unpacked size and
expansion), so a zip bomb, a link or a `../` path cannot reach the disk.

`interactions.csv`, the one file that grows to millions of rows, is checked in one streaming pass and
kept as its bytes (`CsvRows`: rows parsed again on each pass), never as a dict per row. Cells are kept as
the strings the files hold; numeric columns are checked (finite numbers) and parsed on
use. `write_bundle` and `pack_bundle` write the canonical form (rows sorted by key, fixed column order),
deterministically, so exporting the same library twice gives the same bytes.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
import re
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import yaml

from modsnet.data.archive import ArchiveLimits, Folder, archive_kind, open_archive, read_all
from modsnet.data.probe_scale import META_KEY as PROBE_SCALE_KEY
from modsnet.data.probe_scale import ProbeScale, bundle_probe_scale
from modsnet.runtime.errors import InvalidArgument

MODALITIES = ("tabular", "text", "image", "xrd", "other")
COST_COLUMNS = ("train_seconds", "inference_seconds", "memory_bytes")
# Optional interactions.csv columns that feedback fills: exported only when some row has a value.
FEEDBACK_COLUMNS = ("provenance", *COST_COLUMNS, "request_id", "quarantine")
MAX_MEMBERS = 20_000
MAX_UNPACKED_BYTES = 2 * 1024**3
MAX_EXPANSION = 200  # times a member may expand; see modsnet.data.archive
MAX_CELL_CHARS = 100_000
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_FEATURES_DIR = "dataset_features"
PROBE_RECORDS = "probe_records.csv"  # optional: dataset_id, model_id, score, rows (of the probe's sample)
_ARTIFACTS_DIR = "artifacts"

csv.field_size_limit(MAX_CELL_CHARS)


@dataclass
class Table:
    """One CSV file of a bundle: its column order and its rows (cells as strings)."""

    file: str
    columns: list[str]
    rows: list[dict[str, str]]

    def widened(self) -> Table:
        """The table with a column for every cell its rows have (rows added by feedback may bring new ones)."""
        known = set(self.columns)
        for row in self.rows:
            for column in row:
                if column not in known:
                    known.add(column)
                    self.columns = [*self.columns, column]
        return self

    def column_values(self, column: str) -> list[str]:
        return [row.get(column, "") for row in self.rows]


class CsvRows(Sequence[dict[str, str]]):
    """The rows of one CSV member, parsed again on each pass instead of kept: a million rows as dicts take
    about 700 MB, the file's bytes about 60 MB. Read by `read_bundle` for `interactions.csv`, after the
    whole file was checked (`_stream_interactions`), so every pass yields rows known to be valid.

    Iterating streams; indexing (rare: a test, a sort for export) parses once and keeps the list.
    """

    def __init__(self, data: bytes, header: list[str], count: int):
        self._data = data
        self._header = header
        self._count = count
        self._kept: list[dict[str, str]] | None = None

    def __len__(self) -> int:
        return self._count

    @property
    def header(self) -> list[str]:
        return self._header

    @property
    def data(self) -> bytes:
        return self._data

    def __iter__(self) -> Iterator[dict[str, str]]:
        if self._kept is not None:
            yield from self._kept
            return
        header = self._header
        for cells in _csv_cells(self._data):
            yield {h: c.strip() for h, c in zip(header, cells, strict=True)}

    def __getitem__(self, index):  # type: ignore[no-untyped-def]  # int or slice, as a list
        if self._kept is None:
            self._kept = list(self)
        return self._kept[index]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # as a list


def _csv_cells(data: bytes) -> Iterator[list[str]]:
    """The data rows of a checked CSV file (header and blank lines skipped), decoded as they are read."""
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    next(reader, None)
    for cells in reader:
        if cells and not (len(cells) == 1 and not cells[0].strip()):
            yield cells


@dataclass
class Bundle:
    meta: dict[str, Any]
    models: Table
    datasets: Table
    interactions: Table
    similarity: Table | None = None
    probes: Table | None = None
    features: dict[str, Table] = field(default_factory=dict)  # feature file stem -> table
    artifacts: dict[str, bytes] = field(default_factory=dict)  # path under artifacts/ -> content
    probe_records: Table | None = None  # PROBE_RECORDS: scores measured as a search's probe measures them

    @property
    def name(self) -> str:
        return str(self.meta["name"])


# ----------------------------------------------------------------------------------------------------
# Reading


def read_bundle(source: str | os.PathLike[str] | bytes | BinaryIO, *, label: str = "bundle") -> Bundle:
    """Read and validate a bundle from a folder path, an archive path, archive bytes or a binary file."""
    files = _load_members(source, label)
    return parse_members(files)


def stored_probe_records(source: bytes, *, label: str = "bundle") -> Table | None:
    """The `probe_records.csv` of a bundle already imported whole (so checked then), without reading the rest: what
    an export takes back from the import's bundle, since the stores keep the learned scale, not these rows."""
    files = _strip_common_root(_load_members(source, label))
    if PROBE_RECORDS not in files:
        return None
    return _read_csv(PROBE_RECORDS, files[PROBE_RECORDS], required=("dataset_id", "model_id", "score", "rows"))


def parse_members(files: Mapping[str, bytes]) -> Bundle:
    """Validate a bundle given its members (relative path -> bytes)."""
    files = _strip_common_root(files)
    for required in ("library.yaml", "models.csv", "datasets.csv", "interactions.csv"):
        if required not in files:
            present = ", ".join(sorted(files)[:8]) or "nothing"
            raise InvalidArgument(f"bundle: {required} is missing (found: {present})")
    meta = _parse_meta(files["library.yaml"])
    models = _read_csv("models.csv", files["models.csv"], required=("model_id",))
    datasets = _read_csv("datasets.csv", files["datasets.csv"], required=("dataset_id",))
    model_ids = _unique_ids(models, "model_id")
    dataset_ids = _unique_ids(datasets, "dataset_id")
    if "features" in datasets.columns:
        _check_feature_cells(datasets)

    interactions = _stream_interactions(files["interactions.csv"], model_ids, dataset_ids, meta)

    similarity = None
    if "dataset_similarity.csv" in files:
        similarity = _read_csv(
            "dataset_similarity.csv", files["dataset_similarity.csv"], required=("dataset_a", "dataset_b")
        )
        measure = [c for c in ("distance", "similarity") if c in similarity.columns]
        if not measure:
            raise InvalidArgument("dataset_similarity.csv: needs a 'distance' or a 'similarity' column")
        _check_refs(similarity, "dataset_a", dataset_ids, "datasets.csv")
        _check_refs(similarity, "dataset_b", dataset_ids, "datasets.csv")
        _check_numbers(similarity, measure, required=True)

    probes = None
    if "probes.csv" in files:
        probes = _read_csv("probes.csv", files["probes.csv"], required=("model_id", "dataset_id", "probe", "value"))
        _check_refs(probes, "model_id", model_ids, "models.csv")
        _check_refs(probes, "dataset_id", dataset_ids, "datasets.csv")
        _check_numbers(probes, ["value"], required=True)
        if "seconds" in probes.columns:
            _check_numbers(probes, ["seconds"], non_negative=True)

    probe_records = None
    if PROBE_RECORDS in files:
        probe_records = _read_probe_records(files[PROBE_RECORDS], model_ids, dataset_ids, meta)
        # The library's probe-to-record scale, learned here so every reader (knowledge, the recommender through
        # the library's metadata, the evaluation) has it; records that teach nothing leave the library without.
        wanted = {(row["dataset_id"], row["model_id"]) for row in probe_records.rows}
        scale = bundle_probe_scale(probe_records.rows, _pair_scores(interactions, wanted), models.rows)
        meta.pop(PROBE_SCALE_KEY, None)
        if scale is not None:
            meta[PROBE_SCALE_KEY] = scale.to_meta()

    features: dict[str, Table] = {}
    for path in sorted(files):
        parts = PurePosixPath(path).parts
        if len(parts) == 2 and parts[0] == _FEATURES_DIR and parts[1].endswith(".csv"):
            table = _read_csv(path, files[path], required=("dataset_id",))
            _unique_ids(table, "dataset_id")
            _check_refs(table, "dataset_id", dataset_ids, "datasets.csv")
            _check_numbers(table, [c for c in table.columns if c != "dataset_id"])
            features[PurePosixPath(path).stem] = table

    artifacts = {
        path[len(_ARTIFACTS_DIR) + 1 :]: data
        for path, data in files.items()
        if path.startswith(_ARTIFACTS_DIR + "/") and not path.endswith("/")
    }
    if "artifact" in models.columns:
        for line, row in _numbered(models):
            ref = row.get("artifact", "")
            if ref and ref not in artifacts:
                raise InvalidArgument(
                    f"models.csv line {line}, column 'artifact': {ref!r} is not a file under artifacts/"
                )
    return Bundle(meta, models, datasets, interactions, similarity, probes, features, artifacts, probe_records)


def _read_probe_records(data: bytes, model_ids: set[str], dataset_ids: set[str], meta: Mapping[str, Any]) -> Table:
    """`probe_records.csv`: one score per (dataset, model), in the metric's range, on a positive whole number of
    rows; a bad row refuses the bundle, naming the file, line and column."""
    table = _read_csv(PROBE_RECORDS, data, required=("dataset_id", "model_id", "score", "rows"))
    _check_refs(table, "model_id", model_ids, "models.csv")
    _check_refs(table, "dataset_id", dataset_ids, "datasets.csv")
    _check_numbers(table, ["score"], required=True)
    low, high = meta.get("metric_range", (-math.inf, math.inf))
    seen: dict[tuple[str, str], int] = {}
    for line, row in _numbered(table):
        score = float(row["score"])
        if not low <= score <= high:
            raise InvalidArgument(
                f"{PROBE_RECORDS} line {line}, column 'score': {row['score']!r} is outside the metric_range "
                f"[{low:g}, {high:g}] of library.yaml"
            )
        rows = number(row["rows"])
        if rows is None or rows < 1 or not float(rows).is_integer():
            raise InvalidArgument(
                f"{PROBE_RECORDS} line {line}, column 'rows': {row['rows']!r} is not a positive whole number"
            )
        key = (row["dataset_id"], row["model_id"])
        if key in seen:
            raise InvalidArgument(f"{PROBE_RECORDS} line {line}: ({key[0]!r}, {key[1]!r}) repeats line {seen[key]}")
        seen[key] = line
    return table


def _pair_scores(interactions: Table, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], float]:
    """The mean recorded score of each (dataset, model) pair in `wanted`, in one pass over the cells (no row dicts)."""
    rows = interactions.rows
    if isinstance(rows, CsvRows):
        at = [rows.header.index(c) for c in ("dataset_id", "model_id", "score")]
        triples: Iterable[tuple[str, str, str]] = (
            (cells[at[0]].strip(), cells[at[1]].strip(), cells[at[2]]) for cells in _csv_cells(rows.data)
        )
    else:
        triples = ((r["dataset_id"], r["model_id"], r["score"]) for r in rows)
    totals: dict[tuple[str, str], list[float]] = {}
    for dataset_id, model_id, score in triples:
        key = (dataset_id, model_id)
        if key in wanted:
            totals.setdefault(key, []).append(float(score))
    return {key: sum(values) / len(values) for key, values in totals.items()}


def _parse_meta(data: bytes) -> dict[str, Any]:
    try:
        meta = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidArgument(f"library.yaml: not valid YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:  # the YAML parser recurses once per level of nesting
        raise InvalidArgument("library.yaml: nests mappings or lists too deeply") from None
    if not isinstance(meta, dict):
        raise InvalidArgument("library.yaml: must be a mapping of keys to values")
    name = str(meta.get("name", "")).strip()
    if not _NAME.match(name):
        raise InvalidArgument(
            f"library.yaml, key 'name': {name!r} must be 1-64 lowercase letters, digits, '.', '_' or '-'"
        )
    modality = str(meta.get("modality", "")).strip()
    if modality not in MODALITIES:
        raise InvalidArgument(f"library.yaml, key 'modality': {modality!r} must be one of {', '.join(MODALITIES)}")
    if not str(meta.get("metric", "")).strip():
        raise InvalidArgument("library.yaml, key 'metric': missing (e.g. accuracy)")
    hib = meta.get("higher_is_better", True)
    if not isinstance(hib, bool):
        raise InvalidArgument(f"library.yaml, key 'higher_is_better': {hib!r} must be true or false")
    # Values are kept as JSON (the stores write them so): a YAML date or timestamp becomes its ISO text.
    meta = {str(k): _json_safe(v) for k, v in meta.items()}
    if "metric_range" in meta:
        meta["metric_range"] = _metric_range(meta["metric_range"])
    if PROBE_SCALE_KEY in meta:  # as an export writes it (the scale its probe_records.csv taught)
        try:
            meta[PROBE_SCALE_KEY] = ProbeScale.from_meta(meta[PROBE_SCALE_KEY]).to_meta()
        except ValueError as exc:
            raise InvalidArgument(f"library.yaml, key {PROBE_SCALE_KEY!r}: {exc}") from None
    meta.update(
        name=name,
        modality=modality,
        metric=str(meta["metric"]).strip(),
        higher_is_better=hib,
        task=str(meta.get("task", "classification")),
        version=str(meta.get("version", "1")),
        description=str(meta.get("description", "")),
        source=str(meta.get("source", "")),
    )
    return meta


def _metric_range(value: Any) -> list[float]:
    """`metric_range: [low, high]`: every score of the library's metric lies there (feedback outside is refused)."""
    bounds = value if isinstance(value, list) and len(value) == 2 else None
    numbers = [v for v in bounds or [] if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) != 2 or not all(math.isfinite(v) for v in numbers) or not numbers[0] < numbers[1]:
        raise InvalidArgument(
            f"library.yaml, key 'metric_range': {value!r} must be [low, high], two finite numbers, low < high"
        )
    return [float(numbers[0]), float(numbers[1])]


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _read_csv(file: str, data: bytes, *, required: Iterable[str]) -> Table:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{file}: not UTF-8 text (byte {exc.start})") from None
    if "\x00" in text:
        raise InvalidArgument(f"{file}: contains NUL bytes; not a CSV file")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = _header(file, next(reader, None), required)
        rows: list[dict[str, str]] = []
        for cells in reader:
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue  # blank line
            if len(cells) != len(header):
                raise InvalidArgument(
                    f"{file} line {reader.line_num}: {len(cells)} fields, the header has {len(header)}"
                )
            rows.append({h: c.strip() for h, c in zip(header, cells, strict=True)})
    except csv.Error as exc:
        raise InvalidArgument(f"{file} line {reader.line_num}: {exc}") from None
    return Table(file, header, rows)


def _stream_interactions(data: bytes, model_ids: set[str], dataset_ids: set[str], meta: Mapping[str, Any]) -> Table:
    """Check `interactions.csv` whole in one streaming pass, keeping no row: the checks (and messages) of
    `_read_csv`, `_check_refs`, `_check_numbers` and the metric range, row by row. Its rows are `CsvRows`."""
    file = "interactions.csv"
    if b"\x00" in data:
        raise InvalidArgument(f"{file}: contains NUL bytes; not a CSV file")
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    count = 0
    try:
        header = _header(file, next(reader, None), ("model_id", "dataset_id", "score"))
        at = {name: header.index(name) for name in ("model_id", "dataset_id", "score")}
        costs = [(c, header.index(c)) for c in COST_COLUMNS if c in header]
        low, high = meta.get("metric_range", (-math.inf, math.inf))
        width = len(header)
        for cells in reader:
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue  # blank line
            if len(cells) != width:
                raise InvalidArgument(f"{file} line {reader.line_num}: {len(cells)} fields, the header has {width}")
            count += 1
            line = count + 1  # as `_numbered` counts: the header is line 1, blank lines aside
            for column, known, where in (
                ("model_id", model_ids, "models.csv"),
                ("dataset_id", dataset_ids, "datasets.csv"),
            ):
                value = cells[at[column]].strip()
                if value not in known:
                    raise InvalidArgument(f"{file} line {line}, column {column!r}: {value!r} is not in {where}")
            cell = cells[at["score"]].strip()
            score = _finite(cell)
            if score is None:
                raise InvalidArgument(f"{file} line {line}, column 'score': {cell!r} is not a finite number")
            for column, k in costs:
                cell = cells[k].strip()
                if cell == "":
                    continue
                number = _finite(cell)
                if number is None:
                    raise InvalidArgument(f"{file} line {line}, column {column!r}: {cell!r} is not a finite number")
                if number < 0:
                    raise InvalidArgument(f"{file} line {line}, column {column!r}: {cell!r} is negative")
            if not low <= score <= high:
                raise InvalidArgument(
                    f"{file} line {line}, column 'score': {cells[at['score']].strip()!r} is outside the "
                    f"metric_range [{low:g}, {high:g}] of library.yaml"
                )
    except csv.Error as exc:
        raise InvalidArgument(f"{file} line {reader.line_num}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{file}: not UTF-8 text (near line {reader.line_num + 1}, {exc.reason})") from None
    return Table(file, header, CsvRows(data, header, count))  # type: ignore[arg-type]  # a sequence of rows


def _finite(cell: str) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _header(file: str, header: list[str] | None, required: Iterable[str]) -> list[str]:
    """The checked header row of a CSV member."""
    if not header:
        raise InvalidArgument(f"{file}: empty (a header row is required)")
    header = [h.strip() for h in header]
    for position, name in enumerate(header, start=1):
        if not name:
            raise InvalidArgument(f"{file} line 1: column {position} has an empty name")
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise InvalidArgument(f"{file} line 1: duplicate column(s) {', '.join(map(repr, duplicates))}")
    for name in required:
        if name not in header:
            raise InvalidArgument(f"{file} line 1: required column {name!r} is missing")
    return header


def _numbered(table: Table) -> Iterable[tuple[int, dict[str, str]]]:
    # Line numbers as a person sees them in the file: the header is line 1 (blank lines aside).
    return enumerate(table.rows, start=2)


def _unique_ids(table: Table, column: str) -> set[str]:
    seen: dict[str, int] = {}
    for line, row in _numbered(table):
        value = row[column]
        if not value:
            raise InvalidArgument(f"{table.file} line {line}, column {column!r}: empty id")
        if value in seen:
            raise InvalidArgument(f"{table.file} line {line}, column {column!r}: {value!r} repeats line {seen[value]}")
        seen[value] = line
    return set(seen)


def _check_refs(table: Table, column: str, known: set[str], where: str) -> None:
    for line, row in _numbered(table):
        if row[column] not in known:
            raise InvalidArgument(f"{table.file} line {line}, column {column!r}: {row[column]!r} is not in {where}")


def _check_numbers(table: Table, columns: Iterable[str], *, required: bool = False, non_negative: bool = False) -> None:
    for column in columns:
        for line, row in _numbered(table):
            cell = row.get(column, "")
            if cell == "" and not required:
                continue
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise InvalidArgument(f"{table.file} line {line}, column {column!r}: {cell!r} is not a finite number")
            if non_negative and value < 0:
                raise InvalidArgument(f"{table.file} line {line}, column {column!r}: {cell!r} is negative")


def _check_feature_cells(table: Table) -> None:
    """The `features` cell of a dataset that feedback added: a JSON object of feature name -> finite number."""
    for line, row in _numbered(table):
        cell = row.get("features", "")
        if not cell:
            continue
        try:
            value = json.loads(cell)
        except ValueError:
            value = None
        if not (
            isinstance(value, dict)
            and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value.values()
            )
        ):
            raise InvalidArgument(
                f"{table.file} line {line}, column 'features': must be a JSON object of names to finite numbers"
            )


def number(cell: str) -> float | None:
    """A checked numeric cell as float, or None when empty."""
    return float(cell) if cell not in ("", None) else None


# ----------------------------------------------------------------------------------------------------
# Archive handling


def _limits() -> ArchiveLimits:
    # Built per call, so a test (or an operator) can lower the module's limits.
    return ArchiveLimits(max_members=MAX_MEMBERS, max_unpacked_bytes=MAX_UNPACKED_BYTES, max_expansion=MAX_EXPANSION)


def _load_members(source: str | os.PathLike[str] | bytes | BinaryIO, label: str) -> dict[str, bytes]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return _folder_members(path)
        if not path.exists():
            raise InvalidArgument(f"{path}: no such file or folder")
        return _archive_members(path, str(path))
    return _archive_members(source, label)


def _folder_members(root: Path) -> dict[str, bytes]:
    return read_all(Folder(root, str(root), _limits()))


def _archive_members(source: Path | bytes | BinaryIO, label: str) -> dict[str, bytes]:
    if isinstance(source, Path):
        with open(source, "rb") as handle:
            head = handle.read(512)
    elif isinstance(source, bytes):
        head = source[:512]
    else:
        head = source.read(512)
        source.seek(-len(head), os.SEEK_CUR)
    if not archive_kind(head):
        raise InvalidArgument(f"{label}: not a bundle (expected a folder, a .zip or a .tar.gz archive)")
    with open_archive(source, label, _limits()) as archive:
        return read_all(archive)


def _strip_common_root(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """Accept archives that wrap the bundle in one top folder (as `tar czf lib.tgz lib/` makes)."""
    if "library.yaml" in files:
        return dict(files)
    roots = {PurePosixPath(p).parts[0] for p in files if len(PurePosixPath(p).parts) > 1}
    top_files = [p for p in files if len(PurePosixPath(p).parts) == 1]
    if len(roots) == 1 and not top_files:
        root = roots.pop()
        return {str(PurePosixPath(p).relative_to(root)): data for p, data in files.items()}
    return dict(files)


# ----------------------------------------------------------------------------------------------------
# Writing (canonical form)

_KEYS = {
    "models.csv": ("model_id",),
    "datasets.csv": ("dataset_id",),
    "interactions.csv": ("dataset_id", "model_id"),
    "dataset_similarity.csv": ("dataset_a", "dataset_b"),
    "probes.csv": ("dataset_id", "model_id", "probe"),
    PROBE_RECORDS: ("dataset_id", "model_id"),
}
_META_ORDER = ("name", "description", "modality", "task", "metric", "higher_is_better", "version", "source")


def canonical_number(cell: str) -> str:
    """One spelling per number (so '0.90' and '0.9' compare equal); other text unchanged."""
    try:
        value = float(cell)
    except ValueError:
        return cell
    if not math.isfinite(value):
        return cell
    if value.is_integer() and abs(value) < 1e15 and "." not in cell and "e" not in cell.lower():
        return str(int(value))
    return repr(value)


def _table_bytes(table: Table, numeric: Iterable[str] = ()) -> bytes:
    keys = _KEYS.get(table.file, ("dataset_id",))
    numeric = set(numeric)
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.columns)
    for row in sorted(table.rows, key=lambda r: tuple(r.get(k, "") for k in keys)):
        writer.writerow([canonical_number(row.get(c, "")) if c in numeric else row.get(c, "") for c in table.columns])
    return out.getvalue().encode("utf-8")


def check_dataset_rows(rows: list[dict[str, str]], where: str) -> None:
    """InvalidArgument unless `rows` (datasets added after import) would read back from a bundle's
    `datasets.csv` as written: checked by the reader itself, so export keeps round-tripping."""
    columns = list(dict.fromkeys(c for row in rows for c in row))
    data = _table_bytes(Table("datasets.csv", columns, rows))
    try:
        table = _read_csv("datasets.csv", data, required=("dataset_id",))
        _unique_ids(table, "dataset_id")
        if "features" in table.columns:
            _check_feature_cells(table)
        expected = [{c: row.get(c, "").strip() for c in columns} for row in sorted(rows, key=lambda r: r["dataset_id"])]
        if table.rows != expected:
            raise InvalidArgument("datasets.csv: a column name or cell would not read back as written")
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}: {exc.message}") from None


def bundle_members(bundle: Bundle) -> dict[str, bytes]:
    """The canonical files of a bundle (path -> bytes)."""
    meta = {k: bundle.meta[k] for k in _META_ORDER if k in bundle.meta}
    meta.update({k: v for k, v in sorted(bundle.meta.items()) if k not in meta})
    files = {
        "library.yaml": yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).encode("utf-8"),
        "models.csv": _table_bytes(bundle.models),
        "datasets.csv": _table_bytes(bundle.datasets),
        "interactions.csv": _table_bytes(bundle.interactions, ("score", *COST_COLUMNS)),
    }
    if bundle.similarity is not None:
        files["dataset_similarity.csv"] = _table_bytes(bundle.similarity, ("distance", "similarity"))
    if bundle.probes is not None:
        files["probes.csv"] = _table_bytes(bundle.probes, ("value", "seconds"))
    if bundle.probe_records is not None:
        files[PROBE_RECORDS] = _table_bytes(bundle.probe_records, ("score", "rows"))
    for stem, table in sorted(bundle.features.items()):
        files[f"{_FEATURES_DIR}/{stem}.csv"] = _table_bytes(table, [c for c in table.columns if c != "dataset_id"])
    for path, data in sorted(bundle.artifacts.items()):
        files[f"{_ARTIFACTS_DIR}/{path}"] = data
    return files


def write_bundle(bundle: Bundle, folder: str | os.PathLike[str]) -> Path:
    """Write the canonical bundle as a folder, atomically (a temp folder renamed into place)."""
    target = Path(folder)
    if target.exists() and any(target.iterdir()):
        raise InvalidArgument(f"{target}: exists and is not empty")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be shared
    for path, data in bundle_members(bundle).items():
        out = staging / path
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    if target.exists():
        target.rmdir()
    os.replace(staging, target)
    return target


def pack_members(files: Mapping[str, bytes]) -> bytes:
    """A deterministic .tar.gz of `files` (sorted, zero times and owners), so equal content hashes equal."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for path in sorted(files):
            data = files[path]
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def zip_members(files: Mapping[str, bytes]) -> bytes:
    """A deterministic .zip of `files` (sorted, fixed timestamps)."""
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(files):
            archive.writestr(zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0)), files[path])
    return raw.getvalue()


def pack_bundle(bundle: Bundle) -> bytes:
    return pack_members(bundle_members(bundle))


def pack_path(path: str | os.PathLike[str]) -> bytes:
    """The bytes to upload for a bundle path: an archive as it is, a folder packed (not validated here)."""
    source = Path(path)
    if source.is_dir():
        return pack_members(_folder_members(source))
    if not source.exists():
        raise InvalidArgument(f"{source}: no such file or folder")
    return source.read_bytes()


def canonical(bundle: Bundle) -> dict[str, bytes]:
    """Comparable form of a bundle: import -> export -> import must give equal canonical forms."""
    return bundle_members(bundle)
