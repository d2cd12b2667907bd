"""The blob store interface that every storage backend implements.

Blobs are content-addressed: the id is the lowercase hex sha256 of the bytes, so the same file put twice
is stored once. Pointers are small named references to a blob id (for example the current estimator
checkpoint of a library); a pointer is written only after its blob is complete, so a reader never sees a
pointer to a half-written object.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from modsnet.runtime.errors import InvalidArgument

CHUNK_SIZE = 1 << 20  # 1 MiB: the unit of streaming in and out of every backend
_BLOB_ID = re.compile(r"^[0-9a-f]{64}$")
# Slash-separated segments that each start with a letter or digit: no "a//b", "a/", "a/./b" aliases.
_POINTER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")


@dataclass(frozen=True)
class BlobInfo:
    blob_id: str  # hex sha256 of the content
    size: int  # bytes
    created_unix: float  # when it was first stored


def check_blob_id(blob_id: str) -> str:
    if not _BLOB_ID.match(blob_id or ""):
        raise InvalidArgument(f"blob id {blob_id!r} is not a 64-character lowercase hex sha256")
    return blob_id


def check_pointer_name(name: str) -> str:
    if not _POINTER.match(name or "") or len(name) > 200:
        raise InvalidArgument(
            f"pointer name {name!r} must be 1-200 characters: '/'-separated segments of letters, digits, "
            "'.', '_' and '-', each starting with a letter or digit"
        )
    return name


class BlobStore(abc.ABC):
    """Content-addressed blob storage. Implementations must be safe to call from many threads."""

    @abc.abstractmethod
    def put(
        self,
        chunks: Iterable[bytes],
        *,
        expected_sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> BlobInfo:
        """Store a stream of bytes and return its info.

        Nothing becomes visible until the whole stream has arrived and its sha256 is known. Raises
        `ResourceExhausted` as soon as more than `max_bytes` arrive (keeping nothing), `DataLoss` when
        `expected_sha256` is given and does not match (keeping nothing). Putting content that is already
        stored returns the existing blob's info.
        """

    @abc.abstractmethod
    def get(self, blob_id: str, *, offset: int = 0) -> Iterator[bytes]:
        """Stream a blob from `offset` in chunks of at most CHUNK_SIZE.

        Raises `NotFound` before yielding anything for an unknown id and `InvalidArgument` for a negative
        offset. When the whole object is hashed (always with offset 0; a backend may not be able to for a
        ranged read), `DataLoss` is raised after the last chunk, before returning normally, if the stored
        bytes no longer hash to the id. Callers that must not act on corrupt data buffer the stream and
        only use it once it has ended normally.
        """

    @abc.abstractmethod
    def stat(self, blob_id: str) -> BlobInfo:
        """Info of a stored blob; `NotFound` if absent."""

    @abc.abstractmethod
    def delete(self, blob_id: str) -> bool:
        """Remove a blob; returns whether it existed."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Blobs whose id starts with `prefix`, in id order."""

    @abc.abstractmethod
    def set_pointer(self, name: str, blob_id: str) -> None:
        """Point `name` at an existing blob (`NotFound` if the blob is absent). Atomic replace."""

    @abc.abstractmethod
    def get_pointer(self, name: str) -> str | None:
        """The blob id `name` points at, or None."""

    @abc.abstractmethod
    def check(self) -> None:
        """Raise `Unavailable` (naming the backend's address) when the backend cannot be used."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default has nothing to release."""
