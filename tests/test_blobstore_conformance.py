"""One conformance suite for every `BlobStore` backend, so the embedded and the real one cannot drift apart.

Each test runs against the local folder store, against `S3BlobStore` on a real SeaweedFS server, and
against `S3BlobStore` on moto's in-memory S3 (quick, needs no binary, and a second S3 implementation the
store must agree with); every S3 test has its own bucket. The S3 store uses the smallest legal part size,
so a 12 MiB upload already goes multipart. A few S3-only tests at the end cover what only a network
backend has: a server that goes away and comes back, one that is not there at all, wrong credentials.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from minio import Minio
from minio.helpers import MIN_PART_SIZE
from s3server import SeaweedS3, seaweed_s3  # noqa: F401 - seaweed_s3 is a fixture used by name

from modsnet.runtime.errors import (
    ConfigError,
    DataLoss,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
    Unavailable,
)
from services.storage.backends import s3 as s3_backend
from services.storage.backends.base import CHUNK_SIZE, BlobStore
from services.storage.backends.local import LocalBlobStore
from services.storage.backends.s3 import S3BlobStore

MIB = 1 << 20
MULTIPART_SIZE = 12 * MIB  # more than two S3 parts of MIN_PART_SIZE


@dataclass
class Backend:
    """A store under test plus the backdoors the contract needs checked from outside."""

    store: BlobStore
    corrupt: Callable[[str], None]  # change a stored blob's bytes behind the store's back
    leftovers: Callable[[], list[str]]  # temporary upload objects still present
    plant_stale_upload: Callable[[], None]  # what a process killed mid-upload leaves, long ago
    reopen: Callable[[], BlobStore]  # a new store on the same data, as after a restart


def _local_backend(root: Path) -> Backend:
    def corrupt(blob_id: str) -> None:
        path = root / "blobs" / blob_id[:2] / blob_id
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    def plant_stale_upload() -> None:
        leftover = root / "tmp" / "upload-killed"
        leftover.write_bytes(b"half an upload")
        two_days_ago = time.time() - 2 * 86400
        os.utime(leftover, (two_days_ago, two_days_ago))

    return Backend(
        store=LocalBlobStore(root),
        corrupt=corrupt,
        leftovers=lambda: sorted(path.name for path in (root / "tmp").iterdir()),
        plant_stale_upload=plant_stale_upload,
        reopen=lambda: LocalBlobStore(root),
    )


def _s3_backend(endpoint: str, access_key: str, secret_key: str) -> Backend:
    bucket = f"conformance-{uuid.uuid4().hex[:16]}"
    store = S3BlobStore(endpoint, access_key, secret_key, bucket, part_size=MIN_PART_SIZE)
    raw = Minio(endpoint, access_key, secret_key, secure=False)

    def corrupt(blob_id: str) -> None:
        damaged = b"these are not the bytes that were stored"
        raw.put_object(bucket, f"blobs/{blob_id}", io.BytesIO(damaged), len(damaged))

    def leftovers() -> list[str]:
        # Every version and delete marker counts: a staging object must leave no trace at all.
        found = raw.list_objects(bucket, prefix="staging/", recursive=True, include_version=True)
        return sorted(f"{obj.object_name}@{obj.version_id}" for obj in found)

    def plant_stale_upload() -> None:
        raw.put_object(bucket, f"staging/{uuid.uuid4().hex}", io.BytesIO(b"half an upload"), 14)

    return Backend(
        store=store,
        corrupt=corrupt,
        leftovers=leftovers,
        plant_stale_upload=plant_stale_upload,
        reopen=lambda: S3BlobStore(endpoint, access_key, secret_key, bucket, part_size=MIN_PART_SIZE),
    )


def _seaweed_backend(server: SeaweedS3) -> Backend:
    return _s3_backend(server.endpoint, server.access_key, server.secret_key)


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[str]:
    """moto's S3 server on a free port (it accepts any credentials); yields its endpoint."""
    from moto.server import ThreadedMotoServer  # imported here: heavy, and only the moto tests need it

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"{host}:{port}"
    server.stop()


@pytest.fixture(params=["local", pytest.param("seaweedfs", marks=pytest.mark.integration), "moto"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    # Servers are requested by name so that a local-only run never starts one.
    if request.param == "local":
        made = _local_backend(tmp_path / "store")
    elif request.param == "seaweedfs":
        made = _seaweed_backend(request.getfixturevalue("seaweed_s3"))
    else:
        made = _s3_backend(request.getfixturevalue("moto_s3"), "moto-key", "moto-secret")
    yield made
    made.store.close()


@pytest.fixture
def store(backend: Backend) -> BlobStore:
    return backend.store


# -- data ---------------------------------------------------------------------------------------------


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def irregular(data: bytes, seed: int = 1) -> Iterator[bytes]:
    """`data` cut at random places (up to 2 MiB a piece), so no backend can lean on the caller's chunking."""
    rng = random.Random(seed)
    position = 0
    while position < len(data):
        step = rng.randint(1, 2 * MIB)
        yield data[position : position + step]
        position += step


def generated(size: int, seed: int, sink: Callable[[bytes], object]) -> Iterator[bytes]:
    """`size` pseudo-random bytes made chunk by chunk (never all in memory), each also passed to `sink`."""
    rng = random.Random(seed)
    left = size
    while left:
        chunk = rng.randbytes(min(CHUNK_SIZE, left))
        sink(chunk)
        left -= len(chunk)
        yield chunk


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_all(store: BlobStore, blob_id: str, offset: int = 0) -> bytes:
    chunks = list(store.get(blob_id, offset=offset))
    assert all(0 < len(chunk) <= CHUNK_SIZE for chunk in chunks)
    return b"".join(chunks)


def ids(store: BlobStore, prefix: str = "") -> list[str]:
    return [info.blob_id for info in store.list(prefix)]


class Interrupted(Exception):
    """What a client stream raises when the client goes away mid-upload."""


def failing_after(chunks: Iterable[bytes], count: int) -> Iterator[bytes]:
    for index, chunk in enumerate(chunks):
        if index == count:
            raise Interrupted("client went away")
        yield chunk


# -- round trips --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size", [0, 1, int(3.5 * CHUNK_SIZE), MULTIPART_SIZE], ids=["empty", "1B", "3.5chunks", "12MiB"]
)
def test_round_trip(store: BlobStore, size: int) -> None:
    data = payload(size, seed=size)
    info = store.put(irregular(data))
    assert info.blob_id == sha256(data)
    assert info.size == size
    assert store.stat(info.blob_id) == info
    assert read_all(store, info.blob_id) == data


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_round_trip_200mb_stream(store: BlobStore, request: pytest.FixtureRequest) -> None:
    size = 200 * MIB
    sent = hashlib.sha256()
    started = time.perf_counter()
    info = store.put(generated(size, seed=200, sink=sent.update))
    put_s = time.perf_counter() - started
    assert (info.blob_id, info.size) == (sent.hexdigest(), size)

    received = hashlib.sha256()
    count = 0
    started = time.perf_counter()
    for chunk in store.get(info.blob_id):
        received.update(chunk)
        count += len(chunk)
    get_s = time.perf_counter() - started
    assert (received.hexdigest(), count) == (info.blob_id, size)
    rates = f"put {size / MIB / put_s:.0f} MiB/s, get {size / MIB / get_s:.0f} MiB/s"
    print(f"{request.node.name}: {rates}")


# -- deduplication ------------------------------------------------------------------------------------


def test_same_content_twice_is_stored_once(store: BlobStore) -> None:
    data = payload(3 * CHUNK_SIZE + 7)
    first = store.put(irregular(data, seed=1))
    second = store.put(irregular(data, seed=2))
    assert second == first  # same id, and the first copy kept (same creation time)
    assert ids(store) == [first.blob_id]


def test_concurrent_puts_of_same_content_make_one_blob(store: BlobStore) -> None:
    data = payload(2 * CHUNK_SIZE + 3, seed=4)
    start = threading.Barrier(4)
    results: list[str] = []
    errors: list[BaseException] = []

    def upload() -> None:
        start.wait()
        try:
            results.append(store.put(irregular(data)).blob_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upload) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == [sha256(data)] * 4
    assert ids(store) == [sha256(data)]
    assert read_all(store, sha256(data)) == data


# -- refused uploads keep nothing ---------------------------------------------------------------------


def test_expected_sha256_mismatch_keeps_nothing(backend: Backend) -> None:
    data = payload(CHUNK_SIZE + 1)
    with pytest.raises(DataLoss):
        backend.store.put(irregular(data), expected_sha256=sha256(b"something else"))
    assert ids(backend.store) == []
    assert backend.leftovers() == []
    # The right checksum, in any case, is accepted.
    assert backend.store.put(irregular(data), expected_sha256=sha256(data).upper()).blob_id == sha256(data)


def test_max_bytes_exceeded_stops_mid_stream_and_keeps_nothing(backend: Backend) -> None:
    pulled = 0

    def chunks() -> Iterator[bytes]:
        nonlocal pulled
        for index in range(11):
            pulled += 1
            yield payload(CHUNK_SIZE, seed=index)

    with pytest.raises(ResourceExhausted):
        backend.store.put(chunks(), max_bytes=6 * MIB)
    assert pulled < 11  # refused as soon as the limit passed, not after reading everything
    assert ids(backend.store) == []
    assert backend.leftovers() == []
    # Exactly at the limit is allowed.
    data = payload(6 * MIB)
    assert backend.store.put(irregular(data), max_bytes=6 * MIB).size == 6 * MIB


def test_interrupted_upload_leaves_nothing(backend: Backend) -> None:
    # 11 MiB arrive before the failure: with S3's 5 MiB parts, two parts are already uploaded by then.
    chunks = (payload(CHUNK_SIZE, seed=index) for index in range(20))
    with pytest.raises(Interrupted, match="client went away"):
        backend.store.put(failing_after(chunks, 11))
    assert ids(backend.store) == []
    assert backend.leftovers() == []


def test_stale_upload_leftovers_are_swept_on_start(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_backend, "_STALE_STAGING_S", -60)  # S3 cannot backdate: all staging is stale
    kept = backend.store.put([b"kept"]).blob_id
    backend.plant_stale_upload()
    assert len(backend.leftovers()) == 1
    reopened = backend.reopen()
    assert backend.leftovers() == []
    assert ids(reopened) == [kept]
    reopened.close()


def test_check_passes_when_healthy(store: BlobStore) -> None:
    store.check()


# -- reads --------------------------------------------------------------------------------------------


def test_unknown_or_malformed_ids(store: BlobStore) -> None:
    unknown = sha256(b"never stored")
    with pytest.raises(NotFound):
        store.get(unknown)  # raised by the call itself, before anything is streamed
    with pytest.raises(NotFound):
        store.stat(unknown)
    assert store.delete(unknown) is False
    for malformed in ("", "abc", unknown.upper(), unknown + "0", "../" + unknown[3:]):
        with pytest.raises(InvalidArgument):
            store.stat(malformed)
        with pytest.raises(InvalidArgument):
            store.get(malformed)


def test_get_with_offset(store: BlobStore) -> None:
    data = payload(int(3.5 * CHUNK_SIZE), seed=5)
    blob_id = store.put(irregular(data)).blob_id
    offsets = (0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 5, len(data) - 1, len(data))
    for offset in offsets:
        assert read_all(store, blob_id, offset) == data[offset:], offset


def test_get_past_the_end_is_out_of_range(store: BlobStore) -> None:
    blob_id = store.put(iter([b"twelve bytes"])).blob_id
    with pytest.raises(OutOfRange, match="past the end"):
        read_all(store, blob_id, 13)
    assert read_all(store, blob_id, 12) == b""  # resuming a finished download reads nothing, not an error


def test_corruption_is_detected_when_the_stream_ends(backend: Backend) -> None:
    data = payload(int(2.5 * CHUNK_SIZE), seed=6)
    blob_id = backend.store.put(irregular(data)).blob_id
    backend.corrupt(blob_id)
    stream = backend.store.get(blob_id)
    received = []
    with pytest.raises(DataLoss):
        for chunk in stream:
            received.append(chunk)
    assert received  # the bytes came first; the verdict comes at the end


# -- pointers -----------------------------------------------------------------------------------------


def test_pointers(store: BlobStore) -> None:
    first = store.put([b"checkpoint 1"]).blob_id
    second = store.put([b"checkpoint 2"]).blob_id
    assert store.get_pointer("libraries/tabzoo/estimator") is None
    store.set_pointer("libraries/tabzoo/estimator", first)
    assert store.get_pointer("libraries/tabzoo/estimator") == first
    store.set_pointer("libraries/tabzoo/estimator", second)
    assert store.get_pointer("libraries/tabzoo/estimator") == second
    store.set_pointer("current", first)
    assert (store.get_pointer("current"), store.get_pointer("libraries/tabzoo/estimator")) == (first, second)


def test_pointer_to_missing_blob_is_refused(store: BlobStore) -> None:
    with pytest.raises(NotFound):
        store.set_pointer("current", sha256(b"never stored"))
    assert store.get_pointer("current") is None


@pytest.mark.parametrize("name", ["", "/absolute", "a/../b", "..", "-leading-dash", "sp ace", "x" * 201])
def test_bad_pointer_names(store: BlobStore, name: str) -> None:
    blob_id = store.put([b"x"]).blob_id
    with pytest.raises(InvalidArgument):
        store.set_pointer(name, blob_id)
    with pytest.raises(InvalidArgument):
        store.get_pointer(name)


# -- delete and list ----------------------------------------------------------------------------------


def test_delete(store: BlobStore) -> None:
    data = payload(CHUNK_SIZE + 9, seed=7)
    blob_id = store.put(irregular(data)).blob_id
    assert store.delete(blob_id) is True
    assert store.delete(blob_id) is False
    with pytest.raises(NotFound):
        store.get(blob_id)
    assert ids(store) == []
    # The same content can come back after a delete.
    assert store.put(irregular(data)).blob_id == blob_id
    assert read_all(store, blob_id) == data


def test_list_by_prefix(store: BlobStore) -> None:
    stored = sorted(store.put([f"blob {index}".encode()]).blob_id for index in range(12))
    assert ids(store) == stored
    infos = {info.blob_id: info for info in store.list()}
    assert all(infos[blob_id] == store.stat(blob_id) for blob_id in stored)
    for prefix in {blob_id[:1] for blob_id in stored} | {stored[0][:2], stored[0][:10], stored[0]}:
        assert ids(store, prefix) == [blob_id for blob_id in stored if blob_id.startswith(prefix)], prefix
    absent = next(p for p in (f"{n:02x}" for n in range(256)) if not any(b.startswith(p) for b in stored))
    assert ids(store, absent) == []


# -- S3 only ------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_s3_server_down_is_unavailable_then_recovers(seaweed_s3: SeaweedS3) -> None:  # noqa: F811
    store = _seaweed_backend(seaweed_s3).store
    data = payload(CHUNK_SIZE + 11, seed=8)
    kept = store.put(irregular(data)).blob_id
    seaweed_s3.stop()
    try:
        for attempt in (store.check, lambda: store.put([b"while down"]), lambda: store.get(kept)):
            started = time.monotonic()
            with pytest.raises(Unavailable, match=re.escape(seaweed_s3.endpoint)):
                attempt()
            assert time.monotonic() - started < 10
    finally:
        seaweed_s3.restart()
    store.check()
    assert read_all(store, kept) == data
    assert store.put([b"after restart"]).blob_id == sha256(b"after restart")
    store.close()


def test_s3_dead_endpoint_is_unavailable_within_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_backend, "_STARTUP_WAIT_S", 1.0)
    with socket.socket() as holder:  # a port that is certainly closed: bound, never listening
        holder.bind(("127.0.0.1", 0))
        endpoint = f"127.0.0.1:{holder.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(Unavailable, match=re.escape(endpoint)):
            S3BlobStore(endpoint, "key", "secret", "never-made")
    assert time.monotonic() - started < 5


@pytest.mark.integration
def test_s3_wrong_credentials_are_a_config_error(seaweed_s3: SeaweedS3) -> None:  # noqa: F811
    bucket = f"creds-{uuid.uuid4().hex[:16]}"
    with pytest.raises(ConfigError):
        S3BlobStore(seaweed_s3.endpoint, seaweed_s3.access_key, "not-the-secret", bucket)
    with pytest.raises(ConfigError):
        S3BlobStore(seaweed_s3.endpoint, "unknown-key", seaweed_s3.secret_key, bucket)


@pytest.mark.integration
def test_s3_put_replaces_a_foreign_object_at_the_address(seaweed_s3: SeaweedS3) -> None:  # noqa: F811
    # An object at blobs/<id> that a put did not write (no checksum header) is not trusted for dedup.
    backend = _seaweed_backend(seaweed_s3)
    data = payload(CHUNK_SIZE, seed=9)
    blob_id = backend.store.put([data]).blob_id
    backend.corrupt(blob_id)
    assert backend.store.put([data]).blob_id == blob_id
    assert read_all(backend.store, blob_id) == data
    backend.store.close()
