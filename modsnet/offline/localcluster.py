"""The local cluster (`make up` / `make down` / `make status`): the four services as separate processes, on
real backends, kept alive by a supervisor.

    python -m modsnet.offline.localcluster up [--dir .cluster]     # start what is missing, wait until all is up
    python -m modsnet.offline.localcluster status                  # each part: state, pid, port
    python -m modsnet.offline.localcluster down [--wipe]           # stop what we started (--wipe: the data too)

The same `modsnet serve SERVICE` processes that Kubernetes runs, on loopback ports, with the knowledge graph
in a real redis-server (AOF, `appendfsync always`, a password) and the blobs in a real S3 server (SeaweedFS,
access keys), both keeping their data under the cluster folder, so `down` then `up` finds everything again.

The supervisor is a detached process (`localcluster supervise`), not part of `up`: `make up` has to return
to the shell, and something must still be there to notice a crash afterwards. It starts every part, polls
them, restarts one that exits with backoff (1, 2, 4 ... 30 s) on the same port, and gives up on a part, with
a line in logs/supervisor.log, after 5 crashes in a row each within 30 s of its start. `up` with a
supervisor already running asks it (SIGHUP) to retry what it gave up on; with none running (it was killed,
the machine rebooted) it starts one, which first stops the parts its predecessor left running, checked by
identity, and then starts everything on the recorded ports.

The folder:
    ports.json     the ports, chosen at the first `up` and kept with the data (addresses stay what was printed)
    secrets.json   Redis password, S3 keys (mode 0600), made at the first `up`
    cluster.json   the supervisor's record: its identity and each part's pid, start mark, command, state
    logs/          one log per part and the supervisor's; redis/, s3/, home/: the data
A process is "ours" only when its pid and its start mark (boot id and start tick, which no clock change moves)
match the record, so `down` never signals a process that merely reuses a recorded pid.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modsnet.client import Client
from modsnet.offline.devservers.redis import RedisServer
from modsnet.offline.devservers.seaweed import SeaweedS3, free_base_ports

SERVICES = ("storage", "knowledge", "recommender", "query")  # start order: callees first
BACKENDS = ("redis", "s3")
PARTS = (*BACKENDS, *SERVICES)
DEFAULT_PORTS = {"query": 50051, "recommender": 50052, "knowledge": 50053, "storage": 50054}
S3_PORT_ROLES = ("master", "volume", "filer", "s3", "metrics")
S3_ACCESS_KEY = "modsnet-local"

_PORTS = "ports.json"
_SECRETS = "secrets.json"
_STATE = "cluster.json"
_READY_SECONDS = 120.0  # `up` waits this long for every part to be up
_STOP_SECONDS = 60.0  # `down` waits this long for the supervisor to stop its parts
_POLL_SECONDS = 0.5
_FAST_CRASH_SECONDS = 30.0  # a part that dies sooner than this after its start failed "fast"
_GIVE_UP_AFTER = 5  # fast failures in a row
_BACKOFF_MAX_SECONDS = 30.0


# -- identity of processes -------------------------------------------------------------------------------


@functools.cache
def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _start_mark(process: psutil.Process) -> str:
    """When `process` started, in a form no clock change alters.

    psutil's create_time() is the kernel's boot time (btime) plus the start tick, and btime moves whenever
    the wall clock is stepped (NTP, a VM restored from a snapshot): the same process then reads another
    create_time from one call to the next, and the supervisor looked dead to `up` (CI, 2026-12-07). On Linux
    the mark is the boot's id and the start tick since boot, which never change; elsewhere create_time.
    """
    try:
        boot = _boot_id()
        stat = Path(f"/proc/{process.pid}/stat").read_text()
        # The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
        start_tick = stat[stat.rindex(")") + 2 :].split()[19]
        return f"{boot}:{start_tick}"
    except OSError as exc:
        if Path("/proc/self/stat").exists():  # Linux, and the process is gone
            raise psutil.NoSuchProcess(process.pid) from exc
        return repr(process.create_time())


def identity(pid: int) -> dict[str, Any]:
    """What tells this process apart from a later one with the same pid: its start mark (and, for people
    reading the record, its start time and command line)."""
    process = psutil.Process(pid)
    with process.oneshot():
        mark, started = _start_mark(process), process.create_time()
        return {"pid": pid, "mark": mark, "started": started, "cmdline": process.cmdline()}


def _recorded_mark(record: dict[str, Any]) -> str:
    # Records written before the mark existed (a cluster left up across an upgrade) carry only create_time.
    return str(record.get("mark") or repr(record.get("started")))


def _mark_now(process: psutil.Process, record: dict[str, Any]) -> str:
    return _start_mark(process) if record.get("mark") else repr(process.create_time())


def is_same_process(record: dict[str, Any] | None) -> bool:
    """Whether the recorded process still runs: same pid, same start mark, not a zombie."""
    if not record or not record.get("pid"):
        return False
    try:
        process = psutil.Process(int(record["pid"]))
        return _mark_now(process, record) == _recorded_mark(record) and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def stop_process(record: dict[str, Any], grace: float) -> bool:
    """SIGTERM the recorded process, SIGKILL after `grace`; only if it is still the same process.

    Returns whether it was ours to stop. A zombie child of this process is reaped (`up` and `down` in one
    process, as in the tests).
    """
    if not is_same_process(record):
        return False
    process = psutil.Process(int(record["pid"]))
    with contextlib.suppress(psutil.NoSuchProcess):
        process.terminate()
        try:
            process.wait(grace)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(10)
    return True


# -- the folder: ports, secrets, state --------------------------------------------------------------------


def _write_json(path: Path, value: object, *, private: bool = False) -> None:
    """Replace `path` whole (a reader never sees half a record); `private`: mode 0600 (it holds secrets)."""
    partial = path.with_name(path.name + ".part")
    partial.unlink(missing_ok=True)
    partial.touch(mode=0o600 if private else 0o644)
    partial.write_text(json.dumps(value, indent=2))
    partial.replace(path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ports(folder: Path, *, usual: bool = True) -> dict[str, Any]:
    """The cluster's ports, chosen at the first `up` and kept after: the usual service ports where free
    (`usual`), else, like Redis's and S3's, free ones below the kernel's ephemeral range, which no outgoing
    connection can take while the cluster is down."""
    recorded = _read_json(folder / _PORTS)
    if recorded is not None:
        return recorded
    spare = iter(free_base_ports(len(DEFAULT_PORTS) + 1 + len(S3_PORT_ROLES)))
    chosen: dict[str, Any] = {
        name: port if usual and _free(port) else next(spare) for name, port in DEFAULT_PORTS.items()
    }
    chosen["redis"] = next(spare)
    chosen["s3"] = {role: next(spare) for role in S3_PORT_ROLES}
    _write_json(folder / _PORTS, chosen)
    return chosen


def cluster_secrets(folder: Path) -> dict[str, str]:
    """Redis password and S3 keys, made at the first `up`, readable by their owner only."""
    path = folder / _SECRETS
    recorded = _read_json(path)
    if recorded is not None:
        path.chmod(0o600)
        return recorded
    made = {
        "redis_password": secrets.token_hex(24),
        "s3_access_key": S3_ACCESS_KEY,
        "s3_secret_key": secrets.token_hex(24),
    }
    _write_json(path, made, private=True)
    return made


def read_state(folder: Path) -> dict[str, Any] | None:
    return _read_json(folder / _STATE)


def addresses(port_map: dict[str, Any]) -> dict[str, str]:
    return {name: f"127.0.0.1:{port_map[name]}" for name in SERVICES}


# -- the supervisor ---------------------------------------------------------------------------------------


@dataclass
class _Part:
    """One supervised process and its restart bookkeeping."""

    name: str
    port: int
    state: str = "down"  # starting, up, backoff, gave-up, down
    record: dict[str, Any] | None = None
    started_at: float = 0.0
    fast_failures: int = 0
    restarts: int = 0
    retry_at: float = 0.0
    handle: Any = None  # RedisServer, SeaweedS3 or subprocess.Popen
    note: str = ""


class Supervisor:
    """Starts the parts, restarts the ones that exit, stops them all on SIGTERM (see the module docstring)."""

    def __init__(self, folder: Path, settings: dict[str, str] | None = None):
        self.folder = folder
        self.settings = dict(settings or {})
        self.logs = folder / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.ports = ports(folder)
        self.secrets = cluster_secrets(folder)
        self.parts = {name: _Part(name, self._port_of(name)) for name in PARTS}
        self._stopping = False
        self._retry_given_up = False
        self._retries_done = 0  # SIGHUPs handled: `up` waits for its own to be seen before judging the state
        self._identity = identity(os.getpid())

    def _port_of(self, name: str) -> int:
        return int(self.ports["s3"]["s3"]) if name == "s3" else int(self.ports[name])

    def log(self, message: str) -> None:
        # Its stdout is logs/supervisor.log (set by `up`).
        print(time.strftime("%Y-%m-%d %H:%M:%S"), message, flush=True)

    def service_env(self) -> dict[str, str]:
        """The environment of the four services: `up --set NAME=VALUE` settings, then the cluster's own.
        Authentication settings of the services (a tokens file, certificates) belong here too once they
        exist: one place for what every service reads."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODSNET_")}  # not the shell's addresses
        env.update({"MODSNET_" + name.upper(): value for name, value in self.settings.items()})
        service_addresses = addresses(self.ports)
        env.update(
            MODSNET_HOME=str(self.folder / "home"),
            MODSNET_KNOWLEDGE_ADDR=service_addresses["knowledge"],
            MODSNET_STORAGE_ADDR=service_addresses["storage"],
            MODSNET_RECOMMENDER_ADDR=service_addresses["recommender"],
            MODSNET_KNOWLEDGE_BACKEND="redis",
            MODSNET_REDIS_URL=f"redis://127.0.0.1:{self.ports['redis']}/0",
            MODSNET_REDIS_PASSWORD=self.secrets["redis_password"],
            MODSNET_STORAGE_BACKEND="s3",
            MODSNET_S3_ENDPOINT=f"127.0.0.1:{self.ports['s3']['s3']}",
            MODSNET_S3_BUCKET="modsnet",
            MODSNET_S3_ACCESS_KEY=self.secrets["s3_access_key"],
            MODSNET_S3_SECRET_KEY=self.secrets["s3_secret_key"],
            MODSNET_GRACE="5",
        )
        return env

    # -- one part ---------------------------------------------------------------------------------------

    def _launch(self, part: _Part) -> None:
        """Start `part` on its port. Backends are waited for (the services need them); a service is
        "starting" until its health check answers."""
        part.started_at = time.monotonic()
        if part.name == "redis":
            server = RedisServer(
                self.folder / "redis", port=part.port, password=self.secrets["redis_password"], persistent=True
            )
            server.start()
            part.handle, part.state = server, "up"
            assert server.pid is not None
            part.record = identity(server.pid)
        elif part.name == "s3":
            s3 = SeaweedS3(
                self.folder / "s3",
                access_key=self.secrets["s3_access_key"],
                secret_key=self.secrets["s3_secret_key"],
                ports=self.ports["s3"],
            )
            s3.start()
            part.handle, part.state = s3, "up"
            assert s3.pid is not None
            part.record = identity(s3.pid)
        else:
            with open(self.logs / f"{part.name}.log", "ab") as out:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "modsnet",
                        "serve",
                        part.name,
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(part.port),
                    ],
                    env=self.service_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            part.handle, part.state = process, "starting"
            part.record = identity(process.pid)
        part.note = ""
        self.log(f"{part.name}: started, pid {part.record['pid']}, port {part.port}")

    def _alive(self, part: _Part) -> bool:
        handle = part.handle
        if handle is None:
            return False
        if isinstance(handle, RedisServer | SeaweedS3):
            return handle.running()
        return bool(handle.poll() is None)

    def _stop(self, part: _Part) -> None:
        handle, part.handle = part.handle, None
        if isinstance(handle, RedisServer):
            handle.stop()  # SIGTERM: redis flushes its AOF and exits
        elif isinstance(handle, SeaweedS3):
            handle.stop()  # SIGTERM, SIGKILL after a short grace: its data is on disk already
        elif handle is not None and handle.poll() is None:
            handle.terminate()
            try:
                handle.wait(15)
            except subprocess.TimeoutExpired:
                handle.kill()
                handle.wait()
        part.state, part.record = "down", None

    def _failed(self, part: _Part, why: str) -> None:
        lived = time.monotonic() - part.started_at
        part.handle, part.record = None, None
        part.fast_failures = part.fast_failures + 1 if lived < _FAST_CRASH_SECONDS else 1
        if part.fast_failures >= _GIVE_UP_AFTER:
            part.state = "gave-up"
            part.note = f"{why}; {part.fast_failures} failures in a row within {_FAST_CRASH_SECONDS:.0f} s"
            self.log(
                f"{part.name}: GIVING UP after {part.fast_failures} failures in a row, each within "
                f"{_FAST_CRASH_SECONDS:.0f} s of its start (last: {why}); see logs/{part.name}.log; "
                "`make up` tries again"
            )
            return
        delay = min(2.0 ** (part.fast_failures - 1), _BACKOFF_MAX_SECONDS)
        part.state, part.retry_at, part.note = "backoff", time.monotonic() + delay, why
        self.log(f"{part.name}: {why} after {lived:.1f} s; restarting in {delay:.0f} s")

    def _try_launch(self, part: _Part) -> None:
        try:
            self._launch(part)
        except Exception as exc:  # a backend that does not come up counts as a crash, and is retried
            self._failed(part, f"did not start ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")

    def _check(self, part: _Part) -> None:
        if part.state in ("starting", "up") and not self._alive(part):
            code = part.handle.poll() if isinstance(part.handle, subprocess.Popen) else None
            self._failed(part, "exited" + (f" with {code}" if code is not None else ""))
            return
        if part.state == "starting" and _health_answers(f"127.0.0.1:{part.port}"):
            part.state = "up"
            self.log(f"{part.name}: up at 127.0.0.1:{part.port}")
        if part.state == "up" and part.fast_failures and time.monotonic() - part.started_at > _FAST_CRASH_SECONDS:
            part.fast_failures = 0  # it stayed up: the next crash starts a fresh count
        if part.state == "backoff" and time.monotonic() >= part.retry_at:
            part.restarts += 1
            self._try_launch(part)

    # -- the loop ---------------------------------------------------------------------------------------

    def write_state(self) -> None:
        state = {
            "supervisor": self._identity,
            "retries_done": self._retries_done,
            "addresses": addresses(self.ports),
            "ports": self.ports,
            "redis_url": f"redis://127.0.0.1:{self.ports['redis']}/0",
            "s3": f"127.0.0.1:{self.ports['s3']['s3']}",
            "parts": {
                p.name: {
                    "state": p.state,
                    "port": p.port,
                    "process": p.record,
                    "restarts": p.restarts,
                    "note": p.note,
                }
                for p in self.parts.values()
            },
        }
        _write_json(self.folder / _STATE, state)

    def _stop_predecessors(self) -> None:
        """Parts left running by a supervisor that died: stop them (identity checked) before starting ours
        on the same ports."""
        previous = read_state(self.folder)
        if not previous:
            return

        def stop(name: str) -> None:
            record = (previous.get("parts", {}).get(name) or {}).get("process") or {}
            if stop_process(record, grace=3 if name == "s3" else 10):  # SeaweedFS ignores SIGTERM for long
                self.log(f"{name}: stopped pid {record['pid']} left by the previous supervisor")

        for group in (SERVICES, BACKENDS):
            _in_parallel(stop, group)

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGHUP, self._on_hup)
        self._stop_predecessors()
        self.log(f"supervisor pid {os.getpid()} for {self.folder}")
        self.write_state()
        for part in self.parts.values():
            if self._stopping:
                break
            self._try_launch(part)
            self.write_state()
        while not self._stopping:
            if self._retry_given_up:
                self._retry_given_up = False
                for part in self.parts.values():
                    if part.state == "gave-up":
                        self.log(f"{part.name}: trying again (make up)")
                        part.fast_failures, part.retry_at, part.state = 0, 0.0, "backoff"
                self._retries_done += 1
            for part in self.parts.values():
                if self._stopping:
                    break
                self._check(part)
            self.write_state()
            time.sleep(_POLL_SECONDS)
        self.log("stopping: the services first, then S3 and Redis")
        for group in (SERVICES, BACKENDS):
            _in_parallel(lambda name: self._stop(self.parts[name]), group)
            self.write_state()
        (self.folder / _STATE).unlink(missing_ok=True)
        self.log("stopped")

    def _on_term(self, signum: int, frame: object) -> None:
        self._stopping = True

    def _on_hup(self, signum: int, frame: object) -> None:
        self._retry_given_up = True


def _in_parallel(action: Callable[[str], None], names: tuple[str, ...]) -> None:
    """`action` on each name at once: each part waits out its own grace. Callers (the services) go as one
    group before their callees (Redis, S3)."""
    threads = [threading.Thread(target=action, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _health_answers(address: str) -> bool:
    """Whether the gRPC server at `address` answers its health check at all. Up means "listening and
    answering": a service whose dependency is down answers NOT_SERVING, and restarting it would not help."""
    try:
        with grpc.insecure_channel(address) as channel:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        return True
    except grpc.RpcError:
        return False


def _health(address: str) -> str:
    try:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    except grpc.RpcError as exc:
        return f"unreachable ({exc.code().name})"  # type: ignore[attr-defined]


# -- up, down, status -------------------------------------------------------------------------------------


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _SupervisorGone(SystemExit):
    """The supervisor `up` waits on exited."""


def _spawn_supervisor(folder: Path, settings: dict[str, str]) -> dict[str, Any]:
    with open(folder / "logs" / "supervisor.log", "ab") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "modsnet.offline.localcluster", "supervise", "--dir", str(folder)),
                *(f"--set={name}={value}" for name, value in settings.items()),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives `make up` and a Ctrl-C in its shell; `make down` stops it
        )
    return identity(process.pid)


def _part_log(folder: Path, name: str) -> Path:
    return {"redis": folder / "redis" / "redis.log", "s3": folder / "s3" / "weed.log"}.get(
        name, folder / "logs" / f"{name}.log"
    )


def _wait_all_up(folder: Path, supervisor: dict[str, Any], timeout: float, retries_done: int) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    state: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        state = read_state(folder)
        if not is_same_process(supervisor):
            raise _SupervisorGone(f"the supervisor exited:\n{_log_tail(folder / 'logs' / 'supervisor.log')}")
        if (
            state
            and _recorded_mark(state.get("supervisor") or {}) == _recorded_mark(supervisor)
            and state.get("retries_done", 0) >= retries_done
        ):
            parts = state["parts"]
            given_up = [name for name, part in parts.items() if part["state"] == "gave-up"]
            if given_up:
                name = given_up[0]
                raise SystemExit(
                    f"{name} keeps failing ({parts[name]['note']}); the supervisor gave up on it:\n"
                    + _log_tail(_part_log(folder, name))
                )
            if all(part["state"] == "up" for part in parts.values()):
                return state
        time.sleep(0.3)
    waiting = [n for n, p in (state or {}).get("parts", {}).items() if p["state"] != "up"]
    raise SystemExit(
        f"the local cluster is not up after {timeout:.0f} s (waiting for {', '.join(waiting) or 'the supervisor'}):\n"
        + _log_tail(folder / "logs" / "supervisor.log")
    )


def _running_supervisor(folder: Path) -> dict[str, Any] | None:
    state = read_state(folder)
    record = state.get("supervisor") if state else None
    return record if is_same_process(record) else None


def up(
    folder: Path,
    *,
    settings: dict[str, str] | None = None,
    usual_ports: bool = True,
    import_libraries: bool = True,
    timeout: float = _READY_SECONDS,
) -> dict[str, Any]:
    """Start what is missing and wait until every part is up; idempotent (a second `up` changes nothing).

    `settings` (name: value, as `modsnet serve` reads them from MODSNET_NAME, e.g. {"estimator": "knn"})
    go to every service; they take effect when the supervisor starts, not on a cluster already up.
    `usual_ports=False` picks free ports at the first `up` even where 50051-50054 are free (tests, which
    run beside other clusters).
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "logs").mkdir(exist_ok=True)
    ports(folder, usual=usual_ports)
    cluster_secrets(folder)
    supervisor = _running_supervisor(folder)
    state: dict[str, Any] | None = None
    if supervisor is not None:
        retries_done = int((read_state(folder) or {}).get("retries_done", 0)) + 1
        try:
            os.kill(supervisor["pid"], signal.SIGHUP)  # retry what it gave up on; it restarts crashed parts anyway
            state = _wait_all_up(folder, supervisor, timeout, retries_done)
        except (ProcessLookupError, _SupervisorGone):
            state = None  # it was dying as we looked (killed, say): start a new one, as if it had been gone
    if state is None:
        state = _wait_all_up(folder, _spawn_supervisor(folder, settings or {}), timeout, 0)
    state["imported"] = []
    if import_libraries:
        # Here, not at the top: it imports every service (3 s), which `down`, `status` and the supervisor skip.
        from modsnet.embedded import import_builtin_libraries

        service_addresses = state["addresses"]
        client = Client(
            query=service_addresses["query"],
            knowledge=service_addresses["knowledge"],
            storage=service_addresses["storage"],
        )
        try:
            state["imported"] = import_builtin_libraries(client)
        finally:
            client.close()
    return state


def down(folder: Path, *, wipe: bool = False) -> None:
    """Stop the supervisor and every part it recorded, each only if it is still the process recorded;
    remove the state file; with `wipe`, the data, ports and secrets too."""
    state = read_state(folder)
    if state is None:
        print(f"no local cluster recorded in {folder / _STATE}")
    else:
        supervisor = state.get("supervisor")
        if stop_process(supervisor or {}, grace=_STOP_SECONDS):
            print(f"supervisor pid {supervisor['pid']} stopped")  # type: ignore[index]
        for name in reversed(PARTS):  # what a dead or stuck supervisor left behind, callers first
            record = (state.get("parts", {}).get(name) or {}).get("process")
            if not record:
                continue
            if stop_process(record, grace=3 if name == "s3" else 10):
                print(f"{name}: stopped pid {record['pid']}")
            elif psutil.pid_exists(int(record["pid"])) and _alive_other(record):
                print(f"{name}: pid {record['pid']} now belongs to another process: left alone")
        (folder / _STATE).unlink(missing_ok=True)
    if wipe:
        for entry in ("redis", "s3", "home", "logs"):
            shutil.rmtree(folder / entry, ignore_errors=True)
        for entry in (_PORTS, _SECRETS):
            (folder / entry).unlink(missing_ok=True)
        print("local cluster stopped; its data, ports and secrets removed from", folder)
    else:
        print("local cluster stopped (data kept in", folder, "; `down --wipe` removes it)")


def _alive_other(record: dict[str, Any]) -> bool:
    try:
        return _mark_now(psutil.Process(int(record["pid"])), record) != _recorded_mark(record)
    except psutil.NoSuchProcess:
        return False


def status(folder: Path, *, out: Callable[[str], None] = print) -> int:
    """Print each part (state, pid, port, health of services); 0 when all are up and serving."""
    state = read_state(folder)
    if state is None:
        out("no local cluster running (make up)")
        return 1
    supervisor = state.get("supervisor")
    alive = is_same_process(supervisor)
    out(f"{'supervisor':12} {'up' if alive else 'down':9} pid {supervisor['pid'] if supervisor else '-'}")  # type: ignore[index]
    healthy = alive
    for name, part in state["parts"].items():
        record = part.get("process")
        running = is_same_process(record)
        shown = part["state"] if running or part["state"] in ("backoff", "gave-up") else "down"
        line = f"{name:12} {shown:9} pid {record['pid'] if running and record else '-':<8} port {part['port']:<6}"
        serving = True
        if name in SERVICES and running:
            health = _health(f"127.0.0.1:{part['port']}")
            serving = health == "SERVING"
            line += f" health {health}"
        if part.get("note"):
            line += f" ({part['note']})"
        healthy &= running and shown == "up" and serving
        out(line)
    return 0 if healthy else 1


def client_env(state: dict[str, Any]) -> str:
    service_addresses = state["addresses"]
    return "\n".join(
        f"export MODSNET_{name.upper()}_ADDR={service_addresses[name]}" for name in sorted(service_addresses)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modsnet.offline.localcluster", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("up", "down", "status", "supervise"))
    parser.add_argument("--dir", type=Path, default=Path(".cluster"), help="where backends keep data and logs")
    parser.add_argument("--wipe", action="store_true", help="down: remove the data, ports and secrets too")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="up: a setting for every service (e.g. estimator=knn), when the supervisor starts",
    )
    args = parser.parse_args(argv)
    folder = args.dir.resolve()
    settings = dict(item.split("=", 1) for item in args.set if "=" in item)
    if args.action == "up":
        state = up(folder, settings=settings)
        print("local cluster up: redis", state["redis_url"], "| S3", state["s3"], "| credentials in", folder / _SECRETS)
        print("to use it from this shell:\n" + client_env(state))
        return 0
    if args.action == "down":
        down(folder, wipe=args.wipe)
        return 0
    if args.action == "supervise":
        Supervisor(folder, settings).run()
        return 0
    return status(folder)


if __name__ == "__main__":
    sys.exit(main())
