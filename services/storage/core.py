"""Storage logic with no grpc: limits, dedup accounting, pointers, over a `BlobStore` backend."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from modsnet.runtime.errors import InvalidArgument, NotFound, ResourceExhausted

from .backends.base import BlobInfo, BlobStore, check_blob_id
from .config import StorageConfig
from .metrics import BLOB_BYTES_IN, BLOB_BYTES_OUT, BLOBS_DEDUPLICATED


def open_backend(config: StorageConfig) -> BlobStore:
    if config.storage_backend == "s3":
        from .backends.s3 import S3BlobStore  # imported here: the minio client is an optional extra

        assert config.s3_endpoint and config.s3_access_key and config.s3_secret_key
        return S3BlobStore(
            config.s3_endpoint,
            config.s3_access_key,
            config.s3_secret_key,
            config.s3_bucket,
            secure=config.s3_secure,
        )
    from .backends.local import LocalBlobStore

    return LocalBlobStore(config.home / "blobs")


class StorageCore:
    def __init__(self, store: BlobStore, *, max_upload_bytes: int):
        self.store = store
        self.max_upload_bytes = max_upload_bytes

    def put(self, chunks: Iterable[bytes], *, expected_sha256: str = "", size_hint: int = 0) -> BlobInfo:
        if size_hint > self.max_upload_bytes:
            raise ResourceExhausted(f"upload of {size_hint} bytes exceeds the limit of {self.max_upload_bytes} bytes")
        if expected_sha256:
            check_blob_id(expected_sha256.lower())
            try:
                info = self.store.stat(expected_sha256.lower())
            except NotFound:
                pass
            else:
                # Already stored: the client's stream is still read (and dropped) by the caller's
                # transport; we skip writing it a second time.
                for _ in chunks:
                    pass
                BLOBS_DEDUPLICATED.inc()
                return info

        def counted() -> Iterator[bytes]:
            for chunk in chunks:
                BLOB_BYTES_IN.inc(len(chunk))
                yield chunk

        return self.store.put(
            counted(), expected_sha256=expected_sha256.lower() or None, max_bytes=self.max_upload_bytes
        )

    def get(self, blob_id: str, offset: int = 0) -> Iterator[bytes]:
        if offset < 0:
            raise InvalidArgument("offset must be >= 0")
        stream = self.store.get(check_blob_id(blob_id), offset=offset)

        def counted() -> Iterator[bytes]:
            for chunk in stream:
                BLOB_BYTES_OUT.inc(len(chunk))
                yield chunk

        return counted()

    def stat(self, blob_id: str) -> BlobInfo:
        return self.store.stat(check_blob_id(blob_id))

    def delete(self, blob_id: str) -> bool:
        return self.store.delete(check_blob_id(blob_id))

    def set_pointer(self, name: str, blob_id: str) -> None:
        self.store.set_pointer(name, check_blob_id(blob_id))

    def get_pointer(self, name: str) -> str:
        blob_id = self.store.get_pointer(name)
        if blob_id is None:
            raise NotFound(f"pointer {name!r} is not set")
        return blob_id

    def check(self) -> None:
        self.store.check()

    def close(self) -> None:
        self.store.close()
