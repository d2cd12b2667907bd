"""The local cluster (`make up` / `make down`): the four services as separate processes, on real backends.

    python -m modsnet.offline.localcluster up [--dir .cluster]     # Redis (AOF), SeaweedFS (S3), four services
    python -m modsnet.offline.localcluster status
    python -m modsnet.offline.localcluster down

The same `modsnet serve SERVICE` processes that Kubernetes runs, on loopback ports, with the knowledge
graph in a real redis-server and the blobs in a real S3 server, both keeping their data under the cluster
folder, so `down` then `up` finds everything again. `up` prints the environment a client needs
(MODSNET_*_ADDR); the CLI then talks to the cluster instead of running embedded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modsnet.client import Client
from modsnet.embedded import import_builtin_libraries
from modsnet.offline.devservers.redis import RedisServer, free_port
from modsnet.offline.devservers.seaweed import SeaweedS3

SERVICES = ("storage", "knowledge", "recommender", "query")  # start order: callees first
DEFAULT_PORTS = {"query": 50051, "recommender": 50052, "knowledge": 50053, "storage": 50054}
_STATE = "cluster.json"
_READY_SECONDS = 90.0


def _port(preferred: int) -> int:
    """The usual port when it is free, else any free one (another cluster or program may hold it)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def _wait_serving(address: str, name: str, log: Path) -> None:
    deadline = time.monotonic() + _READY_SECONDS
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.3)
    tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
    raise SystemExit(f"{name} did not become healthy at {address} within {_READY_SECONDS:.0f} s:\n" + "\n".join(tail))


def up(folder: Path) -> dict[str, object]:
    state_file = folder / _STATE
    if state_file.exists():
        raise SystemExit(f"a local cluster is already recorded in {state_file}: run `make down` first")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "logs").mkdir(exist_ok=True)
    redis = RedisServer(folder / "redis", persistent=True)
    redis.start()
    s3 = SeaweedS3(folder / "s3")
    s3.start()
    addresses = {name: f"127.0.0.1:{_port(DEFAULT_PORTS[name])}" for name in SERVICES}
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODSNET_")}
    env.update(
        MODSNET_HOME=str(folder / "home"),
        MODSNET_KNOWLEDGE_ADDR=addresses["knowledge"],
        MODSNET_STORAGE_ADDR=addresses["storage"],
        MODSNET_RECOMMENDER_ADDR=addresses["recommender"],
        MODSNET_KNOWLEDGE_BACKEND="redis",
        MODSNET_REDIS_URL=redis.url,
        MODSNET_STORAGE_BACKEND="s3",
        MODSNET_S3_ENDPOINT=s3.endpoint,
        MODSNET_S3_BUCKET="modsnet",
        MODSNET_S3_ACCESS_KEY=s3.access_key,
        MODSNET_S3_SECRET_KEY=s3.secret_key,
        MODSNET_GRACE="5",
    )
    pids: dict[str, int] = {"redis": redis.pid or 0, "s3": s3.pid or 0}
    state: dict[str, object] = {"addresses": addresses, "pids": pids, "redis_url": redis.url, "s3": s3.endpoint}
    try:
        for name in SERVICES:
            log = folder / "logs" / f"{name}.log"
            port = addresses[name].rsplit(":", 1)[1]
            with open(log, "ab") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "modsnet", "serve", name, "--host", "127.0.0.1", "--port", port],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # outlives `make up`; stopped by `make down`
                )
            pids[name] = process.pid
            _wait_serving(addresses[name], name, log)
    except BaseException:
        state_file.write_text(json.dumps(state, indent=2))
        down(folder)
        raise
    state_file.write_text(json.dumps(state, indent=2))
    client = Client(query=addresses["query"], knowledge=addresses["knowledge"], storage=addresses["storage"])
    try:
        state["imported"] = import_builtin_libraries(client)
    finally:
        client.close()
    return state


def _exited(pid: int) -> bool:
    """Whether `pid` is gone. A child of this process that exited stays a zombie, which signal 0 still
    reaches, until it is reaped: reap it here (`up` and `down` in one process, as in the tests)."""
    with contextlib.suppress(ChildProcessError):  # not our child: init reaps it
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _stop(pid: int, grace: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if _exited(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def down(folder: Path) -> None:
    state_file = folder / _STATE
    if not state_file.exists():
        print(f"no local cluster recorded in {state_file}")
        return
    pids = json.loads(state_file.read_text())["pids"]
    for name in ("query", "recommender", "knowledge", "storage"):  # callers first
        if pids.get(name):
            _stop(pids[name], grace=10)
    if pids.get("s3"):
        _stop(pids["s3"], grace=3)  # SeaweedFS ignores SIGTERM for long: its data is on disk already
    if pids.get("redis"):
        _stop(pids["redis"], grace=10)  # SIGTERM: redis flushes its AOF and exits
    state_file.unlink()
    print("local cluster stopped (data kept in", folder, ")")


def status(folder: Path) -> int:
    state_file = folder / _STATE
    if not state_file.exists():
        print("no local cluster running (make up)")
        return 1
    state = json.loads(state_file.read_text())
    healthy = True
    for name, address in state["addresses"].items():
        try:
            with grpc.insecure_channel(address) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
            text = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.RpcError as exc:
            text = f"unreachable ({exc.code().name})"  # type: ignore[attr-defined]
        healthy &= text == "SERVING"
        print(f"{name:12} {address:18} {text}")
    return 0 if healthy else 1


def client_env(state: dict[str, object]) -> str:
    addresses = state["addresses"]
    assert isinstance(addresses, dict)
    return "\n".join(f"export MODSNET_{name.upper()}_ADDR={addresses[name]}" for name in sorted(addresses))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modsnet.offline.localcluster", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--dir", type=Path, default=Path(".cluster"), help="where backends keep data and logs")
    args = parser.parse_args(argv)
    folder = args.dir.resolve()
    if args.action == "up":
        state = up(folder)
        print("local cluster up: redis", state["redis_url"], "| S3", state["s3"])
        print("to use it from this shell:\n" + client_env(state))
        return 0
    if args.action == "down":
        down(folder)
        return 0
    return status(folder)


if __name__ == "__main__":
    sys.exit(main())
