"""The S3 blob store (MinIO in production, any S3 API server works), through the `minio` client.

Layout in the bucket: `blobs/<sha256>` (the blob, with its sha256 also in the `x-amz-meta-sha256` header),
`pointers/NAME` (a tiny object holding a blob id), `staging/<uuid>` (uploads in progress). The sha256 of a
stream is known only at its end, so a put streams into a staging object (multipart, one part in memory at
a time), then copies it server-side to its content address and removes the staging object: readers never
see a partial blob, and the same content put twice is stored once. When the client sends the sha256 up
front (ModsNet's clients always do), the put goes straight to the content address instead: the upload
only completes if the bytes match, so nothing partial or wrong is ever visible there either.

The bucket is versioned where the server supports it, so an overwritten pointer or blob keeps its earlier
bytes. Versions we create only as a means (staging objects) are removed by version id, and `delete`
removes every version of a blob: a deleted blob frees its space.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import BinaryIO, cast

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import REPLACE, CopySource
from minio.datatypes import Object
from minio.error import MinioException, S3Error
from minio.helpers import MIN_PART_SIZE, check_bucket_name
from minio.versioningconfig import ENABLED, VersioningConfig

from modsnet.runtime.errors import (
    ConfigError,
    DataLoss,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
    Unavailable,
)

from .base import CHUNK_SIZE, BlobInfo, BlobStore, check_blob_id, check_pointer_name

log = logging.getLogger(__name__)

_BLOBS = "blobs/"
_POINTERS = "pointers/"
_STAGING = "staging/"
_SHA256_META = "x-amz-meta-sha256"
# A dead endpoint must fail in seconds, so connects time out fast and are retried twice at most. The read
# timeout is the longest silence between bytes: long enough for a server-side copy of a 5 GiB object. A
# failed read is retried once, which covers a pooled connection the server had closed.
_CONNECT_TIMEOUT_S = 3.0
_READ_TIMEOUT_S = 30.0
_STARTUP_WAIT_S = 10.0  # how long the constructor waits for a server that is still starting
_STALE_STAGING_S = 24 * 3600
_CREDENTIAL_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken"}
)
# Servers without bucket versioning answer NotImplemented (501 with a body) or, with no body, minio
# reports the 501 as MethodNotAllowed.
_NO_VERSIONING_CODES = frozenset({"NotImplemented", "MethodNotAllowed"})
# What a network failure surfaces as: urllib3's errors (MaxRetryError, ProtocolError, timeouts), minio's
# for answers that are not S3 (a proxy's error page, a bare 5xx), and a socket error that slipped through.
_NETWORK_ERRORS = (urllib3.exceptions.HTTPError, MinioException, ConnectionError)


class _SourceFailed(Exception):
    """Carries an error raised by the caller's chunk iterator through minio, so it is not taken for S3's."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


class _UploadStream:
    """The chunk iterator as the file-like object minio reads parts from.

    It hashes and counts bytes as they arrive and raises `ResourceExhausted` the moment the limit is
    passed, so an oversized upload stops mid-stream instead of after it has been stored.
    """

    def __init__(self, chunks: Iterable[bytes], max_bytes: int | None, expected_sha256: str | None = None):
        self._chunks = iter(chunks)
        self._max_bytes = max_bytes
        self._expected = expected_sha256
        self._pending = memoryview(b"")
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int) -> bytes:
        """`size` bytes, fewer only at the end of the stream.

        Filling the whole request at once lets minio take a part in one call instead of concatenating
        chunk after chunk.
        """
        pieces: list[memoryview] = []
        taken = 0
        while taken < size:
            if not self._pending:
                try:
                    chunk = next(self._chunks)
                except StopIteration:
                    self._check_end()
                    break
                except Exception as exc:
                    raise _SourceFailed(exc) from exc
                self._accept(chunk)
                self._pending = memoryview(chunk)
            piece = self._pending[: size - taken]
            self._pending = self._pending[len(piece) :]
            pieces.append(piece)
            taken += len(piece)
        return b"".join(pieces)

    def _check_end(self) -> None:
        """At the end of the stream, before the last part leaves: refuse bytes that miss the checksum."""
        if self._expected is not None and self.digest.hexdigest() != self._expected:
            raise DataLoss(
                f"upload checksum mismatch: client said sha256 {self._expected}, bytes hash to "
                f"{self.digest.hexdigest()}"
            )

    def _accept(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._max_bytes is not None and self.size > self._max_bytes:
            raise ResourceExhausted(f"upload exceeds the limit of {self._max_bytes} bytes")
        self.digest.update(chunk)


class S3BlobStore(BlobStore):
    """Blobs in one S3 bucket. Thread-safe: the minio client and its connection pool are."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool = False,
        region: str | None = None,
        part_size: int = 16 << 20,
    ):
        if part_size < MIN_PART_SIZE:
            raise ConfigError(f"S3 part size {part_size} is below the S3 minimum of {MIN_PART_SIZE} bytes")
        try:
            check_bucket_name(bucket)
        except ValueError as exc:
            raise ConfigError(f"S3 bucket name {bucket!r} is invalid: {exc}") from None
        self.endpoint = endpoint
        self.bucket = bucket
        self._part_size = part_size
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=_CONNECT_TIMEOUT_S, read=_READ_TIMEOUT_S),
            retries=urllib3.Retry(total=2, read=1, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
            maxsize=16,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        )
        try:
            self._client = Minio(endpoint, access_key, secret_key, secure=secure, region=region, http_client=self._http)
        except ValueError as exc:
            raise ConfigError(f"S3 endpoint {endpoint!r} is invalid: {exc}") from None
        self._wait_for_bucket()
        self._sweep_staging()

    # -- setup ------------------------------------------------------------------------------------------

    def _wait_for_bucket(self) -> None:
        """Create the bucket (and turn on versioning), waiting a few seconds for a server still starting."""
        deadline = time.monotonic() + _STARTUP_WAIT_S
        delay = 0.2
        while True:
            try:
                self._ensure_bucket()
                return
            except Unavailable:
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _ensure_bucket(self) -> None:
        with self._s3_errors("bucket setup"):
            if not self._client.bucket_exists(self.bucket):
                try:
                    self._client.make_bucket(self.bucket)
                except S3Error as exc:
                    if exc.code == "BucketAlreadyExists":
                        raise ConfigError(
                            f"S3 bucket {self.bucket} at {self.endpoint} belongs to another account"
                        ) from None
                    if exc.code != "BucketAlreadyOwnedByYou":  # lost a race with another replica
                        raise
            try:
                if self._client.get_bucket_versioning(self.bucket).status != ENABLED:
                    self._client.set_bucket_versioning(self.bucket, VersioningConfig(ENABLED))
            except S3Error as exc:
                if exc.code not in _NO_VERSIONING_CODES:
                    raise
                log.info("S3 endpoint %s has no bucket versioning; continuing without it", self.endpoint)

    def _sweep_staging(self) -> None:
        # Leftovers of uploads cut off by a crash; a live upload is never this old.
        cutoff = time.time() - _STALE_STAGING_S
        with self._s3_errors("staging sweep"):
            for obj in self._client.list_objects(self.bucket, prefix=_STAGING, recursive=True, include_version=True):
                if _unix(obj.last_modified) < cutoff:
                    self._client.remove_object(self.bucket, _name(obj), version_id=obj.version_id)

    # -- error translation ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _s3_errors(self, doing: str, *, missing: str | None = None) -> Iterator[None]:
        """Turn minio's and urllib3's errors into domain errors; `missing` is the NotFound message."""
        try:
            yield
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchVersion") and missing is not None:
                raise NotFound(missing) from None
            if exc.code in _CREDENTIAL_CODES:
                raise ConfigError(
                    f"S3 endpoint {self.endpoint} refused the credentials for bucket {self.bucket}: {exc.code}"
                ) from exc
            if exc.code == "NoSuchBucket":
                raise Unavailable(f"S3 bucket {self.bucket} does not exist at {self.endpoint}") from exc
            raise Internal(f"S3 {doing} failed at {self.endpoint}: {exc.code}: {exc.message}") from exc
        except _NETWORK_ERRORS as exc:
            raise Unavailable(f"S3 endpoint {self.endpoint} unreachable: {exc}") from exc

    # -- blobs ------------------------------------------------------------------------------------------

    def put(
        self,
        chunks: Iterable[bytes],
        *,
        expected_sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> BlobInfo:
        if expected_sha256 is not None:
            return self._put_at_address(chunks, expected_sha256.lower(), max_bytes)
        stream = _UploadStream(chunks, max_bytes)
        staging = f"{_STAGING}{uuid.uuid4().hex}"
        staged = False
        staged_version: str | None = None
        try:
            with self._s3_errors("upload"):
                # One part at a time: minio aborts a failed multipart upload without waiting for parts
                # still in flight on its upload threads, which could then land after the abort.
                written = self._client.put_object(
                    self.bucket,
                    staging,
                    cast(BinaryIO, stream),
                    length=-1,
                    part_size=self._part_size,
                    num_parallel_uploads=1,
                )
            staged, staged_version = True, written.version_id
            blob_id = stream.digest.hexdigest()
            if expected_sha256 is not None and expected_sha256.lower() != blob_id:
                raise DataLoss(
                    f"upload checksum mismatch: client said sha256 {expected_sha256}, bytes hash to {blob_id}"
                )
            with self._s3_errors("upload"):
                return self._promote(staging, staged_version, blob_id, stream.size)
        except _SourceFailed as failed:
            raise failed.error from None
        finally:
            if staged:
                self._remove_staging(staging, staged_version)

    def _put_at_address(self, chunks: Iterable[bytes], blob_id: str, max_bytes: int | None) -> BlobInfo:
        """With the checksum known up front, upload straight to the content address (no staging copy).

        S3 makes an object visible only when its upload completes, and the stream refuses to end (DataLoss,
        which makes minio abort the multipart upload) unless its bytes hash to `blob_id`, so a bad upload
        is never seen. Content already at the address is the same content, so overwriting it is harmless
        and repairs a damaged copy.
        """
        check_blob_id(blob_id)
        stream = _UploadStream(chunks, max_bytes, expected_sha256=blob_id)
        try:
            with self._s3_errors("upload"):
                self._client.put_object(
                    self.bucket,
                    _BLOBS + blob_id,
                    cast(BinaryIO, stream),
                    length=-1,
                    part_size=self._part_size,
                    num_parallel_uploads=1,
                    metadata={_SHA256_META: blob_id},
                )
        except _SourceFailed as failed:
            raise failed.error from None
        return self.stat(blob_id)

    def _promote(self, staging: str, version: str | None, blob_id: str, size: int) -> BlobInfo:
        """Copy a complete staging object to its content address, unless a sound copy is already there.

        An object at the address that lacks our checksum header or has the wrong size was not written by
        a put (or was damaged) and is replaced rather than trusted.
        """
        key = _BLOBS + blob_id
        try:
            existing = self._client.stat_object(self.bucket, key)
        except S3Error as exc:
            if exc.code != "NoSuchKey":
                raise
        else:
            if existing.size == size and (existing.metadata or {}).get(_SHA256_META) == blob_id:
                return BlobInfo(blob_id=blob_id, size=size, created_unix=_unix(existing.last_modified))
        self._client.copy_object(
            self.bucket,
            key,
            CopySource(self.bucket, staging, version_id=version),
            metadata={_SHA256_META: blob_id, "Content-Type": "application/octet-stream"},
            metadata_directive=REPLACE,
        )
        # Stat rather than the copy's own timestamp, which servers give at a finer grain than stat does.
        return self.stat(blob_id)

    def _remove_staging(self, staging: str, version: str | None) -> None:
        # Best effort: the upload's outcome is already decided, and the next start sweeps what is left.
        try:
            with self._s3_errors("staging cleanup"):
                self._client.remove_object(self.bucket, staging, version_id=version)
        except (Unavailable, Internal, ConfigError) as exc:
            log.warning("could not remove staging object %s: %s", staging, exc)

    def get(self, blob_id: str, *, offset: int = 0) -> Iterator[bytes]:
        key = _BLOBS + check_blob_id(blob_id)
        if offset < 0:
            raise InvalidArgument(f"offset {offset} is negative")
        with self._s3_errors(f"read of blob {blob_id}", missing=f"blob {blob_id} not found"):
            try:
                response = self._client.get_object(self.bucket, key, offset=offset)
            except S3Error as exc:
                if exc.code != "InvalidRange":
                    raise
                # The range starts at or past the end: nothing to read at the end, an error past it.
                size = self.stat(blob_id).size
                if offset > size:
                    raise OutOfRange(f"offset {offset:,} is past the end of blob {blob_id} ({size:,} bytes)") from None
                return iter(())
        return self._stream(response, blob_id, verify=offset == 0)

    def _stream(self, response: urllib3.BaseHTTPResponse, blob_id: str, *, verify: bool) -> Iterator[bytes]:
        """Yield the body in CHUNK_SIZE pieces; a read from the start is checked against the id."""
        digest = hashlib.sha256()
        try:
            with self._s3_errors(f"read of blob {blob_id}"):
                for chunk in response.stream(CHUNK_SIZE):
                    if verify:
                        digest.update(chunk)
                    yield chunk
        finally:
            response.close()
            response.release_conn()
        if verify and digest.hexdigest() != blob_id:
            raise DataLoss(f"blob {blob_id} is corrupt: its bytes hash to {digest.hexdigest()}")

    def stat(self, blob_id: str) -> BlobInfo:
        key = _BLOBS + check_blob_id(blob_id)
        with self._s3_errors(f"stat of blob {blob_id}", missing=f"blob {blob_id} not found"):
            found = self._client.stat_object(self.bucket, key)
        return BlobInfo(blob_id=blob_id, size=found.size or 0, created_unix=_unix(found.last_modified))

    def delete(self, blob_id: str) -> bool:
        key = _BLOBS + check_blob_id(blob_id)
        try:
            self.stat(blob_id)
            existed = True
        except NotFound:
            existed = False
        with self._s3_errors(f"delete of blob {blob_id}"):
            for obj in self._client.list_objects(self.bucket, prefix=key, include_version=True):
                if obj.object_name == key:
                    self._client.remove_object(self.bucket, key, version_id=obj.version_id)
        return existed

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        with self._s3_errors("listing"):
            for obj in self._client.list_objects(self.bucket, prefix=_BLOBS + prefix, recursive=True):
                yield BlobInfo(
                    blob_id=_name(obj)[len(_BLOBS) :],
                    size=obj.size or 0,
                    created_unix=_unix(obj.last_modified),
                )

    # -- pointers ---------------------------------------------------------------------------------------

    def set_pointer(self, name: str, blob_id: str) -> None:
        key = _POINTERS + check_pointer_name(name)
        self.stat(blob_id)
        body = blob_id.encode()
        with self._s3_errors(f"write of pointer {name}"):
            self._client.put_object(self.bucket, key, io.BytesIO(body), len(body), content_type="text/plain")

    def get_pointer(self, name: str) -> str | None:
        key = _POINTERS + check_pointer_name(name)
        try:
            with self._s3_errors(f"read of pointer {name}", missing=f"pointer {name} not found"):
                response = self._client.get_object(self.bucket, key)
                try:
                    body = response.read()
                finally:
                    response.close()
                    response.release_conn()
        except NotFound:
            return None
        return body.decode().strip() or None

    # -- lifecycle --------------------------------------------------------------------------------------

    def check(self) -> None:
        with self._s3_errors("health check"):
            exists = self._client.bucket_exists(self.bucket)
        if not exists:
            raise Unavailable(f"S3 bucket {self.bucket} does not exist at {self.endpoint}")

    def close(self) -> None:
        self._http.clear()


def _name(obj: Object) -> str:
    return cast(str, obj.object_name)


def _unix(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else time.time()
