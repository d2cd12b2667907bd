"""`make image-smoke`: the four services from the container image, searched through from this machine, then stopped.

    python -m modsnet.offline.imagesmoke [--image localhost/modsnet:dev] [--table examples/saheart.csv]

The four services run as the image's non-root user (uid 10001, which owns nothing in the image but /data),
each its own `modsnet serve` process in one working container of the image (`buildah from`; podman's
runtime cannot set its rlimits on this machine, and each container of a vfs store is a 1.9 GB copy), on
the host's network bound to loopback ports, with the embedded backends under /data (SQLite graph, blob
folder). The root filesystem is read-only, as a pod's `readOnlyRootFilesystem: true` makes it: each
service gets its own mount namespace (`unshare --mount`) in which the container's root is bind-mounted
read-only, /data is a writable folder of this machine, /tmp a tmpfs, and the service is started there with
`chroot --userspec 10001:10001` and the image's environment; a write to the root is checked to fail first.
`--writable-root` runs them with `buildah run --isolation chroot` instead (the root writable).

The built-in libraries are imported from this checkout through the services, then `modsnet.offline.smoke`
searches a table (examples/saheart.csv), a text CSV, a folder of images and an XRD scan through the
query service. Any failure, of a service or a search, fails the run; the services are stopped either way
(SIGTERM first: the services' graceful stop).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
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
BUILDAH = ["buildah", "--storage-driver", "vfs"]
_UP_SECONDS = 300.0


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def serving(address: str) -> bool:
    try:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.RpcError:
        return False


# Runs as root on this machine, in a mount namespace of its own: the container's root read-only, /data
# writable, a fresh /tmp, /proc and /dev; then the command as the image's user. Arguments: root, data
# folder, then `env` arguments (NAME=VALUE..., the command).
_READ_ONLY_LAUNCHER = """set -e
root=$1; data=$2; shift 2
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount --bind "$data" "$root/data"
mount -t tmpfs -o mode=1777,size=1g tmpfs "$root/tmp"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
exec chroot --userspec=10001:10001 "$root" /usr/bin/env -i "$@"
"""


def image_env(container: str) -> dict[str, str]:
    """The environment the image declares (PATH, HOME, PYTHONUNBUFFERED, MODSNET_HOME...)."""
    made = subprocess.run([*BUILDAH, "inspect", "--type", "container", container], capture_output=True, text=True)
    if made.returncode != 0:
        raise RuntimeError(f"cannot inspect the container {container}: {made.stderr.strip()}")
    declared = json.loads(made.stdout)["OCIv1"]["config"].get("Env") or []
    return dict(item.split("=", 1) for item in declared)


def read_only(root: Path, data: Path, env: dict[str, str], command: Sequence[str]) -> list[str]:
    """The host command that runs `command` in the container with its root read-only (see the module doc)."""
    variables = [f"{k}={v}" for k, v in sorted(env.items())]
    return ["unshare", "--mount", "--propagation", "private", "--fork", "--", "sh", "-c", _READ_ONLY_LAUNCHER,
            "launcher", str(root), str(data), *variables, *command]  # fmt: skip


def root_is_read_only(root: Path, data: Path, env: dict[str, str]) -> str:
    """'' when a write to the container's root fails as read-only and /data and /tmp take writes; else what is wrong."""
    probe = "touch /opt/.image-smoke 2>&1; touch /data/.image-smoke /tmp/.image-smoke && echo writable-data"
    done = subprocess.run(read_only(root, data, env, ["sh", "-c", probe]), capture_output=True, text=True)
    said = done.stdout + done.stderr
    if "Read-only file system" not in said:
        return f"a write to the root did not fail as read-only: {said.strip() or done.returncode}"
    if "writable-data" not in said:
        return f"/data or /tmp did not take a write: {said.strip()}"
    return ""


def start(
    container: str, addresses: dict[str, str], logs: Path, *, root: Path | None = None, data: Path | None = None
) -> dict[str, subprocess.Popen[bytes]]:
    """`modsnet serve SERVICE` for each service in the working container, as the image's user; the processes.

    With `root` (the container's mounted root) and `data` (a folder of this machine for /data), the root is
    read-only; without them the services run through `buildah run` with the root writable."""
    env = {f"MODSNET_{s.upper()}_ADDR": a for s, a in addresses.items()}
    declared = image_env(container) if root is not None else {}
    processes = {}
    for service in SERVICES:
        settings = {
            **env,
            "MODSNET_HOST": "127.0.0.1",
            "MODSNET_PORT": addresses[service].split(":")[1],
            "MODSNET_HOME": f"/data/{service}",  # the embedded backends, one folder per service
            "MODSNET_GRACE": "5",
        }
        log = (logs / f"{service}.log").open("wb")
        if root is not None and data is not None:
            command = read_only(root, data, {**declared, **settings}, ["modsnet", "serve", service])
            processes[service] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            continue
        command = [
            *BUILDAH,
            "run",
            "--isolation",
            "chroot",
            "--network",
            "host",
            "--user",
            "10001:10001",
            *(f"--env={k}={v}" for k, v in sorted(settings.items())),
            container,
            "--",
            "modsnet",
            "serve",
            service,
        ]
        # A session of its own: stopping it signals the service inside too (SIGTERM: its graceful stop).
        processes[service] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return processes


def stop(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in processes.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes.values():
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="localhost/modsnet:dev", help="the image to run")
    parser.add_argument("--table", type=Path, default=Path("examples/saheart.csv"), help="the table to search")
    parser.add_argument("--writable-root", action="store_true", help="run through `buildah run`, the root writable")
    args = parser.parse_args(argv)
    if shutil.which("buildah") is None:
        print("image-smoke: buildah is not installed (make image installs it)", file=sys.stderr)
        return 2
    addresses = {s: f"127.0.0.1:{p}" for s, p in zip(SERVICES, free_ports(len(SERVICES)), strict=True)}
    started = time.perf_counter()
    made = subprocess.run([*BUILDAH, "from", "--quiet", args.image], capture_output=True, text=True)
    if made.returncode != 0:
        print(f"image-smoke: cannot start a container of {args.image}: {made.stderr.strip()}", file=sys.stderr)
        return 1
    container = made.stdout.strip()
    processes: dict[str, subprocess.Popen[bytes]] = {}
    with tempfile.TemporaryDirectory(prefix="modsnet-image-smoke-") as work:
        logs = Path(work)
        mounted = None
        try:
            if args.writable_root:
                processes = start(container, addresses, logs)
            else:
                got = subprocess.run([*BUILDAH, "mount", container], capture_output=True, text=True)
                if got.returncode != 0:
                    print(f"image-smoke: cannot mount the container: {got.stderr.strip()}", file=sys.stderr)
                    return 1
                mounted = Path(got.stdout.strip())
                data = logs / "data"
                data.mkdir()
                os.chown(data, 10001, 10001)
                wrong = root_is_read_only(mounted, data, image_env(container))
                if wrong:
                    print(f"image-smoke: FAIL: {wrong}", file=sys.stderr)
                    return 1
                print("root filesystem read-only: a write to /opt fails, /data and /tmp take writes")
                processes = start(container, addresses, logs, root=mounted, data=data)
            deadline = time.monotonic() + _UP_SECONDS
            while not all(serving(a) for a in addresses.values()):
                exited = [s for s, p in processes.items() if p.poll() is not None]
                if exited or time.monotonic() > deadline:
                    for service in exited or SERVICES:
                        print(f"--- {service}\n{_tail(logs / f'{service}.log')}", file=sys.stderr)
                    print("image-smoke: FAIL: the services did not come up", file=sys.stderr)
                    return 1
                time.sleep(1)
            print(f"four services up from {args.image} in {time.perf_counter() - started:.0f} s: {addresses}")

            from modsnet.client import Client
            from modsnet.embedded import import_builtin_libraries
            from modsnet.offline import smoke

            client = Client(query=addresses["query"], knowledge=addresses["knowledge"], storage=addresses["storage"])
            try:
                print("imported built-in libraries:", ", ".join(import_builtin_libraries(client)) or "none")
            finally:
                client.close()
            failures = smoke.run(smoke.KINDS, addresses=addresses, table=args.table, work=logs)
            exited = [s for s, p in processes.items() if p.poll() is not None]
            for service in exited:
                print(f"--- {service} exited\n{_tail(logs / f'{service}.log')}", file=sys.stderr)
            ok = not failures and not exited
            print("image-smoke: " + ("passed" if ok else "FAIL"))
            return 0 if ok else 1
        finally:
            stop(processes)
            if mounted is not None:
                subprocess.run([*BUILDAH, "umount", container], capture_output=True)
            subprocess.run([*BUILDAH, "rm", container], capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
