"""How fast the query service's readiness tells the truth when a dependency dies or freezes, and recovers.

    .venv/bin/python benchmarks/health_detection.py [--rounds 5] [--out docs/reliability-health.md]

Issue 12 asks that a dead or frozen dependency turn the caller NOT_SERVING within 5 s and back when it
recovers. The fault tests (`tests/test_faults.py`) assert the behaviour with room for a loaded machine; this
measures the seconds. The knowledge and recommender services run as real `modsnet serve` processes (so they
can be killed and frozen), storage and query in this process, on loopback, with TabZoo imported and the kNN
estimator (no training). Each round:
- kill -9 the recommender: seconds until the query's readiness reads NOT_SERVING; restart it on its port:
  seconds from its own liveness to the query's SERVING again;
- SIGSTOP the knowledge service: seconds until NOT_SERVING; SIGCONT: seconds until SERVING.
Readiness is polled every 50 ms with a 1 s deadline (a poll that times out counts as not yet). Prints a
markdown table (median and worst per case) and writes it to `--out`. Not a test.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modsnet.client import Client
from modsnet.embedded import LOOPBACK
from modsnet.offline.devservers.redis import free_port
from services.query.config import QueryConfig
from services.query.server import create_server as query_server
from services.storage.config import StorageConfig
from services.storage.server import create_server as storage_server

ROOT = Path(__file__).resolve().parents[1]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
POLL = 0.05
TARGET = 5.0


def status(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as channel:
        try:
            request = health_pb2.HealthCheckRequest(service=service)
            return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=1).status)
        except grpc.RpcError:
            return -1


def seconds_until(condition: Callable[[], bool], limit: float = 120.0) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > limit:
            raise RuntimeError(f"not reached within {limit:.0f} s")
        time.sleep(POLL)
    return time.monotonic() - started


class Served:
    """A `modsnet serve NAME` process on a fixed port."""

    def __init__(self, name: str, env: dict[str, str], log: Path):
        self.name, self.env, self.log, self.port = name, env, log, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            command = [
                sys.executable,
                "-m",
                "modsnet",
                "serve",
                self.name,
                "--host",
                LOOPBACK,
                "--port",
                str(self.port),
            ]
            self.process = subprocess.Popen(command, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        seconds_until(lambda: status(self.address, "liveness") == SERVING)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.kill()
            self.process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability-health.md")
    args = parser.parse_args()
    cases: dict[str, list[float]] = {
        "recommender killed -> NOT_SERVING": [],
        "recommender back (its liveness) -> SERVING": [],
        "knowledge frozen (SIGSTOP) -> NOT_SERVING": [],
        "knowledge resumed (SIGCONT) -> SERVING": [],
    }
    with tempfile.TemporaryDirectory(prefix="modsnet-health-") as tmp:
        home = Path(tmp)
        storage = storage_server(StorageConfig(home=home / "storage", host=LOOPBACK))
        storage_address = f"{LOOPBACK}:{storage.start()}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODSNET_")}
        env.update(MODSNET_STORAGE_ADDR=storage_address, MODSNET_ESTIMATOR="knn", MODSNET_GRACE="1")
        knowledge = Served("knowledge", {**env, "MODSNET_HOME": str(home / "knowledge")}, home / "knowledge.log")
        env["MODSNET_KNOWLEDGE_ADDR"] = knowledge.address
        recommender = Served("recommender", {**env, "MODSNET_HOME": str(home / "recommender")}, home / "r.log")
        query = None
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
            address = f"{LOOPBACK}:{query.start()}"
            with Client(query=address, knowledge=knowledge.address, storage=storage_address) as client:
                client.import_library(ROOT / "modsnet" / "libraries" / "tabzoo")
                client.search(ROOT / "examples" / "saheart.csv", k=3)
            seconds_until(lambda: status(address) == SERVING)
            for round_ in range(args.rounds):
                recommender.process.kill()  # type: ignore[union-attr]
                cases["recommender killed -> NOT_SERVING"].append(seconds_until(lambda: status(address) == NOT_SERVING))
                recommender.start()
                cases["recommender back (its liveness) -> SERVING"].append(
                    seconds_until(lambda: status(address) == SERVING)
                )
                os.kill(knowledge.process.pid, signal.SIGSTOP)  # type: ignore[union-attr]
                try:
                    cases["knowledge frozen (SIGSTOP) -> NOT_SERVING"].append(
                        seconds_until(lambda: status(address) == NOT_SERVING)
                    )
                finally:
                    os.kill(knowledge.process.pid, signal.SIGCONT)  # type: ignore[union-attr]
                cases["knowledge resumed (SIGCONT) -> SERVING"].append(
                    seconds_until(lambda: status(address) == SERVING)
                )
                print(f"round {round_ + 1}: " + ", ".join(f"{v[-1]:.2f}" for v in cases.values()), flush=True)
        finally:
            if query is not None:
                query.stop(0)
            recommender.stop()
            knowledge.stop()
            storage.stop(0)
    load = os.getloadavg()[0]
    lines = [
        "# Readiness that tells the truth: seconds to NOT_SERVING and back (issue 12)",
        "",
        f"`.venv/bin/python benchmarks/health_detection.py --rounds {args.rounds}` ({time.strftime('%Y-%m-%d')}, "
        f"2 shared cores, load average {load:.1f} at the end). Query service readiness polled every {POLL * 1000:.0f} "
        f"ms; target: NOT_SERVING within {TARGET:.0f} s of a dependency dying or freezing, SERVING again when it "
        "recovers. Design: each dependency checked every 1 s with a 2 s deadline; a newly failing check is "
        "confirmed by a second round at once.",
        "",
        "| case | median s | worst s | rounds | within 5 s |",
        "|---|---:|---:|---:|---|",
    ]
    for name, values in cases.items():
        worst = max(values)
        within = "yes" if worst <= TARGET else f"**no** ({sum(v > TARGET for v in values)} of {len(values)})"
        lines.append(f"| {name} | {statistics.median(values):.2f} | {worst:.2f} | {len(values)} | {within} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
