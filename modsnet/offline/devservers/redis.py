"""A real `redis-server` for tests, benchmarks and `make up`, in a folder of its own on a free port.

The machine's own Redis on 6379 is not ours to flush or kill, so tests start their own: AOF on with
`appendfsync always` (what production runs, and what the crash test needs: an acknowledged write is on disk),
RDB snapshots off. `RedisServer` starts, stops, kills (SIGKILL) and restarts it on the same folder and port;
the tests' fixtures (`tests/redis_server.py`) wrap one. With a `password` it refuses every command before AUTH
(NOAUTH); the password goes into a mode-0600 config file, never onto the command line that `ps` shows.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import redis

_READY_TIMEOUT_S = 30.0
_START_ATTEMPTS = 3  # a port found free can be taken before redis-server binds it: retry with another


class _ServerExited(RuntimeError):
    """redis-server quit while starting, most likely because its port was taken meanwhile."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One redis-server with its data (AOF, log) under `root`.

    `persistent=False` turns AOF off too, for the tests that check the store refuses such a server;
    `extra_args` are appended to the command line (e.g. `["--rename-command", "CONFIG", ""]`); `port`
    fixes the port (the local cluster keeps its ports across restarts), else a free one is picked.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        persistent: bool = True,
        extra_args: Sequence[str] = (),
        port: int = 0,
        password: str | None = None,
    ):
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not on PATH (apt-get install redis-server)")
        self._binary = binary
        self.root = Path(root)
        self.persistent = persistent
        self.extra_args = list(extra_args)
        self.password = password
        self._fixed_port = port
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (a local cluster records it to stop it later)."""
        return self._process.pid if self._process is not None else None

    def running(self) -> bool:
        """Whether the server process is alive (it is reaped here once it exits)."""
        return self._process is not None and self._process.poll() is None

    @property
    def url(self) -> str:
        """The URL without the password (a client passes that apart, as the knowledge service does)."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.root / "redis.log"

    def client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, decode_responses=True, socket_timeout=10
        )

    def start(self) -> None:
        """Start on the fixed port, else on a free one (another if it was taken meanwhile); wait until it answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self._fixed_port:
            self._launch()
            return
        for attempt in range(1, _START_ATTEMPTS + 1):
            self.port = free_port()
            try:
                self._launch()
                return
            except _ServerExited:
                if attempt == _START_ATTEMPTS:
                    raise

    def restart(self) -> None:
        """Stop (if running), then start on the same folder and port: it loads what it had persisted."""
        self.stop()
        self._launch()

    def stop(self) -> None:
        """SIGTERM: redis-server flushes and exits (it fsyncs the AOF on the way out)."""
        self._end(kill=False)

    def kill(self) -> None:
        """SIGKILL, as a crash: no flush, no goodbye; only what was already fsynced survives."""
        self._end(kill=True)

    def _end(self, *, kill: bool) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        if kill:
            process.kill()
        else:
            process.terminate()
        process.wait(timeout=30)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _command(self) -> list[str]:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        secret: list[str] = []
        if self.password is not None:
            conf = self.root / "auth.conf"
            conf.touch(mode=0o600)
            conf.chmod(0o600)
            conf.write_text(f'requirepass "{self.password}"\n')
            secret = [str(conf)]  # redis-server takes a config file as its first argument only
        return [
            self._binary,
            *secret,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.root),
            "--logfile",
            str(self.log_path),
            "--save",
            "",
            *persistence,
            *self.extra_args,
        ]

    def _launch(self) -> None:
        self._process = subprocess.Popen(
            self._command(),
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to pytest must not reach redis-server before stop() does
        )
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self) -> None:
        # Answering PING, not just listening: after a restart it refuses commands while it loads the AOF.
        client = self.client()
        deadline = time.monotonic() + _READY_TIMEOUT_S
        try:
            while True:
                assert self._process is not None
                if self._process.poll() is not None:
                    raise _ServerExited(f"redis-server exited with {self._process.returncode}:\n{self._log_tail()}")
                try:
                    client.ping()
                    return
                except redis.ConnectionError as exc:  # BusyLoadingError is one too
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"redis-server on port {self.port} not ready after {_READY_TIMEOUT_S:.0f} s ({exc})"
                        ) from exc
                    time.sleep(0.05)
        finally:
            client.close()

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
