"""Fuzzing every parser of uploads and bundles: it returns a result or refuses with a domain error, never anything else.

Each target feeds random bytes and mutations of real valid files (see `fuzzing.mutated`) to the code an
upload or an import runs: `load_exemplar` and then `dataset_features` (tables in every format, texts,
images, every XRD format), the archive reader, the text decoder, and `read_bundle`. The property is
`fuzzing.refused_or_parsed`: a result, or INVALID_ARGUMENT / RESOURCE_EXHAUSTED / NOT_FOUND with a one-line
message; any other exception fails the case, and so does a case that runs past `fuzzing.HANG_SECONDS`.
Cases per target: a few in `make test`, 10,000 in `make fuzz`.
"""

from __future__ import annotations

import io
import struct
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fuzzing import (
    brml_members,
    fuzz_settings,
    mutated,
    rasx_members,
    raw_seed,
    refused_or_parsed,
    xrdml_seed,
    xy_seed,
    zip_bytes,
)
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from synthetic import make_table, write_library

from modsnet.data.archive import ArchiveLimits, open_archive, read_all
from modsnet.data.bundle import parse_members, read_bundle
from modsnet.data.exemplar import Exemplar, Limits, dataset_features, load_exemplar
from modsnet.data.text_decoding import decode_text
from modsnet.runtime.errors import InvalidArgument

# Small limits, so the limit paths are reached by small inputs (and a bomb stays within the test's budget).
LIMITS = Limits(max_bytes=4 << 20, max_rows=5_000, max_columns=200, max_members=50, max_unpacked_bytes=16 << 20)


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("onnx")


def upload(folder: Path, name: str, data: bytes, *, modality: str = "", cache: Path | None = None) -> Exemplar | None:
    """Load `data` as the upload `name` and describe it, as a search does; None when refused."""
    path = folder / "upload"
    path.write_bytes(data)

    def load_and_describe() -> Exemplar:
        exemplar = load_exemplar(path, name=name, modality=modality, limits=LIMITS)
        _, features = dataset_features(exemplar, cache_dir=cache)
        assert all(np.isfinite(v) for v in features.values()), features
        return exemplar

    return refused_or_parsed(load_and_describe)


# ----------------------------------------------------------------------------------------------- seeds


def _csv(frame: pd.DataFrame, **options: object) -> bytes:
    return frame.to_csv(index=False, **options).encode()  # type: ignore[arg-type]


def _table_seeds() -> list[bytes]:
    numeric = make_table(40, 3, 2, 1)
    mixed = numeric.assign(colour=["red", "green", "blue", "?"] * 10, note=['say "hi", twice'] * 40)
    mixed.loc[3, "f1"] = np.nan
    return [_csv(numeric), _csv(mixed), _csv(numeric, sep=";"), _csv(mixed, sep="\t"), _csv(numeric, sep="|")]


TABLES = _table_seeds()
TABLE_NAMES = ["data.csv", "data.tsv", "data.txt", "data.dat", "data"]

_REVIEWS = [f"review number {i} says the product was {'good' if i % 2 else 'bad'} and arrived late" for i in range(30)]
TEXTS = [
    "\n".join(_REVIEWS).encode(),
    "".join(f'{{"text": "{t}", "label": "{i % 2}"}}\n' for i, t in enumerate(_REVIEWS)).encode(),
    _csv(pd.DataFrame({"text": _REVIEWS, "label": [i % 3 for i in range(30)]})),
]
TEXT_NAMES = ["texts.txt", "texts.jsonl", "texts.csv", "texts.ndjson"]


def _image(fmt: str, side: int = 12, mode: str = "RGB") -> bytes:
    pixels = np.random.default_rng(side).integers(0, 255, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format=fmt)
    return buffer.getvalue()


IMAGES = [_image("PNG"), _image("JPEG"), _image("PNG", 9, "L"), _image("PNG", 7, "I;16")]
IMAGE_ARCHIVE = zip_bytes({f"{c}/{i}.png": _image("PNG", 8 + i) for c in ("cat", "dog") for i in range(4)})


def _tar(members: dict[str, bytes], mode: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


_ARCHIVE_MEMBERS = {"corpus/pos/a.txt": b"good stuff here", "corpus/neg/b.txt": b"bad stuff", "data.csv": TABLES[0]}
ARCHIVES = [
    zip_bytes(_ARCHIVE_MEMBERS),
    _tar(_ARCHIVE_MEMBERS, "w"),
    _tar(_ARCHIVE_MEMBERS, "w:gz"),
    zip_bytes({"bomb.txt": b"0" * (4 << 20)}),  # expands ~1000 times: refused as a bomb
]


@pytest.fixture(scope="module")
def bundle_members(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = write_library(tmp_path_factory.mktemp("bundle") / "synth", n_models=3, n_datasets=4)
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------------------------- targets


@fuzz_settings(60)
@given(data=st.binary(max_size=512) | mutated(TEXTS + TABLES))
def test_fuzz_text_decoding(data: bytes) -> None:
    text = refused_or_parsed(lambda: decode_text(data, "upload.txt"))
    assert text is None or isinstance(text, str)


@fuzz_settings(25)
@given(data=mutated(TABLES), name=st.sampled_from(TABLE_NAMES), modality=st.sampled_from(["", "", "tabular", "text"]))
def test_fuzz_table_upload(upload_dir: Path, data: bytes, name: str, modality: str) -> None:
    upload(upload_dir, name, data, modality=modality)


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _xlsx(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_excel(buffer, index=False, engine="openpyxl")
    return buffer.getvalue()


BINARY_TABLES = {"data.parquet": _parquet(make_table(30, 3, 2, 2)), "data.xlsx": _xlsx(make_table(30, 3, 2, 3))}


@fuzz_settings(10)
@given(data=st.data(), name=st.sampled_from(sorted(BINARY_TABLES)))
def test_fuzz_parquet_and_excel_upload(upload_dir: Path, data: st.DataObject, name: str) -> None:
    upload(upload_dir, name, data.draw(mutated([BINARY_TABLES[name]])))


@fuzz_settings(8)
@given(data=mutated(TEXTS), name=st.sampled_from(TEXT_NAMES), modality=st.sampled_from(["", "text"]))
def test_fuzz_text_upload(upload_dir: Path, data: bytes, name: str, modality: str) -> None:
    upload(upload_dir, name, data, modality=modality)


@fuzz_settings(6)
@given(data=mutated(IMAGES), name=st.sampled_from(["photo.png", "photo.jpg", "photo"]))
def test_fuzz_image_upload(upload_dir: Path, onnx_cache: Path, data: bytes, name: str) -> None:
    upload(upload_dir, name, data, cache=onnx_cache)


@fuzz_settings(6)
@given(data=mutated([IMAGE_ARCHIVE]), modality=st.sampled_from(["", "image"]))
def test_fuzz_image_archive_upload(upload_dir: Path, onnx_cache: Path, data: bytes, modality: str) -> None:
    upload(upload_dir, "images.zip", data, modality=modality, cache=onnx_cache)


@fuzz_settings(40)
@given(data=mutated(ARCHIVES))
def test_fuzz_archive_reader(data: bytes) -> None:
    limits = ArchiveLimits(max_members=50, max_unpacked_bytes=16 << 20)

    def read() -> dict[str, bytes]:
        with open_archive(data, "upload.zip", limits) as archive:
            return read_all(archive)

    refused_or_parsed(read)


# Each XRD format the product reads: (file name, valid seeds); the zip formats are also mutated member by member.
SCANS = {
    "scan.xy": [xy_seed()],
    "scan.xye": [xy_seed().replace(b"\n1", b" 3.0\n1")],
    "scan.dat": [xy_seed()],
    "scan.xrdml": [xrdml_seed()],
    "scan.raw": [raw_seed()],
    "scan.rasx": [zip_bytes(rasx_members())],
    "scan.brml": [zip_bytes(brml_members())],
}
SCAN_MEMBERS = {"scan.rasx": rasx_members(), "scan.brml": brml_members()}


@pytest.mark.parametrize("name", sorted(SCANS))
@fuzz_settings(12)
@given(data=st.data())
def test_fuzz_xrd_upload(upload_dir: Path, name: str, data: st.DataObject) -> None:
    if name in SCAN_MEMBERS and data.draw(st.booleans(), label="mutate a member"):
        members = dict(SCAN_MEMBERS[name])
        member = data.draw(st.sampled_from(sorted(members)), label="member")
        members[member] = data.draw(mutated([members[member]], random_share=False), label="content")
        content = zip_bytes(members)
    else:
        content = data.draw(mutated(SCANS[name]), label="content")
    upload(upload_dir, name, content, modality=data.draw(st.sampled_from(["", "xrd"]), label="modality"))


@pytest.mark.parametrize("name", ["scan.xy", "scan.xrdml", "scan.raw", "scan.rasx", "scan.brml"])
def test_every_xrd_seed_is_a_valid_scan(upload_dir: Path, name: str) -> None:
    """The seeds are valid files, so the mutations start from what a parser accepts."""
    exemplar = upload(upload_dir, name, SCANS[name][0])
    assert exemplar is not None and exemplar.modality == "xrd" and len(exemplar.scans[0].two_theta) == 200


@fuzz_settings(30)
@given(data=st.data())
def test_fuzz_bundle_members(bundle_members: dict[str, bytes], data: st.DataObject) -> None:
    members = dict(bundle_members)
    for member in data.draw(st.lists(st.sampled_from(sorted(members)), min_size=1, max_size=2), label="members"):
        members[member] = data.draw(mutated([members[member]]), label=member)
    refused_or_parsed(lambda: parse_members(members))


@fuzz_settings(20)
@given(data=st.data(), packing=st.sampled_from(["zip", "tar", "tar.gz"]))
def test_fuzz_bundle_archive(bundle_members: dict[str, bytes], data: st.DataObject, packing: str) -> None:
    members = {f"synth/{name}": content for name, content in bundle_members.items()}
    packed = zip_bytes(members) if packing == "zip" else _tar(members, "w" if packing == "tar" else "w:gz")
    content = data.draw(mutated([packed]), label="archive")
    refused_or_parsed(lambda: read_bundle(content, label="synth.zip"))


# ----------------------------------------------------------------------------------------------- found by fuzzing


def test_a_corrupt_gzip_stream_is_refused_in_one_line() -> None:
    """tarfile's error lists each compression it tried on its own line; the refusal keeps to one."""
    corrupt = b"\x1f\x8b\x08\x00" + bytes(range(200))
    refused_or_parsed(lambda: read_bundle(corrupt, label="synth.tar.gz"))
    with pytest.raises(InvalidArgument, match=r"^synth\.tar\.gz: not a readable tar archive \(.*method gz"):
        read_bundle(corrupt, label="synth.tar.gz")


@pytest.mark.parametrize("name", ["scan.xrdml", "scan.rasx", "scan.brml"])
def test_xml_in_an_unknown_encoding_is_refused(upload_dir: Path, name: str) -> None:
    """expat raised LookupError (INTERNAL) on an XML declaration naming an encoding it does not know."""

    def unknown(xml: bytes) -> bytes:
        return xml.replace(b'encoding="utf-8"', b'encoding="utfnan"').replace(b'encoding="UTF-8"', b'encoding="utfnan"')

    if name in SCAN_MEMBERS:
        content = zip_bytes({member: unknown(xml) for member, xml in SCAN_MEMBERS[name].items()})
    else:
        content = unknown(SCANS[name][0])
    path = upload_dir / name
    path.write_bytes(content)
    with pytest.raises(InvalidArgument, match=r"unsupported encoding|not a readable"):
        load_exemplar(path, name=name)


def test_a_2theta_that_is_not_an_angle_is_refused(upload_dir: Path) -> None:
    """One 2θ of 1e308 overflowed the step statistics to inf (a non-finite feature went to the estimator)."""
    content = xy_seed().replace(b"\n10.0000 ", b"\n1e308 ", 1)
    assert b"1e308" in content
    path = upload_dir / "scan.dat"
    path.write_bytes(content)
    with pytest.raises(InvalidArgument, match=r"point 1 has 2θ = 1e\+308"):
        load_exemplar(path, name="scan.dat")


def test_a_tiny_step_does_not_overflow_the_background_window(upload_dir: Path) -> None:
    """A RAW scan whose step is 1e-300 made a background window too large for scipy (OverflowError)."""
    raw = bytearray(raw_seed())
    struct.pack_into("<d", raw, 0x4FB, 0.0)  # start
    struct.pack_into("<d", raw, 0x20F, 1e-300)  # step
    exemplar = upload(upload_dir, "scan.raw", bytes(raw))
    assert exemplar is not None and exemplar.scans[0].two_theta[1] == 1e-300


@pytest.mark.parametrize("content", [b"\xef", b"\xef\xbb", b"\xef\xbb\xbf10 5\n20 7\n"])
def test_a_cut_byte_order_mark_is_read_as_a_legacy_encoding(upload_dir: Path, content: bytes) -> None:
    """utf-8-sig's incremental decoder accepted a cut BOM that bytes.decode refused (UnicodeDecodeError, found
    by make fuzz on .xye): the bytes are now judged without it."""
    upload(upload_dir, "scan.xye", content)  # parsed or refused as a scan, never an internal error


@pytest.mark.parametrize("opener", [b'{"a":', b"["])
def test_deeply_nested_json_lines_are_refused(upload_dir: Path, opener: bytes) -> None:
    """json.loads raised RecursionError (INTERNAL) on a line nested 100,000 levels deep."""
    path = upload_dir / "data.jsonl"
    path.write_bytes(opener * 100_000)
    with pytest.raises(InvalidArgument, match=r"^data\.jsonl: line 1 nests objects or arrays too deeply$"):
        load_exemplar(path, name="data.jsonl")


@pytest.mark.parametrize("metadata", [b"\xfb", b"{} x", b'{"columns": [}', b"{}", "a bad dtype"])
def test_parquet_with_broken_pandas_metadata_is_refused(upload_dir: Path, metadata: bytes | str) -> None:
    """pyarrow's to_pandas raised UnicodeDecodeError, JSONDecodeError, KeyError or TypeError (INTERNAL) on its
    pandas metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(make_table(20, 2, 2, 4), preserve_index=False)
    if metadata == "a bad dtype":  # found by make fuzz: a column's numpy_type that numpy does not know
        metadata = table.schema.metadata[b"pandas"].replace(b'"numpy_type": "float64"', b'"numpy_type": "rtr"', 1)
        assert b"rtr" in metadata
    path = upload_dir / "data.parquet"
    pq.write_table(table.replace_schema_metadata({b"pandas": metadata}), path)
    with pytest.raises(InvalidArgument, match=r"^data\.parquet: not a readable Parquet file"):
        load_exemplar(path, name="data.parquet")


def test_deeply_nested_library_yaml_is_refused(bundle_members: dict[str, bytes]) -> None:
    """yaml.safe_load raised RecursionError (INTERNAL) on a library.yaml nested 100,000 levels deep."""
    members = {**bundle_members, "library.yaml": b"[" * 100_000}
    with pytest.raises(InvalidArgument, match=r"^library\.yaml: nests mappings or lists too deeply$"):
        parse_members(members)
