"""Safe reading of uploaded archives (zip, tar, tar.gz) and folders, member by member, in memory.

One reader for every upload that holds several files: library bundles (`modsnet.data.bundle`) and exemplar
archives (`modsnet.data.exemplar`). Members are read in memory, never extracted, so nothing is written
anywhere and a refused archive leaves nothing behind, partial or whole. Every broken or hostile case is
refused with a one-line message that starts with the archive's label and names the member:

- `InvalidArgument`: not a readable archive (truncated, corrupt stream, bad CRC), a member name that is
  absolute, has a drive letter or '..', the same name twice, a symbolic or hard link, a device or other
  special file, an encrypted member;
- `ResourceExhausted`: more members than `ArchiveLimits.max_members`, more unpacked bytes than
  `max_unpacked_bytes` (counted while inflating, whatever the headers say; the headers' declared total is
  checked first only so that an honest oversize archive is refused at once), or a member (for tar: the
  archive as a whole) that expands more than `max_expansion` times: real tables, texts and scans deflate
  3-20x, a bomb hundreds to thousands of times. Members under `expansion_exempt_bytes` are exempt.

Names are returned as relative POSIX paths (a Windows '\\' becomes '/'), sorted as a folder lists them.
OS litter (dot files, `__MACOSX/`, `Thumbs.db`, `desktop.ini`) is checked and counted like any member;
callers skip it with `is_litter`. Text members are decoded by `modsnet.data.text_decoding`.
"""

from __future__ import annotations

import io
import os
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

from modsnet.runtime.errors import InvalidArgument, ModsnetError, ResourceExhausted

__all__ = [
    "ArchiveLimits",
    "Budget",
    "Folder",
    "Members",
    "TarArchive",
    "ZipArchive",
    "archive_kind",
    "checked_name",
    "is_litter",
    "open_archive",
    "read_all",
]

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
_LITTER = re.compile(r"(^|/)(\.|__MACOSX(/|$)|Thumbs\.db$|desktop\.ini$)", re.IGNORECASE)
# Every error a stdlib archive reader raises on bytes that are not what they claim (a truncated file, a
# corrupt deflate stream, a bad CRC, an unsupported method, an encrypted member read without a password).
_UNPACK_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    tarfile.TarError,
    zlib.error,
    EOFError,
    NotImplementedError,
    RuntimeError,
    OSError,
    ValueError,
)


@dataclass(frozen=True)
class ArchiveLimits:
    """What one archive (with the archives nested in it) may hold."""

    max_members: int
    max_unpacked_bytes: int
    max_expansion: int = 200
    expansion_exempt_bytes: int = 1 << 20


class Budget:
    """Unpacked bytes still allowed for one upload, shared by the archives nested in it."""

    def __init__(self, limit: int):
        self.limit = limit
        self.remaining = limit

    def take(self, size: int, label: str, member: str) -> None:
        self.remaining -= size
        if self.remaining < 0:
            raise ResourceExhausted(
                f"{label}: member {member!r} unpacks past the limit of {self.limit:,} bytes (a zip bomb?)"
            )

    def check_declared(self, declared: int, label: str, member: str = "") -> None:
        """Refuse at once what the headers say is too much (an honest oversize archive or member)."""
        if declared > self.remaining:
            what = f"member {member!r} unpacks" if member else "unpacks"
            raise ResourceExhausted(f"{label}: {what} to {declared:,} bytes, more than the limit of {self.limit:,}")


class Members(Protocol):
    """Files of an archive or folder, by relative POSIX name, read whole or by their first bytes."""

    names: list[str]
    budget: Budget

    def read(self, member: str) -> bytes: ...

    def head(self, member: str, size: int) -> bytes: ...


Source = Path | bytes | BinaryIO


def archive_kind(head: bytes) -> str:
    """The kind of archive the first 262+ bytes announce: "zip", "tar" (plain or gzip-compressed) or "" (none)."""
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head.startswith(_GZIP_MAGIC) or head[257:262] == b"ustar":
        return "tar"
    return ""


def open_archive(
    source: Source, label: str, limits: ArchiveLimits, budget: Budget | None = None
) -> ZipArchive | TarArchive:
    """The zip or tar archive at `source`, its members checked; refused as described in the module docstring.

    A zip is read member by member on demand (so a sample of a large image archive inflates only the
    sample); a tar, which has no index, is read whole here. Use it as a context manager (a zip holds its file).
    """
    budget = budget or Budget(limits.max_unpacked_bytes)
    kind = archive_kind(_head(source))
    if kind == "zip":
        return ZipArchive(source, label, limits, budget)
    if kind == "tar":
        return TarArchive(source, label, limits, budget)
    raise InvalidArgument(f"{label}: not a zip or tar archive")


def read_all(members: Members) -> dict[str, bytes]:
    """Every member that is not OS litter, read whole (relative path -> bytes)."""
    return {name: members.read(name) for name in members.names if not is_litter(name)}


def is_litter(name: str) -> bool:
    """Files an OS leaves in folders (dot files, __MACOSX/, Thumbs.db, desktop.ini): never content."""
    return bool(_LITTER.search(name))


def checked_name(name: str, label: str) -> str:
    """`name` as a relative POSIX path; refused when absolute, with a drive letter or with '..'."""
    posix = name.replace("\\", "/")
    parts = PurePosixPath(posix).parts
    if posix.startswith("/") or re.match(r"[A-Za-z]:", posix) or ".." in parts:
        raise InvalidArgument(f"{label}: member {name!r} has an unsafe path (absolute or with '..')")
    return str(PurePosixPath(posix))


def _check_count(count: int, label: str, limits: ArchiveLimits) -> None:
    if count > limits.max_members:
        raise ResourceExhausted(f"{label}: {count:,} members, more than the limit of {limits.max_members:,}")


def _check_expansion(member: str, unpacked: int, packed: int, label: str, limits: ArchiveLimits) -> None:
    if unpacked > limits.expansion_exempt_bytes and unpacked > limits.max_expansion * max(packed, 1):
        ratio = unpacked // max(packed, 1)
        raise ResourceExhausted(
            f"{label}: member {member!r} expands {ratio:,} times "
            f"(more than {limits.max_expansion}): refused as a zip bomb"
        )


class ZipArchive:
    """A zip read safely in memory: unsafe names, links, encryption and oversize are refused at open."""

    def __init__(self, source: Source, label: str, limits: ArchiveLimits, budget: Budget):
        self._label, self.budget = label, budget
        try:
            self._zip = zipfile.ZipFile(source if isinstance(source, Path) else _file_object(source))
        except _UNPACK_ERRORS as exc:
            raise InvalidArgument(f"{label}: not a readable zip archive ({_reason(exc)})") from exc
        try:
            self._infos = self._checked(limits)
        except ModsnetError:
            self._zip.close()
            raise
        self.names = sorted(self._infos)  # as a folder lists them: same content, same order

    def __enter__(self) -> ZipArchive:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    def _checked(self, limits: ArchiveLimits) -> dict[str, zipfile.ZipInfo]:
        infos = [info for info in self._zip.infolist() if not info.is_dir()]
        _check_count(len(infos), self._label, limits)
        by_name: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = checked_name(info.filename, self._label)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise InvalidArgument(f"{self._label}: member {info.filename!r} is a symbolic link; links are refused")
            if info.flag_bits & 0x1:
                raise InvalidArgument(f"{self._label}: member {info.filename!r} is encrypted")
            _check_expansion(info.filename, info.file_size, info.compress_size, self._label, limits)
            if name in by_name:  # two members of one name: which one a reader sees would be a guess
                raise InvalidArgument(f"{self._label}: member {name!r} appears twice")
            by_name[name] = info
        self.budget.check_declared(sum(info.file_size for info in infos), self._label)
        return by_name

    def read(self, member: str) -> bytes:
        return b"".join(self.stream(member))

    def head(self, member: str, size: int) -> bytes:
        return next(self.stream(member, size), b"")

    def stream(self, member: str, chunk: int = _CHUNK) -> Iterator[bytes]:
        """The member's bytes in pieces, each counted against the budget as it is inflated."""
        try:
            with self._zip.open(self._infos[member]) as handle:
                while block := handle.read(chunk):
                    self.budget.take(len(block), self._label, member)
                    yield block
        except _UNPACK_ERRORS as exc:
            raise InvalidArgument(f"{self._label}: member {member!r} cannot be unpacked ({_reason(exc)})") from exc


class TarArchive:
    """A tar or tar.gz read whole, in memory, as it streams: links, devices and oversize are refused.

    Tar has no per-member compression, so the expansion check compares all bytes unpacked so far with the
    archive's size (a gzip bomb, or sparse members that inflate holes).
    """

    def __init__(self, source: Source, label: str, limits: ArchiveLimits, budget: Budget):
        self._label, self.budget = label, budget
        self._files: dict[str, bytes] = {}
        packed = _size(source)
        member = ""
        try:
            on_disk, fileobj = (source, None) if isinstance(source, Path) else (None, _file_object(source))
            with tarfile.open(name=on_disk, fileobj=fileobj, mode="r:*") as archive:
                unpacked = 0
                for entry in archive:
                    member = entry.name
                    if entry.isdir():
                        continue
                    path = checked_name(entry.name, label)
                    if entry.issym() or entry.islnk():
                        kind = "symbolic" if entry.issym() else "hard"
                        raise InvalidArgument(f"{label}: member {entry.name!r} is a {kind} link; links are refused")
                    if not entry.isfile():
                        raise InvalidArgument(f"{label}: member {entry.name!r} is a device or special file")
                    _check_count(len(self._files) + 1, label, limits)
                    if path in self._files:
                        raise InvalidArgument(f"{label}: member {path!r} appears twice")
                    self.budget.check_declared(entry.size, label, entry.name)
                    data = bytearray()
                    extracted = archive.extractfile(entry)
                    while extracted is not None and (block := extracted.read(_CHUNK)):
                        self.budget.take(len(block), label, entry.name)
                        unpacked += len(block)
                        _check_expansion(entry.name, unpacked, packed, label, limits)
                        data += block
                    self._files[path] = bytes(data)
                member = ""
                # tarfile stops at the end-of-archive marker; reading on to the end of the gzip stream is
                # what checks its CRC and length, and what inflates anything hidden after the marker.
                while block := (archive.fileobj.read(_CHUNK) if archive.fileobj else b""):
                    self.budget.take(len(block), label, "(after the end of the archive)")
                    unpacked += len(block)
                    _check_expansion("(after the end of the archive)", unpacked, packed, label, limits)
        except ModsnetError:
            raise
        except _UNPACK_ERRORS as exc:
            where = f"member {member!r} cannot be unpacked" if member else "not a readable tar archive"
            raise InvalidArgument(f"{label}: {where} ({_reason(exc)})") from exc
        self.names = sorted(self._files)

    def __enter__(self) -> TarArchive:
        return self

    def __exit__(self, *_: object) -> None:
        self._files.clear()

    def read(self, member: str) -> bytes:
        return self._files[member]

    def head(self, member: str, size: int) -> bytes:
        return self._files[member][:size]


class Folder:
    """A folder's files with the same limits and refusals as an archive (links and special files refused)."""

    def __init__(self, root: Path, label: str, limits: ArchiveLimits, budget: Budget | None = None):
        self._root, self._label = root, label
        self.budget = budget or Budget(limits.max_unpacked_bytes)
        self.names: list[str] = []
        for folder, dirs, files in os.walk(root):
            for entry in [*dirs, *files]:
                path = Path(folder) / entry
                relative = path.relative_to(root).as_posix()
                if path.is_symlink():
                    raise InvalidArgument(f"{label}: member {relative!r} is a symbolic link; links are refused")
                if entry in files and not path.is_file():
                    raise InvalidArgument(f"{label}: member {relative!r} is a device or special file")
            self.names += [(Path(folder) / f).relative_to(root).as_posix() for f in files]
            _check_count(len(self.names), label, limits)
        self.names.sort()

    def read(self, member: str) -> bytes:
        data = bytearray()
        with open(self._root / member, "rb") as handle:
            while block := handle.read(_CHUNK):  # in pieces: a file larger than the budget is never read whole
                self.budget.take(len(block), self._label, member)
                data += block
        return bytes(data)

    def head(self, member: str, size: int) -> bytes:
        with open(self._root / member, "rb") as handle:
            return handle.read(size)


def _reason(exc: BaseException) -> str:
    """A reader's error on one line: tarfile lists every compression it tried, one per line."""
    return " ".join(line.strip() for line in str(exc).splitlines()) or type(exc).__name__


def _file_object(source: bytes | BinaryIO) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, bytes) else source


def _head(source: Source) -> bytes:
    if isinstance(source, bytes):
        return source[:512]
    if isinstance(source, Path):
        with open(source, "rb") as handle:
            return handle.read(512)
    position = source.tell()
    head = source.read(512)
    source.seek(position)
    return head


def _size(source: Source) -> int:
    if isinstance(source, bytes):
        return len(source)
    if isinstance(source, Path):
        return source.stat().st_size
    position = source.tell()
    size = source.seek(0, os.SEEK_END) - position
    source.seek(position)
    return size
