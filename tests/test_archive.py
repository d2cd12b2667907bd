"""The one safe-archive reader, through both of its uses: a library bundle and an exemplar upload.

Every broken or hostile archive is refused by `read_bundle` and by `load_exemplar` alike, with the right
error type (INVALID_ARGUMENT or RESOURCE_EXHAUSTED over gRPC) and a one-line message that starts with the
file's name; nothing is written anywhere. Tar-only cases run through the bundle (exemplars take zips).
"""

from __future__ import annotations

import io
import os
import struct
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

import modsnet.data.bundle as bundle_module
from modsnet.data.archive import ArchiveLimits, Budget, Folder, TarArchive, is_litter, open_archive, read_all
from modsnet.data.bundle import read_bundle
from modsnet.data.exemplar import Limits, load_exemplar
from modsnet.data.text_decoding import decode_text
from modsnet.runtime.errors import InvalidArgument, ModsnetError, ResourceExhausted

TEXTS = {"pos/a.txt": b"a good product, it works " * 40, "neg/b.txt": b"it broke after a day " * 40}


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytearray:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", method) as archive:
        for member, content in members.items():
            archive.writestr(member, content)
    return bytearray(raw.getvalue())


def _headers(data: bytearray) -> tuple[int, int]:
    """Offsets of the first member's local header and central directory entry."""
    return data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")


def _encrypted() -> bytes:
    data = _zip(TEXTS)
    for at in (_headers(data)[0] + 6, _headers(data)[1] + 8):  # the general-purpose flags: bit 0 = encrypted
        struct.pack_into("<H", data, at, struct.unpack_from("<H", data, at)[0] | 0x1)
    return bytes(data)


def _corrupt_deflate() -> bytes:
    data = _zip(TEXTS)
    local = _headers(data)[0]
    name_length, extra_length = struct.unpack_from("<HH", data, local + 26)
    data[local + 30 + name_length + extra_length] = 0xFF  # a final block of the reserved type 3: invalid
    return bytes(data)


def _truncated() -> bytes:
    data = _zip(TEXTS)
    return bytes(data[: len(data) // 2])


def _bad_crc() -> bytes:
    data = _zip(TEXTS)
    local, central = _headers(data)
    for at in (local + 14, central + 16):
        struct.pack_into("<I", data, at, struct.unpack_from("<I", data, at)[0] ^ 0xFFFF)
    return bytes(data)


def _symlink() -> bytes:
    raw = io.BytesIO()
    link = zipfile.ZipInfo("pos/link.txt")
    link.external_attr = (0o120777 << 16) | 0x20
    with zipfile.ZipFile(raw, "w") as archive:
        archive.writestr("neg/b.txt", TEXTS["neg/b.txt"])
        archive.writestr(link, "/etc/passwd")
    return raw.getvalue()


# (case, archive bytes, error, what the message says); each use allows 3 members
ZIP_CASES: list[tuple[str, Callable[[], bytes], type[ModsnetError], str]] = [
    ("encrypted-member", _encrypted, InvalidArgument, "member 'pos/a.txt' is encrypted"),
    ("corrupt-deflate", _corrupt_deflate, InvalidArgument, "cannot be unpacked"),
    ("truncated", _truncated, InvalidArgument, "not a readable zip archive"),
    ("bad-crc", _bad_crc, InvalidArgument, "cannot be unpacked (Bad CRC-32"),
    ("path-traversal", lambda: bytes(_zip({**TEXTS, "../evil.txt": b"x"})), InvalidArgument, "unsafe path"),
    ("symlink-member", _symlink, InvalidArgument, "member 'pos/link.txt' is a symbolic link"),
    (
        "too-many-members",
        lambda: bytes(_zip({f"pos/{i}.txt": b"words" for i in range(4)})),
        ResourceExhausted,
        "4 members, more than the limit of 3",
    ),
    ("bomb-ratio", lambda: bytes(_zip({"pos/a.txt": b"0" * 3_000_000})), ResourceExhausted, "expands"),
]


def _bundle_use(path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(bundle_module, "MAX_MEMBERS", 3)
    read_bundle(path)
    return str(path)


def _exemplar_use(path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    load_exemplar(path, name=path.name, limits=Limits(max_members=3))
    return path.name


USES = {"bundle": (_bundle_use, str), "exemplar": (_exemplar_use, lambda p: p.name)}


def _refused(use: str, path: Path, error: type[ModsnetError], expected: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run `path` through one use; the error type, the file's name leading the message, nothing written."""
    run, label_of = USES[use]
    before = sorted(path.parent.rglob("*"))
    with pytest.raises(error) as caught:
        run(path, monkeypatch)  # type: ignore[operator]
    message = str(caught.value)
    assert message.startswith(f"{label_of(path)}: ") and "\n" not in message, message  # type: ignore[operator]
    assert expected in message, message
    assert sorted(path.parent.rglob("*")) == before
    return message


@pytest.mark.parametrize("use", USES)
@pytest.mark.parametrize(("case", "make", "error", "expected"), ZIP_CASES, ids=[c[0] for c in ZIP_CASES])
def test_broken_zip_is_refused_by_both_uses(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    use: str,
    case: str,
    make: Callable[[], bytes],
    error: type[ModsnetError],
    expected: str,
) -> None:
    path = tmp_path / f"{case}.zip"
    path.write_bytes(make())
    _refused(use, path, error, expected, monkeypatch)


@pytest.mark.parametrize(
    ("use", "expected"),
    [("bundle", "not a bundle (expected a folder, a .zip or a .tar.gz archive)"), ("exemplar", "not a zip archive")],
)
def test_not_an_archive_is_refused_by_both_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use: str, expected: str
) -> None:
    path = tmp_path / "upload.zip"
    path.write_bytes(b"just some text, named like an archive\n")
    _refused(use, path, InvalidArgument, expected, monkeypatch)


# ----------------------------------------------------------------------------------------------- tar (bundles)


def _tar(entries: list[tarfile.TarInfo | tuple[str, bytes]], *, gzip: bool = True) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz" if gzip else "w") as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                info = tarfile.TarInfo(entry[0])
                info.size = len(entry[1])
                tar.addfile(info, io.BytesIO(entry[1]))
    return raw.getvalue()


def _special(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _gzip_bad_crc() -> bytes:
    data = bytearray(_tar(list(TEXTS.items())))
    data[-8] ^= 0xFF  # the gzip trailer's CRC-32 of the whole stream
    return bytes(data)


TAR_CASES: list[tuple[str, Callable[[], bytes], type[ModsnetError], str]] = [
    ("truncated", lambda: _tar(list(TEXTS.items()))[:100], InvalidArgument, "cannot be unpacked"),
    ("bad-crc", _gzip_bad_crc, InvalidArgument, "CRC check failed"),
    ("path-traversal", lambda: _tar([*TEXTS.items(), ("../evil.txt", b"x")]), InvalidArgument, "unsafe path"),
    ("absolute-path", lambda: _tar([("/etc/evil.txt", b"x")]), InvalidArgument, "unsafe path"),
    (
        "symlink-member",
        lambda: _tar([_special("pos/link.txt", tarfile.SYMTYPE, "/etc/passwd")]),
        InvalidArgument,
        "member 'pos/link.txt' is a symbolic link",
    ),
    (
        "hard-link",
        lambda: _tar([*TEXTS.items(), _special("pos/hard.txt", tarfile.LNKTYPE, "neg/b.txt")]),
        InvalidArgument,
        "member 'pos/hard.txt' is a hard link",
    ),
    (
        "device",
        lambda: _tar([_special("dev/null", tarfile.CHRTYPE)]),
        InvalidArgument,
        "member 'dev/null' is a device or special file",
    ),
    (
        "too-many-members",
        lambda: _tar([(f"pos/{i}.txt", b"words") for i in range(4)]),
        ResourceExhausted,
        "4 members, more than the limit of 3",
    ),
    ("bomb-ratio", lambda: _tar([("pos/a.txt", b"0" * 3_000_000)]), ResourceExhausted, "expands"),
    ("duplicate", lambda: _tar([("a.txt", b"1"), ("a.txt", b"2")]), InvalidArgument, "member 'a.txt' appears twice"),
]


@pytest.mark.parametrize(("case", "make", "error", "expected"), TAR_CASES, ids=[c[0] for c in TAR_CASES])
def test_broken_tar_is_refused_by_the_bundle_reader(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    make: Callable[[], bytes],
    error: type[ModsnetError],
    expected: str,
) -> None:
    path = tmp_path / f"{case}.tar.gz"
    path.write_bytes(make())
    _refused("bundle", path, error, expected, monkeypatch)


# ----------------------------------------------------------------------------------------------- the reader itself

LIMITS = ArchiveLimits(max_members=10, max_unpacked_bytes=1 << 20)


@pytest.mark.parametrize("form", ["zip", "tar", "tar.gz", "file object"])
def test_every_form_reads_the_same_members(form: str) -> None:
    members = {**TEXTS, "win\\path.txt": b"w", "__MACOSX/._a.txt": b"litter", ".DS_Store": b"litter"}
    zipped = bytes(_zip(members))
    data: bytes | io.BytesIO = zipped
    if form == "tar":
        data = _tar(list(members.items()), gzip=False)
    elif form == "tar.gz":
        data = _tar(list(members.items()))
    elif form == "file object":
        data = io.BytesIO(zipped)
    with open_archive(data, "upload", LIMITS) as archive:
        assert archive.names == sorted(["pos/a.txt", "neg/b.txt", "win/path.txt", "__MACOSX/._a.txt", ".DS_Store"])
        assert read_all(archive) == {
            "pos/a.txt": TEXTS["pos/a.txt"],
            "neg/b.txt": TEXTS["neg/b.txt"],
            "win/path.txt": b"w",
        }
        assert archive.head("pos/a.txt", 6) == b"a good"


def test_unpacked_bytes_are_counted_while_inflating() -> None:
    """A tar header cannot understate its member (it sets how much is read), so its size is checked first."""
    data = _tar([("pos/a.txt", b"x" * 5000), ("neg/b.txt", b"y" * 5000)])
    with pytest.raises(ResourceExhausted, match=r"^upload: member 'pos/a\.txt' unpacks to 5,000 bytes, more than"):
        TarArchive(data, "upload", LIMITS, budget=_budget(4000))
    # The budget is shared (an archive nested in another spends what is left of its parent's).
    with pytest.raises(
        ResourceExhausted, match=r"member 'neg/b\.txt' unpacks to 5,000 bytes, more than the limit of 8,000"
    ):
        TarArchive(data, "upload", LIMITS, budget=_budget(8000, taken=3000))


def _budget(limit: int, taken: int = 0) -> Budget:
    budget = Budget(limit)
    budget.remaining -= taken
    return budget


def test_duplicate_zip_members_are_refused() -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = _duplicate_zip()
    with pytest.raises(InvalidArgument, match=r"member 'a\.txt' appears twice"):
        open_archive(data, "upload", LIMITS)


def _duplicate_zip() -> bytes:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as archive:
        archive.writestr("a.txt", "one")
        archive.writestr("a.txt", "two")
    return raw.getvalue()


def test_folders_refuse_links_and_special_files(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_bytes(b"fine")
    assert read_all(Folder(tmp_path / "data", "data", LIMITS)) == {"a.txt": b"fine"}
    os.mkfifo(tmp_path / "data" / "pipe")  # reading it would block forever
    with pytest.raises(InvalidArgument, match="data: member 'pipe' is a device or special file"):
        Folder(tmp_path / "data", "data", LIMITS)
    (tmp_path / "data" / "pipe").unlink()
    (tmp_path / "data" / "link.txt").symlink_to("/etc/passwd")
    with pytest.raises(InvalidArgument, match=r"data: member 'link\.txt' is a symbolic link"):
        Folder(tmp_path / "data", "data", LIMITS)


def test_litter() -> None:
    assert all(is_litter(n) for n in (".DS_Store", "x/.hidden", "__MACOSX/a", "a/Thumbs.db", "desktop.ini"))
    assert not any(is_litter(n) for n in ("a.txt", "x/y.csv", "macosx.txt"))


def test_one_text_decoder() -> None:
    assert decode_text("\ufeffcafé".encode(), "t") == "café"  # UTF-8, BOM dropped
    assert decode_text("café €".encode("cp1252"), "t") == "café €"  # Windows-1252 when not UTF-8
    assert decode_text(b"\x81\x8d", "t") == "\x81\x8d"  # Latin-1 decodes what cp1252 cannot
    with pytest.raises(InvalidArgument, match=r"^t: UTF-16 text is not supported"):
        decode_text("x".encode("utf-16"), "t")
    with pytest.raises(InvalidArgument, match=r"^t: not a text table \(binary content at byte 2\)$"):
        decode_text(b"ab\x00c", "t", what="a text table")
