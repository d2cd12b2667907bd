"""Storage throughput: the gRPC storage service (S3 backend) against the `minio` client straight to S3.

    .venv/bin/python benchmarks/storage.py [--sizes-mb 1 200] [--out docs/benchmarks-storage.md]

Both paths talk to the same real S3 server (SeaweedFS, started here in a temp folder) and move the same
file from disk, in one run, so the ratio is meaningful on a shared, noisy machine. The gRPC path does what
the service does for every upload: stream in chunks, hash, stage, copy to its content address.
Target (issue 4): the gRPC path at least half the direct client's throughput for 200 MB.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from minio import Minio

from modsnet.offline.devservers.seaweed import SeaweedS3
from modsnet.runtime.stubs import CHUNK, StorageClient, iter_file


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_file(path: Path, size: int) -> None:
    block = os.urandom(CHUNK)
    with open(path, "wb") as out:
        left = size
        while left > 0:
            out.write(block[: min(left, CHUNK)])
            left -= CHUNK


def direct_put(direct: Minio, path: Path, key: str, size: int) -> None:
    with open(path, "rb") as handle:
        direct.put_object("direct", key, handle, length=size, part_size=16 * 1024 * 1024)


def direct_get(direct: Minio, key: str) -> None:
    response = direct.get_object("direct", key)
    try:
        for _ in response.stream(CHUNK):
            pass
    finally:
        response.close()
        response.release_conn()


def grpc_put(client: StorageClient, path: Path, digest: str, size: int) -> None:
    with open(path, "rb") as handle:
        client.put_chunks(iter_file(handle), expected_sha256=digest, size_hint=size)


def grpc_get(client: StorageClient, digest: str) -> None:
    for _ in client.get_chunks(digest):
        pass


def timed(action) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def run(sizes_mb: list[int], repeats: dict[int, int]) -> list[dict[str, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp, SeaweedS3(Path(tmp) / "s3") as s3:
        direct = s3.client()
        direct.make_bucket("direct")
        # The service runs in its own process, as deployed: no GIL shared with this client.
        port = free_port()
        env = {
            **os.environ,
            "MODSNET_HOME": tmp,
            "MODSNET_STORAGE_BACKEND": "s3",
            "MODSNET_S3_ENDPOINT": s3.endpoint,
            "MODSNET_S3_BUCKET": "service",
            "MODSNET_S3_ACCESS_KEY": s3.access_key,
            "MODSNET_S3_SECRET_KEY": s3.secret_key,
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "modsnet", "serve", "storage", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = StorageClient(f"127.0.0.1:{port}", timeout=600)
        try:
            grpc.channel_ready_future(client.channel).result(timeout=60)
            for size_mb in sizes_mb:
                size = size_mb * 1024 * 1024
                path = Path(tmp) / f"blob-{size_mb}"
                times: dict[str, list[float]] = {"direct_put": [], "direct_get": [], "grpc_put": [], "grpc_get": []}
                for attempt in range(repeats.get(size_mb, 3)):
                    make_file(path, size)  # new content each time: no dedup shortcut
                    digest = hashlib.sha256(path.read_bytes()).hexdigest() if size <= 256 * 1024**2 else ""
                    key = f"obj-{size_mb}-{attempt}"

                    actions = {
                        "direct_put": functools.partial(direct_put, direct, path, key, size),
                        "grpc_put": functools.partial(grpc_put, client, path, digest, size),
                        "direct_get": functools.partial(direct_get, direct, key),
                        "grpc_get": functools.partial(grpc_get, client, digest),
                    }
                    # Alternate the order so neither path always runs on a warmer server.
                    for pair in (("direct_put", "grpc_put"), ("direct_get", "grpc_get")):
                        for name in pair if attempt % 2 == 0 else reversed(pair):
                            times[name].append(timed(actions[name]))
                mb = size / 1e6
                row = {"size_mb": size_mb} | {name: mb / statistics.median(t) for name, t in times.items()}
                row["put_ratio"] = row["grpc_put"] / row["direct_put"]
                row["get_ratio"] = row["grpc_get"] / row["direct_get"]
                rows.append(row)
                print(row, file=sys.stderr)
        finally:
            client.close()
            server.terminate()
            server.wait(timeout=60)
    return rows


def table(rows: list[dict[str, float]]) -> str:
    lines = [
        "| blob | direct put MB/s | gRPC put MB/s | put ratio | direct get MB/s | gRPC get MB/s | get ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size_mb']:.0f} MiB | {r['direct_put']:.0f} | {r['grpc_put']:.0f} | {r['put_ratio']:.2f} | "
            f"{r['direct_get']:.0f} | {r['grpc_get']:.0f} | {r['get_ratio']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[1, 200])
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args()
    rows = run(args.sizes_mb, {1: 20, 200: 3})
    text = table(rows)
    print(text)
    if args.out:
        command = "python benchmarks/storage.py " + " ".join(sys.argv[1:])
        stamp = datetime.date.today().isoformat()
        args.out.write_text(f"# Storage throughput\n\n`{command}` on {stamp}, 2 shared cores.\n\n{text}\n")


if __name__ == "__main__":
    main()
