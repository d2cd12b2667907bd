"""Fault tests (issue 12): a dependency of the query service killed with -9, or frozen with SIGSTOP.

The knowledge and recommender services run as real `modsnet serve` processes (so they can be killed and
frozen), storage and query in this process, all on loopback. Each test leaves the cluster as it found it.
The bounds asserted ("NOT_SERVING within 8 s", "an answer within the 5 s deadline plus 2 s") are the
issue's correctness bounds with room for a loaded machine, not speed measurements.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from polling import eventually
from synthetic import make_table

from modsnet.client import Client
from modsnet.embedded import LOOPBACK
from modsnet.offline.devservers.redis import free_port
from modsnet.runtime.errors import DeadlineExceeded, Unavailable
from modsnet.runtime.server import ServiceServer
from services.query.config import QueryConfig
from services.query.server import create_server as query_server
from services.storage.config import StorageConfig
from services.storage.server import create_server as storage_server

ROOT = Path(__file__).resolve().parent.parent
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
DETECTED_WITHIN = 8.0  # the issue asks 5 s: the design gives 4.6 s, measured by benchmarks/health_detection.py
STARTED_WITHIN = 90.0  # a `modsnet serve` process importing torch on a busy 2-core machine


def status(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        try:
            return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=2).status)
        except grpc.RpcError:
            return -1


@dataclass
class Service:
    """A `modsnet serve NAME` process on a fixed port, so a restart comes back where callers look."""

    name: str
    port: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "modsnet", "serve", self.name, "--host", LOOPBACK, "--port", str(self.port)],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if not eventually(lambda: status(self.address, "liveness") == SERVING, seconds=STARTED_WITHIN):
            raise RuntimeError(f"{self.name} did not start; its log:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no shutdown path runs
        self.process.wait(30)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)


@dataclass
class Cluster:
    knowledge: Service
    recommender: Service
    query: ServiceServer
    query_address: str
    client: Client
    csv: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, synth_bundle: Path) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("faults")
    storage = storage_server(StorageConfig(home=home / "storage", host=LOOPBACK))
    storage_address = f"{LOOPBACK}:{storage.start()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODSNET_")}
    env.update(MODSNET_STORAGE_ADDR=storage_address, MODSNET_GRACE="1", MODSNET_ESTIMATOR="knn")
    knowledge = Service("knowledge", free_port(), {**env, "MODSNET_HOME": str(home / "knowledge")}, home / "k.log")
    env["MODSNET_KNOWLEDGE_ADDR"] = knowledge.address
    recommender = Service("recommender", free_port(), {**env, "MODSNET_HOME": str(home / "r")}, home / "r.log")
    query: ServiceServer | None = None
    client: Client | None = None
    try:
        knowledge.start()
        recommender.start()
        config = QueryConfig(
            knowledge_addr=knowledge.address,
            recommender_addr=recommender.address,
            storage_addr=storage_address,
            home=home / "query",
            host=LOOPBACK,
        )
        query = query_server(config)
        query_address = f"{LOOPBACK}:{query.start()}"
        client = Client(query=query_address, knowledge=knowledge.address, storage=storage_address)
        client.import_library(synth_bundle)
        csv = home / "query.csv"
        make_table(200, 6, 2, 7).to_csv(csv, index=False)
        assert eventually(lambda: status(query_address) == SERVING, seconds=STARTED_WITHIN)
        yield Cluster(knowledge, recommender, query, query_address, client, csv)
    finally:
        if client is not None:
            client.close()
        if query is not None:
            query.stop(0)
        for service in (recommender, knowledge):
            if service.process is not None and service.process.poll() is None:
                service.signal(signal.SIGCONT)
                service.kill()
        storage.stop(0)


def test_recommender_killed_searches_unavailable_health_not_serving_then_back(cluster: Cluster) -> None:
    assert cluster.client.search(cluster.csv, k=2).models
    cluster.recommender.kill()
    assert eventually(lambda: status(cluster.query_address) == NOT_SERVING, seconds=DETECTED_WITHIN)
    assert status(cluster.query_address, "liveness") == SERVING  # nothing to restart in the query pod
    with pytest.raises(Unavailable, match=f"recommender service is unavailable \\({cluster.recommender.address}\\)"):
        cluster.client.search(cluster.csv, k=2, timeout=30)
    cluster.recommender.start()  # on the same port
    assert eventually(lambda: status(cluster.query_address) == SERVING, seconds=DETECTED_WITHIN)
    assert cluster.client.search(cluster.csv, k=2, timeout=30).models


def test_knowledge_frozen_deadline_exceeded_naming_it_health_not_serving_then_back(cluster: Cluster) -> None:
    cluster.knowledge.signal(signal.SIGSTOP)
    try:
        assert eventually(lambda: status(cluster.query_address) == NOT_SERVING, seconds=DETECTED_WITHIN)
        assert "knowledge service did not answer" in " ".join(cluster.query.failures.values())
        started = time.monotonic()
        with pytest.raises((DeadlineExceeded, Unavailable)) as caught:
            cluster.client.search(cluster.csv, k=2, timeout=5)
        assert time.monotonic() - started < 5 + 2  # not the 60 s it used to hang
        # The query service answered in time to say which service did not (it keeps a margin for that).
        said = re.escape(f"({cluster.knowledge.address})")
        assert re.search(rf"knowledge service did not answer within [0-4]\.\d s {said}", str(caught.value))
    finally:
        cluster.knowledge.signal(signal.SIGCONT)
    assert eventually(lambda: status(cluster.query_address) == SERVING, seconds=DETECTED_WITHIN)
    assert cluster.client.search(cluster.csv, k=2, timeout=30).models
