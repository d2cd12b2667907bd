"""Redis fixtures of the integration tests (the server itself: `modsnet.offline.devservers.redis`)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from modsnet.offline.devservers.redis import RedisServer, free_port
from modsnet.offline.devservers.redis_cluster import RedisCluster

__all__ = [
    "RedisCluster",
    "RedisServer",
    "free_port",
    "redis_cluster",
    "redis_cluster_url",
    "redis_server",
    "redis_url",
    "start_or_skip",
]


def start_or_skip(root: Path, *, persistent: bool = True, extra_args: Sequence[str] = ()) -> RedisServer:
    """A started RedisServer, or the test skipped when no redis-server binary is installed."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH (apt-get install redis-server)")
    server = RedisServer(root, persistent=persistent, extra_args=extra_args)
    server.start()
    return server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session (tests that kill or reconfigure one start their own)."""
    server = start_or_skip(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, its data flushed first so each test starts empty."""
    with redis_server.client() as client:
        client.flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real three-primary Redis Cluster for the session (`redis-cli --cluster create`)."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server and redis-cli are not on PATH (apt-get install redis-server)")
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisCluster) -> str:
    """The cluster's `redis+cluster://` URL, every node flushed first."""
    redis_cluster.flush()
    return redis_cluster.url
