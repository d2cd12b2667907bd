"""Exemplar uploads of every kind: find out what was uploaded, parse it safely, and describe it with features.

`load_exemplar` takes one file on disk (a spooled upload; the CLI zips a folder before sending it) or a
folder (library generators), decides its kind from its content first and its name second (the members
decide for an archive), and returns an `Exemplar` or raises `InvalidArgument` / `ResourceExhausted` with a
one-line message naming the file (and the member) and the problem, because that message goes straight
back to the person who uploaded it. Nothing is written anywhere while loading, so a refused upload leaves
nothing behind. `dataset_features` describes an exemplar with the per-modality functions of
`modsnet.features`, the very functions that describe the library datasets.

How the kind is decided, in order:
- magic bytes: a zip (an .xlsx workbook, a Rigaku .rasx or Bruker .brml scan by their members and name,
  else an archive whose members decide), Parquet, Bruker RAW v4, PNG/JPEG (one image), XML (a PANalytical
  .xrdml scan when it says `xrdMeasurement`), JSON Lines;
- plain text by name and shape: .xy/.xye (and .dat whose first data row holds 2-3 numbers) are two-column
  scans, a .txt whose first line has no delimiter is one text per line, anything else is a delimited table;
- a table (CSV/TSV/Parquet/Excel/JSONL) is a text corpus when a column is named like text (text, sentence,
  review, ...) or holds multi-word, mostly distinct strings that make up at least half of its characters;
- an archive or folder: its members are counted by kind (.png/.jpg/.jpeg images, .txt texts, scans) and the
  most numerous kind wins (a tie is refused); when it holds no such member, its one table is loaded.
- `modality` ("tabular", "text", "image", "xrd") overrides the guess where the content allows both
  readings (a CSV read as a table or as texts, an archive's members) and is refused where it does not.

Archives and folders are read member by member in memory by `modsnet.data.archive`: names that are absolute
or contain '..', links, encrypted members, more members than allowed, more unpacked bytes than allowed
(counted while inflating, not taken from the headers) and members that expand like a bomb are refused.
XML is checked with defusedxml for a DTD before any parser sees it, so entity expansion (billion laughs)
is refused after reading the prolog.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import tempfile
import warnings
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import defusedxml
import defusedxml.ElementTree as DefusedET
import numpy as np
import pandas as pd

from modsnet.data.archive import ZIP_MAGIC, ArchiveLimits, Budget, Folder, Members, ZipArchive, is_litter
from modsnet.data.text_decoding import decode_text
from modsnet.features import tabular
from modsnet.runtime.errors import InvalidArgument, ResourceExhausted

# A modality's parsers and feature extractors (Pillow, pyarrow, scipy, the XRD readers, ONNX Runtime and the
# tokenizer) take seconds to import: each is imported where its modality is first met, so a table search or
# a process that never parses anything does not pay for the others.
if TYPE_CHECKING:
    from PIL import Image

    from modsnet.features.xrd import Scan

__all__ = ["MODALITIES", "Exemplar", "Limits", "Scan", "dataset_features", "load_exemplar"]

MODALITIES = ("tabular", "text", "image", "xrd")
"""The kinds of exemplar, named as `library.yaml` names a library's modality."""

# The RAW parser logs a scope warning on every file: noise in a server log, not news about the upload.
logging.getLogger("fairmat_readers_xrd.bruker_raw_parser").setLevel(logging.ERROR)


def __getattr__(name: str) -> Any:
    if name == "Scan":  # re-exported, imported on first use (scipy)
        from modsnet.features.xrd import Scan

        return Scan
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Limits:
    """What one upload may hold; past any of these it is refused with RESOURCE_EXHAUSTED."""

    max_bytes: int = 1 << 30  # the file as uploaded
    max_rows: int = 5_000_000  # table rows, texts, scan points
    max_columns: int = 10_000
    max_images: int = 200_000
    max_members: int = 200_000  # files in an archive or folder (nested containers count too)
    max_unpacked_bytes: int = 4 << 30  # bytes inflated from archives, all members together
    max_image_pixels: int = 50_000_000  # one image, as decoded (Pillow's own bomb guard starts at 89 MP)
    # How many times a compressed archive member may expand. Real text and scans deflate 3-20x; a zip
    # bomb's members expand hundreds to thousands of times. Members under 1 MiB unpacked are exempt.
    max_expansion: int = 200
    # Images decoded (a stratified seeded sample): 0 is the features' sample; running a model decodes more.
    decode_images: int = 0
    # Labelled images also decoded as a library measured its datasets (a stratified seeded sample of at most this
    # many, `Exemplar.protocol_rows`), for probes that read what the library records; 0: none.
    protocol_images: int = 0
    # ... and their decoded bytes at most (500 photos of 3:2 at the kept 256 x 384 pixels); a larger protocol sample is
    # not kept (its probes read the features' sample instead): a search holds its upload until it answers.
    protocol_bytes: int = 150 << 20

    @property
    def archive(self) -> ArchiveLimits:
        """The limits the archive reader applies (member count, unpacked bytes, expansion)."""
        return ArchiveLimits(self.max_members, self.max_unpacked_bytes, self.max_expansion)


@dataclass(frozen=True, eq=False)
class Exemplar:
    """A parsed upload: its kind, its name (as the user called it), its size and its content.

    Only the fields of its modality are filled: `table` and `target` (the target column) for tabular; `texts`
    and `labels` (one per text; empty when unlabelled) and `target` (the label column, if any) for text;
    `labels` (one per image of the dataset), the decoded `images` (a bounded sample, RGB uint8, shrunk to at
    most 256 pixels on the short side), their `image_rows` (index into the dataset) and `image_sizes`
    (width, height as uploaded) for images; `scans` (a bounded sample) for XRD. `n_items` counts rows,
    texts, images or scans of the whole dataset.
    """

    modality: str
    name: str
    n_items: int
    table: pd.DataFrame | None = None
    target: str = ""
    texts: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    images: tuple[np.ndarray, ...] = ()
    image_rows: tuple[int, ...] = ()
    image_sizes: tuple[tuple[int, int], ...] = ()
    # Labelled images decoded as the library measured its datasets (`Limits.protocol_images`): dataset rows and
    # images, sharing arrays with `images` where the samples overlap; empty: not asked for, or unlabelled.
    protocol_rows: tuple[int, ...] = ()
    protocol_images: tuple[np.ndarray, ...] = ()
    scans: tuple[Scan, ...] = ()


def dataset_features(
    exemplar: Exemplar, *, target: str = "", cache_dir: Path | None = None, seed: int = 0
) -> tuple[str, dict[str, float]]:
    """(feature set, features) of an exemplar, from the same functions that describe the library datasets.

    `target` names another target column for a table (default: the one chosen at load); `cache_dir` is where
    the image network's ONNX file is kept (default `$MODSNET_HOME/cache`).
    """
    if exemplar.modality == "tabular" and exemplar.table is not None:
        return tabular.FEATURE_SET, _tabular_features(exemplar.table, exemplar, target, seed)
    if exemplar.modality == "text":
        from modsnet.features import text

        return text.FEATURE_SET, text.text_features(exemplar.texts, exemplar.labels, seed=seed)
    if exemplar.modality == "image":
        from modsnet.features import image as image_module

        features = image_module.image_features(
            exemplar.images,
            sizes=exemplar.image_sizes,
            labels=exemplar.labels,
            rows=exemplar.image_rows,
            n_images=exemplar.n_items,
            cache_dir=cache_dir,
            seed=seed,
        )
        return image_module.FEATURE_SET, features
    if exemplar.modality == "xrd":
        from modsnet.features import xrd

        return xrd.FEATURE_SET, xrd.xrd_features(exemplar.scans, n_scans=exemplar.n_items, seed=seed)
    raise ValueError(f"unknown modality {exemplar.modality!r}")


def _tabular_features(table: pd.DataFrame, exemplar: Exemplar, target: str, seed: int) -> dict[str, float]:
    try:
        column = tabular.infer_target(table, target, name=exemplar.name) if target else exemplar.target
        return tabular.tabular_features(table, column, seed=seed, table_rows=exemplar.n_items)
    except InvalidArgument as exc:  # tabular_features' own messages do not name the file
        prefix = f"{exemplar.name}: "
        raise InvalidArgument(exc.message if exc.message.startswith(prefix) else prefix + exc.message) from exc


def load_exemplar(
    path: str | os.PathLike[str],
    *,
    name: str,
    modality: str = "",
    target: str = "",
    limits: Limits = Limits(),
) -> Exemplar:
    """Parse the upload at `path` (a file, or a folder for library generators), refusing what is unsafe or unusable.

    `name` is what the user called it (used for detection and in every message); `modality` overrides the
    detected kind where the content allows it; `target` names the target column of a table or the label
    column of a text table.
    """
    if modality and modality not in MODALITIES:
        raise InvalidArgument(f"{name}: unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    source = Path(path)
    budget = Budget(limits.max_unpacked_bytes)
    if source.is_dir():
        return _from_members(Folder(source, name, limits.archive, budget), name, modality, target, limits)
    size = source.stat().st_size
    if size > limits.max_bytes:
        raise ResourceExhausted(f"{name}: {size:,} bytes, more than the limit of {limits.max_bytes:,}")
    if size == 0:
        raise InvalidArgument(f"{name}: the file is empty")
    return _load_file(source, name, modality, target, limits, budget)


# ----------------------------------------------------------------------------------------------- detection

_Source = Path | bytes  # an uploaded file on disk, or an archive member in memory
_HEAD = 65_536
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_XY_SUFFIXES = (".xy", ".xye", ".dat")
_SCAN_SUFFIXES = (".xrdml", ".brml", ".rasx", ".raw", *_XY_SUFFIXES)
_FRAME_SUFFIXES = (".csv", ".tsv", ".parquet", ".xlsx", ".xlsm", ".jsonl", ".ndjson")
# A name that promises a binary format the content must keep: the content is what gets parsed.
_PROMISED = {
    ".png": ("image", "a PNG image"),
    ".jpg": ("image", "a JPEG image"),
    ".jpeg": ("image", "a JPEG image"),
    ".parquet": ("parquet", "a Parquet file"),
    ".xlsx": ("zip", "an Excel workbook (a zip)"),
    ".xlsm": ("zip", "an Excel workbook (a zip)"),
    ".rasx": ("zip", "a Rigaku .rasx scan (a zip)"),
    ".brml": ("zip", "a Bruker .brml scan (a zip)"),
    ".zip": ("zip", "a zip archive"),
    ".raw": ("raw", "a Bruker RAW v4 scan (it starts with RAW4.00)"),
    ".xrdml": ("xml", "a PANalytical .xrdml scan (XML)"),
}
_DELIMITERS = (",", "\t", ";", "|")
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _load_file(
    source: _Source, name: str, modality: str, target: str, limits: Limits, budget: Budget, *, suffix: str = ""
) -> Exemplar:
    """Load one file; `name` is how messages call it, `suffix` its extension when `name` does not end in it."""
    head = _head(source)
    suffix = suffix or PurePosixPath(name).suffix.lower()
    content = _sniff(head, suffix)
    promised = _PROMISED.get(suffix)
    if promised and content != promised[0]:
        raise InvalidArgument(f"{name}: named {suffix} but the content is not {promised[1]}")
    if content == "zip":
        with _zip(source, name, limits, budget) as archive:
            container = _container(archive.names, suffix)
            if container == "excel":
                _verify(archive, name)
                return _frame_exemplar(_read_excel(source, name), name, modality, target, limits)
            if container in ("rasx", "brml"):
                _require(modality, "xrd", name)
                _verify(archive, name)
                return _scan_exemplar([_read_scan(source, name, container, limits)], name, 1)
            return _from_members(archive, name, modality, target, limits)
    if content == "parquet":
        return _frame_exemplar(_read_parquet(source, name, limits), name, modality, target, limits)
    if content == "raw":
        _require(modality, "xrd", name)
        return _scan_exemplar([_read_scan(source, name, "raw", limits)], name, 1)
    if content == "image":
        _require(modality, "image", name)
        return _image_exemplar(_Single(source, name, budget), name, limits)
    if content == "xml":
        if not re.search(rb"<(\w+:)?xrdMeasurements?\b", head):
            raise InvalidArgument(f"{name}: XML, but not a PANalytical .xrdml scan (no xrdMeasurement element)")
        _require(modality, "xrd", name)
        return _scan_exemplar([_read_scan(source, name, "xrdml", limits)], name, 1)
    if content == "ole":
        raise InvalidArgument(f"{name}: a legacy binary Office file (.xls); save the sheet as .xlsx or CSV")
    if content == "gzip":
        raise InvalidArgument(f"{name}: gzip-compressed; upload the plain file or a .zip archive")
    if content == "jsonl":
        return _frame_exemplar(_read_jsonl(_bytes(source), name, limits), name, modality, target, limits)
    if modality == "xrd" or (not modality and _looks_like_xy(head, suffix)):
        return _scan_exemplar([_read_scan(source, name, "xy", limits)], name, 1)
    if suffix == ".txt" and modality in ("", "text") and not any(d in _first_text_line(head) for d in _DELIMITERS):
        return _lines_exemplar(_bytes(source), name, limits)
    table, rows = tabular.read_table_sample(
        _bytes(source), name=name, max_rows=limits.max_rows, max_columns=limits.max_columns
    )
    return _frame_exemplar(table, name, modality, target, limits, checked=True, rows=rows)


def _sniff(head: bytes, suffix: str) -> str:
    """The container kind that the first bytes announce ("text" when they announce none)."""
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"RAW4.00"):
        return "raw"
    if head.startswith(_IMAGE_MAGIC):
        return "image"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "ole"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"<"):
        return "xml"
    if suffix in (".jsonl", ".ndjson") or stripped.startswith(b"{"):
        return "jsonl"
    return "text"


def _container(names: list[str], suffix: str) -> str:
    """What a zip is: an Excel workbook, a Rigaku .rasx or Bruker .brml scan, or a plain archive ("")."""
    if suffix in (".xlsx", ".xlsm") or "xl/workbook.xml" in names:
        return "excel"
    if suffix == ".rasx" or any(re.fullmatch(r"Data\d+/Profile\d+\.txt", n) for n in names):
        return "rasx"
    if suffix == ".brml" or any(re.fullmatch(r"Experiment\d+/DataContainer\.xml", n) for n in names):
        return "brml"
    return ""


def _looks_like_xy(head: bytes, suffix: str) -> bool:
    """.xy/.xye always; .dat when its first data row holds 2-3 numbers (else it is a table, as KEEL's are)."""
    if suffix in (".xy", ".xye"):
        return True
    if suffix != ".dat":
        return False
    for line in head.decode("latin-1").splitlines():
        fields = line.replace(",", " ").split()
        if fields and all(_NUMBER.match(f) for f in fields):
            return 2 <= len(fields) <= 3
    return False


def _first_text_line(head: bytes) -> str:
    return next((line for line in head.decode("latin-1").splitlines() if line.strip()), "")


def _require(modality: str, found: str, name: str) -> None:
    if modality and modality != found:
        raise InvalidArgument(f"{name}: the content is {found} data, not {modality}")


def _head(source: _Source) -> bytes:
    if isinstance(source, bytes):
        return source[:_HEAD]
    with open(source, "rb") as handle:
        return handle.read(_HEAD)


def _bytes(source: _Source) -> bytes:
    return source if isinstance(source, bytes) else source.read_bytes()


# ----------------------------------------------------------------------------------------------- archives


def _zip(source: _Source, name: str, limits: Limits, budget: Budget) -> ZipArchive:
    return ZipArchive(source, name, limits.archive, budget)


def _verify(archive: ZipArchive, name: str) -> None:
    """Inflate every member once (counting bytes) and refuse XML members that carry a DTD.

    For containers handed whole to a third-party reader (Excel, .rasx, .brml): what that reader would
    inflate is checked here first.
    """
    for member in archive.names:
        chunks = archive.stream(member)
        first = next(chunks, b"")
        if member.lower().endswith((".xml", ".rels")):
            _check_xml(first, f"{name}: member {member!r}")
        for _ in chunks:
            pass


class _Single:
    """One image file as a one-member collection, so a lone image takes the same path as a folder of them."""

    def __init__(self, source: _Source, name: str, budget: Budget):
        self._source, self.budget = source, budget
        self.names = [PurePosixPath(name).name]

    def read(self, member: str) -> bytes:
        return _bytes(self._source)

    def head(self, member: str, size: int) -> bytes:
        return _head(self._source)[:size]


def _check_xml(head: bytes, where: str) -> None:
    """Refuse XML with a DTD (where entity bombs and external entities live) by parsing its prolog only."""
    try:
        for _ in DefusedET.iterparse(io.BytesIO(head), events=("start",), forbid_dtd=True):
            return  # the root element has started: no DTD can follow
    except defusedxml.DefusedXmlException as exc:
        raise InvalidArgument(f"{where}: XML with a DTD or entities is refused ({type(exc).__name__})") from exc
    except ET.ParseError as exc:
        raise InvalidArgument(f"{where}: not well-formed XML ({exc})") from exc
    except (LookupError, ValueError) as exc:  # expat on an encoding it does not know, or cannot decode
        raise InvalidArgument(f"{where}: XML in an unsupported encoding ({exc})") from exc


_KIND_SUFFIXES = {"image": _IMAGE_SUFFIXES, "text": (".txt",), "xrd": _SCAN_SUFFIXES, "table": _FRAME_SUFFIXES}


def _from_members(members: Members, name: str, modality: str, target: str, limits: Limits) -> Exemplar:
    """Choose what an archive or folder holds by counting its members by kind, then load that kind."""
    names = [m for m in members.names if not is_litter(m)]
    by_kind: dict[str, list[str]] = {kind: [] for kind in _KIND_SUFFIXES}
    for member in names:
        suffix = PurePosixPath(member).suffix.lower()
        for kind, suffixes in _KIND_SUFFIXES.items():
            if suffix in suffixes:
                by_kind[kind].append(member)
    if modality in ("image", "xrd") or (modality == "text" and by_kind["text"]):
        kind = modality
    elif modality == "":
        counts = {k: len(v) for k, v in by_kind.items() if k != "table" and v}
        best = max(counts.values(), default=0)
        winners = [k for k, n in counts.items() if n == best]
        if len(winners) > 1:
            shown = ", ".join(f"{counts[k]:,} {k}" for k in winners)
            raise InvalidArgument(f"{name}: as many files of each kind ({shown}); name the modality to choose")
        kind = winners[0] if winners else "table"
    else:
        kind = "table"
    chosen = by_kind[kind]
    if not chosen:
        shown = ", ".join(repr(m) for m in names[:5]) or "nothing"
        raise InvalidArgument(
            f"{name}: no {kind} files (looked for {'/'.join(_KIND_SUFFIXES[kind])}); it holds {shown}"
            + (f", … ({len(names):,} in all)" if len(names) > 5 else "")
        )
    if kind == "image":
        return _image_exemplar(members, name, limits, chosen)
    if kind == "text":
        return _text_files_exemplar(members, name, limits, chosen)
    if kind == "xrd":
        return _scan_files_exemplar(members, name, limits, chosen)
    if len(chosen) > 1:
        raise InvalidArgument(f"{name}: {len(chosen)} tables ({chosen[0]!r}, {chosen[1]!r}, ...); upload one")
    member = chosen[0]
    suffix = PurePosixPath(member).suffix.lower()
    where = f"{name}: member {member!r}"
    return _load_file(members.read(member), where, modality, target, limits, members.budget, suffix=suffix)


def _folder_labels(members: list[str], name: str) -> tuple[str, ...]:
    """Each member's class: the name of its folder; none when all share one folder (or none).

    A member outside the class folders while others are inside is refused: its class would be a guess.
    """
    parents = [PurePosixPath(m).parent for m in members]
    if len(set(parents)) <= 1:
        return ()
    loose = next((m for m, p in zip(members, parents, strict=True) if p == PurePosixPath(".")), None)
    if loose is not None:
        raise InvalidArgument(
            f"{name}: {loose!r} is outside the class folders; put every file in a folder named after its class"
        )
    return tuple(p.name for p in parents)


# ----------------------------------------------------------------------------------------------- tables and texts

_TEXT_NAMES = ("text", "sentence", "sentences", "review", "document", "content", "body", "comment", "tweet")
_LABEL_NAMES = ("label", "labels", "class", "target", "category", "sentiment", "y", "outcome")
_TEXT_MIN_WORDS = 5  # mean words of a column that is text by its content (a category has one or two)
_TEXT_MIN_DISTINCT = 0.5
_TEXT_MIN_CHAR_SHARE = 0.5  # the text must be most of the table, else it is a table with a remarks column
_PROFILE_ROWS = 1_000  # rows looked at to decide what a column is


def _frame_exemplar(
    df: pd.DataFrame,
    name: str,
    modality: str,
    target: str,
    limits: Limits,
    *,
    checked: bool = False,
    rows: int | None = None,
) -> Exemplar:
    """A table is a text corpus when it has a text column (or `modality` says so), else a tabular dataset.

    `checked`: `tabular.read_table` has already refused empty, one-column and all-missing tables. `rows`:
    the table's data rows when `df` is a sample of them (`tabular.read_table_sample`).
    """
    rows = len(df) if rows is None else rows
    if modality in ("image", "xrd"):
        _require(modality, "tabular", name)
    if not checked:
        df = _checked_frame(df, name, limits)
    column = _text_column(df, target, name, strict=modality == "text") if modality != "tabular" else None
    if column is not None:
        return _text_frame_exemplar(df, column, name, target, share=rows / len(df))
    if df.shape[1] < 2:
        raise InvalidArgument(f"{name}: only one column ({df.columns[0]!r}); a table needs at least two")
    column = tabular.infer_target(df, target or None, name=name)
    return Exemplar("tabular", name, rows, table=df, target=column)


def _checked_frame(df: pd.DataFrame, name: str, limits: Limits) -> pd.DataFrame:
    """Limits, column names as strings and ±inf as missing for tables not read by `tabular.read_table`."""
    if df.shape[1] > limits.max_columns:
        raise ResourceExhausted(f"{name}: {df.shape[1]:,} columns, more than the limit of {limits.max_columns:,}")
    if len(df) > limits.max_rows:
        raise ResourceExhausted(f"{name}: {len(df):,} rows, more than the limit of {limits.max_rows:,}")
    if df.shape[1] == 0:
        raise InvalidArgument(f"{name}: no columns")
    if len(df) == 0:
        raise InvalidArgument(f"{name}: no data rows")
    df = df.set_axis([str(c) for c in df.columns], axis=1)
    numeric = [c for c in df.columns if pd.api.types.is_float_dtype(df[c])]
    if numeric:
        df[numeric] = df[numeric].replace([np.inf, -np.inf], np.nan)
    if not df.notna().to_numpy().any():
        raise InvalidArgument(f"{name}: no usable values (every cell is empty, NaN or inf)")
    return df


def _text_column(df: pd.DataFrame, target: str, name: str, *, strict: bool) -> str | None:
    """The column holding the texts: one named like text, else one that is mostly long free text.

    With `strict` (text was asked for) finding none is an error; otherwise the table is just a table.
    """
    profile = df.head(_PROFILE_ROWS)
    values = {
        c: profile[c].dropna().astype(str)
        for c in df.columns
        if c != target and not pd.api.types.is_numeric_dtype(df[c])
    }
    words = {c: float(np.nan_to_num(v.str.count(r"\S+").mean())) for c, v in values.items()}
    named = [c for c in values if c.strip().lower() in _TEXT_NAMES and words[c] >= 2]
    if named:
        return min(named, key=lambda c: _TEXT_NAMES.index(c.strip().lower()))
    wordiest = max(words, key=words.__getitem__, default=None)  # only the wordiest column can be the text
    if wordiest is not None and words[wordiest] >= _TEXT_MIN_WORDS:
        column = values[wordiest]
        distinct = column.nunique() >= _TEXT_MIN_DISTINCT * len(column)
        total = sum(profile[c].dropna().astype(str).str.len().sum() for c in profile.columns)
        if distinct and column.str.len().sum() >= _TEXT_MIN_CHAR_SHARE * total:
            return wordiest
    if strict:
        raise InvalidArgument(
            f"{name}: no text column (name one 'text', or give columns of multi-word, mostly distinct strings)"
        )
    return None


def _text_frame_exemplar(df: pd.DataFrame, column: str, name: str, target: str, *, share: float = 1.0) -> Exemplar:
    """Texts from `column`, labels from `target` or a column named like a label; rows missing either dropped.

    `share`: rows of the whole table per row of `df` when `df` is a sample (the texts are counted so).
    """
    lowered = {c.strip().lower(): c for c in reversed(df.columns) if c != column}
    label = target or next((lowered[n] for n in _LABEL_NAMES if n in lowered), "")
    if label:
        label = tabular.infer_target(df, label, name=name)  # exists, and has 2..1000 classes
        if label == column:
            raise InvalidArgument(f"{name}: column {label!r} holds the texts; it cannot also be the label")
    kept = (df[[column, label]] if label else df[[column]]).dropna()
    texts = kept[column].astype(str).str.strip()
    kept, texts = kept[texts != ""], texts[texts != ""]
    if kept.empty:
        with_label = f" that also have a {label!r}" if label else ""
        raise InvalidArgument(f"{name}: no rows with a non-empty text in column {column!r}{with_label}")
    labels = tuple(kept[label].astype(str)) if label else ()
    if label and len(set(labels)) < 2:
        raise InvalidArgument(f"{name}: column {label!r} has only one class among the rows with a text")
    return Exemplar("text", name, round(len(kept) * share), texts=tuple(texts), labels=labels, target=label)


def _lines_exemplar(data: bytes, name: str, limits: Limits) -> Exemplar:
    """A plain .txt file: one text per non-blank line, unlabelled."""
    lines = [line.strip() for line in decode_text(data, name).splitlines() if line.strip()]
    if not lines:
        raise InvalidArgument(f"{name}: the file is empty")
    if len(lines) > limits.max_rows:
        raise ResourceExhausted(f"{name}: {len(lines):,} lines, more than the limit of {limits.max_rows:,}")
    return Exemplar("text", name, len(lines), texts=tuple(lines))


def _text_files_exemplar(members: Members, name: str, limits: Limits, chosen: list[str]) -> Exemplar:
    """One text per .txt file, labelled by folder; empty files are skipped."""
    if len(chosen) > limits.max_rows:
        raise ResourceExhausted(f"{name}: {len(chosen):,} texts, more than the limit of {limits.max_rows:,}")
    labels = _folder_labels(chosen, name)
    texts = [decode_text(members.read(m), f"{name}: member {m!r}").strip() for m in chosen]
    keep = [i for i, t in enumerate(texts) if t]
    if not keep:
        raise InvalidArgument(f"{name}: every .txt file is empty")
    kept_labels = tuple(labels[i] for i in keep) if labels else ()
    if labels and len(set(kept_labels)) < 2:
        raise InvalidArgument(f"{name}: only one class folder holds non-empty texts")
    return Exemplar("text", name, len(keep), texts=tuple(texts[i] for i in keep), labels=kept_labels)


def _read_jsonl(data: bytes, name: str, limits: Limits) -> pd.DataFrame:
    """JSON Lines: one object per non-blank line (a text corpus, or a table if no field is text)."""
    records: list[dict[str, Any]] = []
    for number, line in enumerate(decode_text(data, name).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"{name}: line {number} is not JSON ({exc.msg})") from exc
        except RecursionError as exc:  # the decoder recurses once per level of nesting
            raise InvalidArgument(f"{name}: line {number} nests objects or arrays too deeply") from exc
        if not isinstance(record, dict):
            raise InvalidArgument(f"{name}: line {number} is not a JSON object")
        records.append(record)
        if len(records) > limits.max_rows:
            raise ResourceExhausted(f"{name}: more than the limit of {limits.max_rows:,} lines")
    if not records:
        raise InvalidArgument(f"{name}: the file is empty")
    return pd.DataFrame.from_records(records)


def _read_parquet(source: _Source, name: str, limits: Limits) -> pd.DataFrame:
    """A Parquet file, its size checked from the footer before any column is read."""
    import pyarrow
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(io.BytesIO(source) if isinstance(source, bytes) else source)
        rows, columns = parquet.metadata.num_rows, parquet.metadata.num_columns
        if columns > limits.max_columns:
            raise ResourceExhausted(f"{name}: {columns:,} columns, more than the limit of {limits.max_columns:,}")
        if rows > limits.max_rows:
            raise ResourceExhausted(f"{name}: {rows:,} rows, more than the limit of {limits.max_rows:,}")
        return parquet.read().to_pandas()
    # ValueError, KeyError, TypeError: the pandas metadata stored in the file is not UTF-8 JSON, lacks a key,
    # or names a dtype that does not exist (pyarrow reads it unguarded)
    except (pyarrow.ArrowException, OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument(f"{name}: not a readable Parquet file ({_first_line(exc)})") from exc


def _read_excel(source: _Source, name: str) -> pd.DataFrame:
    """The first sheet of an .xlsx workbook (openpyxl parses its XML through defusedxml when installed)."""
    try:
        return pd.read_excel(io.BytesIO(source) if isinstance(source, bytes) else source, engine="openpyxl")
    except (ValueError, KeyError, zipfile.BadZipFile, OSError) as exc:
        raise InvalidArgument(f"{name}: not a readable Excel workbook ({_first_line(exc)})") from exc


def _first_line(exc: BaseException) -> str:
    """What a library's exception says, in one short line (its type when it says nothing)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


# ----------------------------------------------------------------------------------------------- images

_KEEP_SIDE = 256  # decoded images are kept at most this short side (the embedding's resize) ...
_KEEP_LONG_SIDE = 1_024  # ... and this long side, so a sample's memory stays bounded


def _image_exemplar(members: Members, name: str, limits: Limits, chosen: list[str] | None = None) -> Exemplar:
    """Images labelled by folder; every file's signature is checked, a stratified sample is decoded."""
    chosen = chosen or members.names
    if len(chosen) > limits.max_images:
        raise ResourceExhausted(f"{name}: {len(chosen):,} images, more than the limit of {limits.max_images:,}")
    for member in chosen:
        if not members.head(member, 16).startswith(_IMAGE_MAGIC):
            raise InvalidArgument(f"{name}: {member!r} is not a PNG or JPEG image")
    from modsnet.features import image as image_module

    labels = _folder_labels(chosen, name)
    codes = pd.factorize(pd.Series(labels, dtype=object))[0] if labels else np.zeros(len(chosen), np.intp)
    rows = tabular.stratified_sample(codes, limits.decode_images or image_module.SAMPLE_IMAGES, 0, min_per_class=4)
    # The library's protocol sample is drawn as a library build draws it (`modsnet.models.image.ROW_CAP`, seed 0),
    # so a probe on it reads the score the library would record; an image in both samples is decoded once.
    protocol = (
        tabular.stratified_sample(codes, limits.protocol_images, 0, min_per_class=4)
        if labels and limits.protocol_images
        else np.zeros(0, dtype=np.intp)
    )
    decoded = {int(i): _decode_image(members.read(chosen[i]), name, chosen[i], limits) for i in rows}
    held = 0
    for i in protocol.tolist():
        if i not in decoded:
            decoded[i] = _decode_image(members.read(chosen[i]), name, chosen[i], limits)
        held += decoded[i][0].nbytes
        if held > limits.protocol_bytes:
            protocol = np.zeros(0, dtype=np.intp)
            break
    return Exemplar(
        "image",
        name,
        len(chosen),
        labels=labels,
        images=tuple(decoded[int(i)][0] for i in rows),
        image_rows=tuple(int(i) for i in rows),
        image_sizes=tuple(decoded[int(i)][1] for i in rows),
        protocol_rows=tuple(int(i) for i in protocol),
        protocol_images=tuple(decoded[int(i)][0] for i in protocol),
    )


def _decode_image(data: bytes, name: str, member: str, limits: Limits) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode one PNG/JPEG to RGB uint8, shrunk to the kept size; returns it with its size as uploaded."""
    from PIL import Image

    where = f"{name}: {member!r}" if member != PurePosixPath(name).name else name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own pixel limit applies
            picture = Image.open(io.BytesIO(data), formats=("PNG", "JPEG"))
        size = picture.size
        if size[0] * size[1] > limits.max_image_pixels:
            raise ResourceExhausted(
                f"{where}: {size[0]:,}×{size[1]:,} pixels, more than the limit of {limits.max_image_pixels:,}"
            )
        scale = min(1.0, _KEEP_SIDE / min(size), _KEEP_LONG_SIDE / max(size))
        kept = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
        picture.draft("RGB", kept)  # JPEG decodes at a reduced scale directly: much faster on photos
        rgb = _to_rgb(picture)
        if rgb.size != kept:
            rgb = rgb.resize(kept, Image.Resampling.BILINEAR, reducing_gap=2.0)
        return np.asarray(rgb), size
    except Image.DecompressionBombError as exc:
        raise ResourceExhausted(f"{where}: too many pixels to decode ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidArgument(f"{where}: the image does not decode ({exc})") from exc


def _to_rgb(picture: Image.Image) -> Image.Image:
    """RGB, stretching 16-bit and float greyscale to 0-255 (a plain conversion would clip them)."""
    from PIL import Image

    if picture.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(picture, dtype=np.float64)
        top = values.max() if values.size and values.max() > 0 else 1.0
        grey = Image.fromarray(np.clip(values / top * 255.0, 0, 255).astype(np.uint8))
        return grey.convert("RGB")
    return picture.convert("RGB")


# ----------------------------------------------------------------------------------------------- XRD scans

_MAX_TWO_THETA = 360.0  # degrees: a 2θ position beyond it is not an angle
_XRD_FORMATS = {".xrdml": "xrdml", ".brml": "brml", ".rasx": "rasx", ".raw": "raw"}
_WAVELENGTH = re.compile(r"(?:wavelength|lambda|λ)\w*\s*[=:]?\s*(\d+(?:\.\d+)?)\s*(nm|å|angstrom|a\b)?", re.IGNORECASE)
_READERS = {  # format -> reader function of fairmat_readers_xrd.readers
    "xrdml": "read_panalytical_xrdml",
    "rasx": "read_rigaku_rasx",
    "brml": "read_bruker_brml",
    "raw": "read_bruker_raw",
}


def _scan_exemplar(scans: list[Scan], name: str, n_scans: int) -> Exemplar:
    return Exemplar("xrd", name, n_scans, scans=tuple(scans))


def _scan_files_exemplar(members: Members, name: str, limits: Limits, chosen: list[str]) -> Exemplar:
    """Several scans: a seeded sample of at most `xrd.SAMPLE_SCANS` is parsed (each is refused on its own)."""
    from modsnet.features import xrd

    rng = np.random.default_rng(0)
    picked = np.sort(rng.choice(len(chosen), size=min(len(chosen), xrd.SAMPLE_SCANS), replace=False))
    scans = []
    for i in picked:
        member = chosen[i]
        suffix = PurePosixPath(member).suffix.lower()
        data, where = members.read(member), f"{name}: member {member!r}"
        if suffix in (".brml", ".rasx"):
            with _zip(data, where, limits, members.budget) as container:
                _verify(container, where)
        scans.append(_read_scan(data, where, _XRD_FORMATS.get(suffix, "xy"), limits))
    return _scan_exemplar(scans, name, len(chosen))


def _read_scan(source: _Source, name: str, fmt: str, limits: Limits) -> Scan:
    """One scan: two-column text parsed here, the instrument formats by fairmat-readers-xrd."""
    if fmt == "xy":
        return _parse_xy(decode_text(_bytes(source), name), name, limits)
    data = _bytes(source)
    if fmt == "xrdml":
        _check_xml(data[:_HEAD], name)
        if not re.search(rb"<(\w+:)?(intensities|counts)\b", data):
            raise InvalidArgument(f"{name}: no intensities (the scan has no <intensities> or <counts> element)")
    try:
        with warnings.catch_warnings(), _as_path(data) as path:
            warnings.simplefilter("ignore")  # pint's unit-stripping warnings, on every file
            from fairmat_readers_xrd import readers

            result = getattr(readers, _READERS[fmt])(path)
    except Exception as exc:  # a third-party parser on untrusted bytes fails in any way; our message is fixed
        raise InvalidArgument(f"{name}: not a readable .{fmt} scan ({type(exc).__name__})") from exc
    if not result:
        raise InvalidArgument(f"{name}: not a readable .{fmt} scan")
    return _scan_from_reader(result, name, fmt)


@contextlib.contextmanager
def _as_path(data: bytes) -> Iterator[str]:
    """A path to `data` for readers that only open paths: an anonymous memory file where the OS has them.

    Elsewhere a private temporary file, removed on exit; either way nothing is left behind.
    """
    if hasattr(os, "memfd_create"):
        descriptor = os.memfd_create("modsnet-scan")
        try:
            with open(descriptor, "wb", closefd=False) as handle:
                handle.write(data)
            yield f"/proc/self/fd/{descriptor}"
        finally:
            os.close(descriptor)
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scan"
        path.write_bytes(data)
        yield str(path)


def _magnitude(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    return np.asarray(getattr(value, "magnitude", value), dtype=float)


def _scan_from_reader(result: dict[str, Any], name: str, fmt: str) -> Scan:
    """A `Scan` from a fairmat reader's dict: a 2-D map is integrated over its second axis."""
    two_theta, intensity = _magnitude(result.get("2Theta")), _magnitude(result.get("intensity"))
    if intensity is None or intensity.size == 0:
        raise InvalidArgument(f"{name}: no intensities in this .{fmt} scan")
    if two_theta is None or two_theta.size == 0:
        raise InvalidArgument(f"{name}: no 2θ positions in this .{fmt} scan")
    metadata = result.get("metadata") or {}
    scan_type = str(metadata.get("scan_type") or "line")
    if intensity.ndim == 2:
        two_theta = two_theta.reshape(-1, intensity.shape[-1]).mean(axis=0) if two_theta.ndim == 2 else two_theta
        intensity = np.nansum(intensity, axis=0)
    source = metadata.get("source") or {}
    stated: Any = source.get("kAlpha1")
    wavelength = stated.to("angstrom").magnitude if hasattr(stated, "to") else stated  # pint, or Å as a float
    return _finished_scan(
        two_theta.ravel(),
        intensity.ravel(),
        name,
        wavelength=float(wavelength) if wavelength else None,
        metadata={"format": fmt, "scan_type": scan_type, "anode": str(source.get("anode_material") or "")},
    )


def _finished_scan(
    two_theta: np.ndarray, intensity: np.ndarray, name: str, *, wavelength: float | None, metadata: dict[str, str]
) -> Scan:
    """Validate and sort a scan: matching lengths, enough finite points, a plausible wavelength (0.1-3 Å)."""
    from modsnet.features import xrd
    from modsnet.features.xrd import Scan

    if two_theta.size != intensity.size:
        raise InvalidArgument(f"{name}: {two_theta.size:,} 2θ positions but {intensity.size:,} intensities")
    finite = np.isfinite(two_theta) & np.isfinite(intensity)
    if not finite.any():
        raise InvalidArgument(f"{name}: no usable intensities (every value is NaN or inf)")
    if finite.sum() < xrd.MIN_POINTS:
        raise InvalidArgument(f"{name}: only {int(finite.sum())} points; a scan needs at least {xrd.MIN_POINTS}")
    outside = np.flatnonzero(finite & (np.abs(two_theta) > _MAX_TWO_THETA))
    if len(outside):  # such a position would also overflow the step statistics to inf
        raise InvalidArgument(
            f"{name}: point {int(outside[0]) + 1} has 2θ = {two_theta[outside[0]]:g}, not an angle in degrees (±360)"
        )
    order = np.argsort(two_theta[finite], kind="stable")
    plausible = wavelength if wavelength and 0.1 <= wavelength <= 3.0 else None
    return Scan(two_theta[finite][order], intensity[finite][order], plausible, metadata)


def _parse_xy(content: str, name: str, limits: Limits) -> Scan:
    """Two (or three) numeric columns, 2θ then intensity; header and comment lines may precede the data.

    A wavelength stated in the header ("wavelength = 1.5406 Angstrom", or in nm) is kept.
    """
    rows: list[tuple[float, float]] = []
    header: list[str] = []
    for number, line in enumerate(content.splitlines(), start=1):
        fields = line.replace(",", " ").replace(";", " ").split()
        if not fields or fields[0].startswith(("#", "!", "%", "'", "//")):
            if not rows:
                header.append(line)
            continue
        try:
            values = [float(f) for f in fields]
        except ValueError:
            if rows:
                raise InvalidArgument(f"{name}: line {number} is not numbers ({line.strip()[:40]!r})") from None
            header.append(line)
            continue
        if len(values) < 2:
            raise InvalidArgument(f"{name}: line {number} has one number; a scan needs 2θ and an intensity column")
        rows.append((values[0], values[1]))
        if len(rows) > limits.max_rows:
            raise ResourceExhausted(f"{name}: more than the limit of {limits.max_rows:,} points")
    if not rows:
        raise InvalidArgument(f"{name}: no intensities (no line of 2θ and intensity numbers)")
    data = np.array(rows)
    match = _WAVELENGTH.search("\n".join(header))
    wavelength = None
    if match:
        wavelength = float(match.group(1)) * (10.0 if (match.group(2) or "").lower() == "nm" else 1.0)
    return _finished_scan(data[:, 0], data[:, 1], name, wavelength=wavelength, metadata={"format": "xy"})
