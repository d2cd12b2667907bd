"""A corpus of broken and hostile uploads: each is refused with the right status and a message naming the file.

Every case asserts the exception type (INVALID_ARGUMENT or RESOURCE_EXHAUSTED), that the one-line message
starts with the upload's name, and what it says is wrong. The files are made here, byte by byte.
"""

from __future__ import annotations

import io
import os
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from modsnet.data.exemplar import Limits, load_exemplar
from modsnet.runtime.errors import InvalidArgument, ModsnetError, ResourceExhausted

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<xrdMeasurements xmlns="http://www.xrdml.com/XRDMeasurement/1.5"><comment>&lol9;</comment></xrdMeasurements>
"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<xrdMeasurements xmlns="http://www.xrdml.com/XRDMeasurement/1.5"><comment>&secret;</comment></xrdMeasurements>
"""

XRDML_WITHOUT_INTENSITIES = b"""<?xml version="1.0" encoding="UTF-8"?>
<xrdMeasurements xmlns="http://www.xrdml.com/XRDMeasurement/1.5">
 <xrdMeasurement measurementType="Scan"><scan><dataPoints>
  <positions axis="2Theta" unit="deg"><startPosition>10</startPosition><endPosition>80</endPosition></positions>
  <commonCountingTime unit="seconds">1.0</commonCountingTime>
 </dataPoints></scan></xrdMeasurement>
</xrdMeasurements>
"""


def _refused(path: Path, error: type[ModsnetError], expected: str, **options: object) -> str:
    """Load `path`, expect `error`, and check the message names the file and says `expected`."""
    with pytest.raises(error) as caught:
        load_exemplar(path, name=path.name, **options)  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith(f"{path.name}: ") and "\n" not in message, message
    assert expected in message, message
    return message


def _write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def _zip(tmp_path: Path, name: str, members: dict[str, bytes]) -> Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, content in members.items():
            archive.writestr(member, content)
    return path


def _png(side: int = 8) -> bytes:
    """A PNG of noise, so its compressed pixel data is long enough to cut in the middle."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(side).integers(0, 256, (side, side, 3), np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------- tables

TABLES = [
    ("empty.csv", b"", "the file is empty"),
    ("header_only.csv", b"a,b,c\n", "no data rows after the header"),
    ("one_column.csv", b"value\n1\n2\n3\n", "only one column ('value')"),
    ("one_class.csv", b"x,label\n1,a\n2,a\n3,a\n", "column 'label' has only one class"),
    ("utf16.csv", "a,b\n1,x\n2,y\n".encode("utf-16"), "UTF-16 text is not supported"),
    ("nan.csv", b"a,b\nnan,inf\n-inf,NaN\n", "no usable values (every cell is empty, NaN or inf)"),
    ("garbage.csv", b"id,value\n1,2\n" + bytes(range(256)) * 4, "not a text table (binary content at byte 13)"),
    ("legacy.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504), "a legacy binary Office file (.xls)"),
    ("not.parquet", b"a,b\n1,2\n", "named .parquet but the content is not a Parquet file"),
    ("table.csv.gz", b"\x1f\x8b\x08\x00" + bytes(16), "gzip-compressed"),
]


@pytest.mark.parametrize(("name", "content", "expected"), TABLES, ids=[t[0] for t in TABLES])
def test_broken_tables(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    _refused(_write(tmp_path, name, content), InvalidArgument, expected)


def test_parquet_of_nan_only(tmp_path: Path) -> None:
    pd.DataFrame({"a": [np.nan, np.inf], "b": [np.nan, -np.inf]}).to_parquet(tmp_path / "nan.parquet")
    _refused(tmp_path / "nan.parquet", InvalidArgument, "no usable values")


def test_text_tables_without_usable_texts_or_labels(tmp_path: Path) -> None:
    sentences = [f"this is review number {i} of a product that broke" for i in range(6)]
    same_label = pd.DataFrame({"text": sentences, "label": ["good"] * 6})
    same_label.to_csv(tmp_path / "one_label.csv", index=False)
    _refused(tmp_path / "one_label.csv", InvalidArgument, "column 'label' has only one class")
    _refused(tmp_path / "one_label.csv", InvalidArgument, "no column 'stars'", target="stars")
    _write(tmp_path, "bad.jsonl", b'{"text": "fine", "label": "a"}\n{"text": broken}\n')
    _refused(tmp_path / "bad.jsonl", InvalidArgument, "line 2 is not JSON")


# ----------------------------------------------------------------------------------------------- texts and images


def test_text_file_in_a_wrong_encoding(tmp_path: Path) -> None:
    members = {"pos/a.txt": b"good", "neg/b.txt": "schlecht".encode("utf-16")}
    _refused(_zip(tmp_path, "texts.zip", members), InvalidArgument, "member 'neg/b.txt': UTF-16 text is not supported")
    members = {"pos/a.txt": b"good", "neg/b.txt": b"\x00\x01binary\x02"}
    _refused(_zip(tmp_path, "binary.zip", members), InvalidArgument, "member 'neg/b.txt': not text (binary content")


def test_image_that_does_not_decode(tmp_path: Path) -> None:
    members = {"cats/a.png": _png(), "dogs/b.png": _png(32)[:1500]}  # a PNG cut short inside its pixel data
    _refused(_zip(tmp_path, "pets.zip", members), InvalidArgument, "'dogs/b.png': the image does not decode")
    members = {"cats/a.png": _png(), "dogs/b.png": b"just text, named like a picture"}
    _refused(_zip(tmp_path, "fake.zip", members), InvalidArgument, "'dogs/b.png' is not a PNG or JPEG image")
    _refused(_write(tmp_path, "fake.png", b"not an image"), InvalidArgument, "named .png but the content is not")


def test_images_past_the_limits(tmp_path: Path) -> None:
    members = {f"class{i % 2}/{i}.png": _png() for i in range(3)}
    _refused(
        _zip(tmp_path, "many.zip", members),
        ResourceExhausted,
        "3 images, more than the limit of 2",
        limits=Limits(max_images=2),
    )
    big = _write(tmp_path, "big.png", _png(64))
    _refused(big, ResourceExhausted, "64×64 pixels, more than the limit of 1,000", limits=Limits(max_image_pixels=1000))


def test_files_outside_the_class_folders(tmp_path: Path) -> None:
    members = {"cats/a.png": _png(), "dogs/b.png": _png(), "c.png": _png()}
    _refused(_zip(tmp_path, "loose.zip", members), InvalidArgument, "'c.png' is outside the class folders")


# ----------------------------------------------------------------------------------------------- XRD


def test_scans_without_intensities(tmp_path: Path) -> None:
    _refused(_write(tmp_path, "angles.xy", b"# 2theta only\n10.0\n10.1\n"), InvalidArgument, "line 2 has one number")
    _refused(_write(tmp_path, "header.xy", b"# wavelength 1.54\n# nothing else\n"), InvalidArgument, "no intensities")
    rows = "".join(f"{10 + i * 0.02:.2f} nan\n" for i in range(50)).encode()
    _refused(_write(tmp_path, "nan.xy", rows), InvalidArgument, "no usable intensities (every value is NaN or inf)")
    _refused(_write(tmp_path, "scan.xrdml", XRDML_WITHOUT_INTENSITIES), InvalidArgument, "no intensities")
    few = b"".join(f"{i} {i}\n".encode() for i in range(5))
    _refused(_write(tmp_path, "short.xy", few), InvalidArgument, "only 5 points; a scan needs at least 10")


def test_broken_instrument_files(tmp_path: Path) -> None:
    _refused(_write(tmp_path, "old.raw", b"RAW1.01" + bytes(200)), InvalidArgument, "named .raw but the content is not")
    _refused(_write(tmp_path, "cut.raw", b"RAW4.00" + bytes(200)), InvalidArgument, "not a readable .raw scan")
    rasx = _zip(tmp_path, "bad.rasx", {"Data0/Profile0.txt": b"\xef\xbb\xbfnot numbers", "root.xml": b"<root/>"})
    _refused(rasx, InvalidArgument, "not a readable .rasx scan")
    _refused(_write(tmp_path, "notes.xml", b"<notes><a/></notes>"), InvalidArgument, "XML, but not a PANalytical")


@pytest.mark.parametrize("content", [BILLION_LAUGHS, XXE], ids=["billion-laughs", "external-entity"])
def test_xml_entities_are_refused_at_once(tmp_path: Path, content: bytes) -> None:
    started = time.perf_counter()
    _refused(_write(tmp_path, "bomb.xrdml", content), InvalidArgument, "XML with a DTD or entities is refused")
    assert time.perf_counter() - started < 1.0
    brml = _zip(tmp_path, "bomb.brml", {"Experiment0/DataContainer.xml": content})
    _refused(brml, InvalidArgument, "member 'Experiment0/DataContainer.xml': XML with a DTD or entities is refused")


# ----------------------------------------------------------------------------------------------- archives


def test_zip_bomb(tmp_path: Path) -> None:
    bomb = _zip(tmp_path, "bomb.zip", {"a/1.txt": b"0" * 20_000_000, "b/2.txt": b"1"})
    assert bomb.stat().st_size < 100_000
    _refused(bomb, ResourceExhausted, "member 'a/1.txt' expands")
    _refused(
        bomb,
        ResourceExhausted,
        "unpacks to 20,000,001 bytes, more than the limit of 10,000,000",
        limits=Limits(max_unpacked_bytes=10_000_000, max_expansion=1_000_000),
    )


def test_zip_headers_that_claim_too_much_or_too_little(tmp_path: Path) -> None:
    """Headers claiming 8.6 GB are refused before inflating; one claiming less than the data fails its check."""
    path = _zip(tmp_path, "claims.zip", {"a/1.txt": b"x" * 1000, "b/2.txt": b"y"})
    data = bytearray(path.read_bytes())
    first = data.index(b"PK\x01\x02")
    for central in (first, data.index(b"PK\x01\x02", first + 1)):
        struct.pack_into("<I", data, central + 24, 0xFFFFFFF0)  # uncompressed size: about 4.3 GB each
    path.write_bytes(bytes(data))
    started = time.perf_counter()
    _refused(path, ResourceExhausted, "member 'a/1.txt' expands 390,451,570 times")
    _refused(
        path,
        ResourceExhausted,
        "unpacks to 8,589,934,560 bytes, more than the limit of 4,294,967,296",
        limits=Limits(max_expansion=1 << 40),
    )
    assert time.perf_counter() - started < 1.0
    struct.pack_into("<I", data, first + 24, 10)  # claims 10 bytes, inflates to 1,000
    struct.pack_into("<I", data, data.index(b"PK\x01\x02", first + 1) + 24, 1)
    path.write_bytes(bytes(data))
    _refused(path, InvalidArgument, "member 'a/1.txt' cannot be unpacked")


@pytest.mark.parametrize("member", ["../evil.txt", "/etc/evil.txt", "texts/../../evil.txt", "C:/evil.txt"])
def test_path_traversal(tmp_path: Path, member: str) -> None:
    path = _zip(tmp_path, "traversal.zip", {"texts/a.txt": b"fine", member: b"evil"})
    _refused(path, InvalidArgument, f"member {member!r} has an unsafe path")


def test_symlink_and_encrypted_members(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("texts/link.txt")
    link.external_attr = (0o120777 << 16) | 0x20
    path = tmp_path / "links.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("texts/a.txt", "fine")
        archive.writestr(link, "/etc/passwd")
    _refused(path, InvalidArgument, "member 'texts/link.txt' is a symbolic link")
    data = bytearray(_zip(tmp_path, "locked.zip", {"texts/a.txt": b"secret"}).read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature) + offset
        struct.pack_into("<H", data, at, struct.unpack_from("<H", data, at)[0] | 0x1)
    _refused(_write(tmp_path, "locked.zip", bytes(data)), InvalidArgument, "member 'texts/a.txt' is encrypted")


def test_size_limits(tmp_path: Path) -> None:
    table = _write(tmp_path, "table.csv", b"a,b,c\n1,2,x\n3,4,y\n5,6,x\n")
    _refused(table, ResourceExhausted, "bytes, more than the limit of 10", limits=Limits(max_bytes=10))
    _refused(table, ResourceExhausted, "3 rows, more than the limit of 2", limits=Limits(max_rows=2))
    _refused(table, ResourceExhausted, "3 columns, more than the limit of 2", limits=Limits(max_columns=2))
    members = {f"t/{i}.txt": b"words" for i in range(4)}
    _refused(
        _zip(tmp_path, "members.zip", members),
        ResourceExhausted,
        "4 members, more than the limit of 3",
        limits=Limits(max_members=3),
    )


def test_nothing_is_kept_from_a_refused_upload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No file appears anywhere we look, and no descriptor (the in-memory copy for the XRD reader) leaks."""
    monkeypatch.setenv("MODSNET_HOME", str(tmp_path / "home"))
    path = _zip(tmp_path, "scans.zip", {"scans/a.raw": b"RAW4.00" + bytes(300), "scans/b.raw": b"RAW4.00"})
    before_files, before_fds = sorted(tmp_path.rglob("*")), len(os.listdir("/proc/self/fd"))
    _refused(path, InvalidArgument, "not a readable .raw scan")
    assert sorted(tmp_path.rglob("*")) == before_files
    assert len(os.listdir("/proc/self/fd")) == before_fds
