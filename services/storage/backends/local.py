"""The embedded blob store: a local folder.

Layout under `root`: `blobs/ab/abcdef...` (the first two hex digits fan out directories),
`pointers/NAME` (a text file holding a blob id; '/' in NAME escaped as %2F), `tmp/` (uploads in
progress). Every write goes to `tmp/` first and is moved into place with `os.replace`, which is atomic
on one filesystem, so a crash mid-upload leaves only a temp file that the next start sweeps away.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import quote

from modsnet.runtime.errors import DataLoss, InvalidArgument, NotFound, OutOfRange, ResourceExhausted, Unavailable

from .base import CHUNK_SIZE, BlobInfo, BlobStore, check_blob_id, check_pointer_name

_STALE_TMP_SECONDS = 24 * 3600


class LocalBlobStore(BlobStore):
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self._blobs = self.root / "blobs"
        self._pointers = self.root / "pointers"
        self._tmp = self.root / "tmp"
        for folder in (self._blobs, self._pointers, self._tmp):
            folder.mkdir(parents=True, exist_ok=True)
        self._sweep_tmp()

    def _sweep_tmp(self) -> None:
        # Leftovers of uploads interrupted by a crash; a live upload is never this old.
        now = time.time()
        for leftover in self._tmp.iterdir():
            try:
                if now - leftover.stat().st_mtime > _STALE_TMP_SECONDS:
                    leftover.unlink()
            except OSError:
                pass

    def _path(self, blob_id: str) -> Path:
        check_blob_id(blob_id)
        return self._blobs / blob_id[:2] / blob_id

    def put(
        self,
        chunks: Iterable[bytes],
        *,
        expected_sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> BlobInfo:
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise ResourceExhausted(f"upload exceeds the limit of {max_bytes} bytes")
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            blob_id = digest.hexdigest()
            if expected_sha256 is not None and expected_sha256.lower() != blob_id:
                raise DataLoss(
                    f"upload checksum mismatch: client said sha256 {expected_sha256}, bytes hash to {blob_id}"
                )
            final = self._path(blob_id)
            if final.exists() and final.stat().st_size == size:
                os.unlink(tmp_name)  # already stored (a damaged copy of another size is replaced below)
            else:
                final.parent.mkdir(exist_ok=True)
                os.replace(tmp_name, final)
            return self.stat(blob_id)
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise

    def get(self, blob_id: str, *, offset: int = 0) -> Iterator[bytes]:
        if offset < 0:
            raise InvalidArgument(f"offset must be >= 0, not {offset}")
        path = self._path(blob_id)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed in the generator below
        except FileNotFoundError:
            raise NotFound(f"blob {blob_id} not found") from None
        size = os.fstat(handle.fileno()).st_size
        if offset > size:
            handle.close()
            raise OutOfRange(f"offset {offset:,} is past the end of blob {blob_id} ({size:,} bytes)")
        return self._stream(handle, blob_id, offset)

    @staticmethod
    def _stream(handle, blob_id: str, offset: int) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
        digest = hashlib.sha256()
        with handle:
            position = 0
            while chunk := handle.read(CHUNK_SIZE):
                digest.update(chunk)
                end = position + len(chunk)
                if end > offset:
                    yield chunk[max(0, offset - position) :]
                position = end
        if digest.hexdigest() != blob_id:
            raise DataLoss(f"blob {blob_id} is corrupt: its bytes hash to {digest.hexdigest()}")

    def stat(self, blob_id: str) -> BlobInfo:
        try:
            st = self._path(blob_id).stat()
        except FileNotFoundError:
            raise NotFound(f"blob {blob_id} not found") from None
        return BlobInfo(blob_id=blob_id, size=st.st_size, created_unix=st.st_mtime)

    def delete(self, blob_id: str) -> bool:
        try:
            self._path(blob_id).unlink()
            return True
        except FileNotFoundError:
            return False

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        for fan in sorted(self._blobs.iterdir()):
            if not fan.name.startswith(prefix[:2]):
                continue
            for path in sorted(fan.iterdir()):
                if path.name.startswith(prefix):
                    st = path.stat()
                    yield BlobInfo(blob_id=path.name, size=st.st_size, created_unix=st.st_mtime)

    def _pointer_path(self, name: str) -> Path:
        # One flat file per pointer ('/' escaped), so "a" and "a/b" can both exist.
        return self._pointers / quote(check_pointer_name(name), safe="")

    def set_pointer(self, name: str, blob_id: str) -> None:
        target = self._pointer_path(name)
        self.stat(blob_id)
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="pointer-")
        with os.fdopen(fd, "w") as out:
            out.write(blob_id)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, target)

    def get_pointer(self, name: str) -> str | None:
        try:
            return self._pointer_path(name).read_text().strip() or None
        except FileNotFoundError:
            return None

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise Unavailable(f"storage folder {self.root} is not writable")
