"""`make image-smoke`: the four services from the container image, searched through from this machine, then stopped.

    python -m modsnet.offline.imagesmoke [--image localhost/modsnet:dev] [--keep-going]

Each service runs in its own container as it would in a pod: the image's non-root user, a read-only root
filesystem with tmpfs at /tmp and /data (the embedded backends: SQLite graph, blob folder), on the host's
network bound to loopback ports. The built-in libraries are imported from this checkout through the
services, then `modsnet.offline.smoke` searches a table (examples/saheart.csv) and an XRD scan through the
query service. Any failure, of a container or a search, fails the run; the containers are stopped either way
(SIGTERM first: the services' graceful stop).

Engine: podman (Debian's package, `--storage-driver vfs`, the store buildah built the image into).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVICES = ("storage", "knowledge", "recommender", "query")
PODMAN = ["podman", "--storage-driver", "vfs"]
_UP_SECONDS = 180.0


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _serving(address: str) -> bool:
    try:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.RpcError:
        return False


def _running(name: str) -> bool:
    done = subprocess.run([*PODMAN, "inspect", "--format", "{{.State.Running}}", name], capture_output=True, text=True)
    return done.returncode == 0 and done.stdout.strip() == "true"


def start(image: str, addresses: dict[str, str], tag: str) -> list[str]:
    """One detached container per service; their names."""
    names = []
    env = {f"MODSNET_{s.upper()}_ADDR": a for s, a in addresses.items()}
    for service in SERVICES:
        name = f"modsnet-smoke-{service}-{tag}"
        settings = {**env, "MODSNET_HOST": "127.0.0.1", "MODSNET_PORT": addresses[service].split(":")[1]}
        command = [
            *PODMAN,
            "run",
            "--detach",
            "--name",
            name,
            "--network",
            "host",
            "--read-only",
            "--tmpfs",
            "/tmp:rw,size=1g,mode=1777",
            "--tmpfs",
            "/data:rw,size=2g,mode=1777",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            *(f"--env={k}={v}" for k, v in sorted(settings.items())),
            image,
            "serve",
            service,
        ]
        subprocess.run(command, check=True, capture_output=True, text=True)
        names.append(name)
    return names


def stop(names: Sequence[str]) -> None:
    for name in names:
        subprocess.run([*PODMAN, "stop", "--time", "20", name], capture_output=True)
        subprocess.run([*PODMAN, "rm", "--force", name], capture_output=True)


def logs(name: str, lines: int = 40) -> str:
    done = subprocess.run([*PODMAN, "logs", "--tail", str(lines), name], capture_output=True, text=True)
    return done.stdout + done.stderr


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="localhost/modsnet:dev", help="the image to run")
    parser.add_argument("--table", type=Path, default=Path("examples/saheart.csv"), help="the table to search")
    args = parser.parse_args(argv)
    if shutil.which("podman") is None:
        print("image-smoke: podman is not installed (apt-get install -y podman)", file=sys.stderr)
        return 2
    addresses = {s: f"127.0.0.1:{p}" for s, p in zip(SERVICES, _free_ports(len(SERVICES)), strict=True)}
    names: list[str] = []
    started = time.perf_counter()
    try:
        names = start(args.image, addresses, str(os.getpid()))
        deadline = time.monotonic() + _UP_SECONDS
        while not all(_serving(a) for a in addresses.values()):
            stopped = [n for n in names if not _running(n)]
            if stopped or time.monotonic() > deadline:
                for name in stopped or names:
                    print(f"--- {name}\n{logs(name)}", file=sys.stderr)
                print("image-smoke: FAIL: the services did not come up", file=sys.stderr)
                return 1
            time.sleep(1)
        print(f"four services up from {args.image} in {time.perf_counter() - started:.0f} s: {addresses}")
        for service, address in addresses.items():
            os.environ[f"MODSNET_{service.upper()}_ADDR"] = address

        from modsnet.client import Client
        from modsnet.embedded import import_builtin_libraries
        from modsnet.offline import smoke

        client = Client(query=addresses["query"], knowledge=addresses["knowledge"], storage=addresses["storage"])
        try:
            print("imported built-in libraries:", ", ".join(import_builtin_libraries(client)) or "none")
        finally:
            client.close()
        with tempfile.TemporaryDirectory(prefix="modsnet-image-smoke-") as work:
            failures = smoke.run(["table", "xrd"], addresses=addresses, table=args.table, work=Path(work))
        crashed = [n for n in names if not _running(n)]
        for name in crashed:
            print(f"--- {name} exited\n{logs(name)}", file=sys.stderr)
        ok = not failures and not crashed
        print("image-smoke: " + ("passed" if ok else "FAIL"))
        return 0 if ok else 1
    finally:
        stop(names)


if __name__ == "__main__":
    sys.exit(main())
