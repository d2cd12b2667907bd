"""A real Redis Cluster for tests and benchmarks: three `redis-server --cluster-enabled yes` primaries.

Each node is a `RedisServer` (AOF on, as production) in a folder of its own; `redis-cli --cluster create
... --cluster-replicas 0 --cluster-yes` joins them and spreads the 16,384 hash slots over the three. A node
also listens on its port + 10000 (the cluster bus), so ports are picked below 55000 with both free.
`url` is the `redis+cluster://` URL the knowledge store takes (any node; the client discovers the rest).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis

from .redis import RedisServer

_BUS_OFFSET = 10_000
_READY_TIMEOUT_S = 60.0


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int, *, low: int = 20_000, high: int = 45_000) -> list[int]:
    """`count` ports in [low, high) that are free, each with its cluster bus port (+10000) free too."""
    found: list[int] = []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as seed:
        seed.bind(("127.0.0.1", 0))
        start = low + seed.getsockname()[1] % (high - low)  # spread concurrent runs over the range
    for offset in range(high - low):
        port = low + (start - low + offset) % (high - low)
        if port not in found and _free(port) and _free(port + _BUS_OFFSET):
            found.append(port)
            if len(found) == count:
                return found
    raise RuntimeError(f"no {count} free ports with free cluster bus ports in [{low}, {high})")


class RedisCluster:
    """Three (or `nodes`) cluster-enabled redis-servers under `root`, joined into one cluster by `start()`."""

    def __init__(self, root: str | Path, *, nodes: int = 3):
        if shutil.which("redis-cli") is None:
            raise FileNotFoundError("redis-cli is not on PATH (apt-get install redis-tools)")
        self.root = Path(root)
        self.count = nodes
        self.servers: list[RedisServer] = []

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.servers[0].port}/0"

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.servers[0].port, decode_responses=True)

    def start(self) -> None:
        ports = cluster_ports(self.count)
        try:
            for k, port in enumerate(ports):
                server = RedisServer(
                    self.root / f"node{k}",
                    port=port,
                    extra_args=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                "--cluster-node-timeout", "5000"],
                )  # fmt: skip
                self.servers.append(server)
                server.start()
            subprocess.run(
                ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            self._wait_ok()
        except BaseException:
            self.stop()
            raise

    def _wait_ok(self) -> None:
        """Until every node says cluster_state:ok and knows every node (gossip takes a moment)."""
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while True:
            states = []
            for server in self.servers:
                with server.client() as client:
                    info = client.cluster("info")
                    states.append(
                        info.get("cluster_state") == "ok" and int(info.get("cluster_known_nodes", 0)) == self.count
                    )
            if all(states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis cluster not ok after {_READY_TIMEOUT_S:.0f} s: {states}")
            time.sleep(0.1)

    def flush(self) -> None:
        """Empty every node (between tests)."""
        for server in self.servers:
            with server.client() as client:
                client.flushall()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers = []

    def __enter__(self) -> RedisCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
