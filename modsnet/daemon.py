"""The local daemon: the embedded cluster kept warm in a background process that CLI commands reuse.

A CLI command that runs the embedded cluster itself pays for starting it every time: importing the four
services and the numerical stack, then loading the library's estimator (a GNN checkpoint and its ONNX
export) on the first search. `modsnet daemon start` runs that same cluster once, detached, and every later
command of the same data folder talks to it over gRPC, so a warm search costs the client's start and the
search itself.

Files, all in the data folder ($MODSNET_HOME):
- `daemon.json` (mode 0600): pid, the four services' loopback addresses, the bearer token, start time;
- `daemon-auth.yaml` (0600): the sha256 of that token and of the services' own token (authentication is
  on in the daemon's services, so another local user, who cannot read the token, is refused);
- `daemon-status.json` (0600): what the daemon is doing, rewritten every second (libraries warm,
  trainings under way with their progress);
- `daemon.log` (0600): its log; `daemon.lock`: taken while a daemon starts, so two commands start one.

The daemon runs with the environment of the command that started it (MODSNET_ESTIMATOR, MODSNET_GNN_*, ...)
and the code installed then: `modsnet daemon stop` makes the next search start one with the current ones.

A pid that is gone, or a live pid that is not a modsnet daemon (reused), makes those files stale: they
are removed and the CLI runs as if no daemon ran. `daemon stop` (SIGTERM) cancels a training under way at
its next step, so no checkpoint of it is written and the next search trains again, waits for the process
to exit and exits 0. The daemon also exits by itself after `MODSNET_DAEMON_IDLE_MINUTES` (default 60)
without a request and without a training under way.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from modsnet.runtime import config as cfg
from modsnet.runtime.errors import ConfigError, Unavailable

log = logging.getLogger(__name__)

STATE_FILE = "daemon.json"
STATUS_FILE = "daemon-status.json"
AUTH_FILE = "daemon-auth.yaml"
LOG_FILE = "daemon.log"
LOCK_FILE = "daemon.lock"
START_SECONDS = 300.0  # a first start imports the built-in libraries: about a minute on 2 cores
STOP_SECONDS = 120.0
IDLE_MINUTES = 60.0
STATUS_INTERVAL = 1.0
_QUIET_METHODS = ("Check", "Watch", "ServerReflectionInfo")  # health and reflection are not use


@dataclass(frozen=True)
class DaemonInfo:
    """What `daemon.json` records of a running daemon."""

    pid: int
    addresses: dict[str, str]
    token: str
    started_unix: float
    home: str

    @property
    def address(self) -> str:
        return self.addresses["query"]


def enabled(args: argparse.Namespace | None = None) -> bool:
    """Whether CLI commands use (and a search starts) the daemon: not with --no-daemon or MODSNET_DAEMON=0."""
    if args is not None and getattr(args, "no_daemon", False):
        return False
    try:
        return cfg.parse_bool(os.environ.get("MODSNET_DAEMON") or "true")
    except ValueError:
        raise ConfigError("MODSNET_DAEMON must be 1 or 0 (true/false)") from None


# ----------------------------------------------------------------------------------------------------
# Files


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, whole or not at all (a reader never sees half of it)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def read_info(home: Path) -> DaemonInfo | None:
    try:
        data = json.loads((home / STATE_FILE).read_text(encoding="utf-8"))
        return DaemonInfo(
            int(data["pid"]), dict(data["addresses"]), str(data["token"]), float(data["started_unix"]), data["home"]
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s is unreadable (%s): treated as stale", home / STATE_FILE, exc)
        return DaemonInfo(0, {}, "", 0.0, str(home))


def read_status(home: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((home / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _remove_files(home: Path) -> None:
    for name in (STATE_FILE, STATUS_FILE, AUTH_FILE):
        (home / name).unlink(missing_ok=True)


def _is_daemon_process(pid: int) -> bool:
    """The pid is alive and is a `modsnet daemon run` (not another program that reused the number)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's: not our daemon
        return False
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc here: a live pid is all there is to go on
    return b"modsnet" in b" ".join(words) and b"daemon" in words and b"run" in words


def _answers(address: str, timeout: float = 2.0) -> bool:
    """The query service at `address` answers its liveness check as SERVING.

    Liveness, not readiness: a daemon whose readiness flaps on a busy machine is still the one to use (a
    command's own call then says what is wrong), never a reason to start a second cluster on the same data.
    """
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from modsnet.runtime.server import LIVENESS

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=LIVENESS), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _import_estimators() -> None:
    try:
        importlib.import_module("services.recommender.estimators.gnn")
        importlib.import_module("services.recommender.estimators.gnn.onnx_export")
    except Exception:  # only a head start: the search imports them itself and reports what fails
        log.warning("could not import the GNN's modules ahead of the first search", exc_info=True)


def running(home: Path, *, check: bool = True) -> DaemonInfo | None:
    """The daemon of this data folder if one runs (and answers, when `check`); stale files are removed."""
    info = read_info(home)
    if info is None:
        return None
    if not _is_daemon_process(info.pid):
        log.info("removing the stale daemon files of %s (pid %d is gone)", home, info.pid)
        _remove_files(home)
        return None
    if check and not _answers(info.address):
        return None
    return info


@contextlib.contextmanager
def _start_lock(home: Path) -> Iterator[None]:
    home.mkdir(parents=True, exist_ok=True)
    with open(home / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------------------------------
# Starting and stopping (the CLI's side)


def start(home: Path, *, timeout: float = START_SECONDS, announce: bool = True) -> tuple[DaemonInfo, bool]:
    """The running daemon of `home`, started now if none runs. Returns it and whether it was started now.

    Two commands starting it at once start one: the second waits on the lock and finds the first's.
    """
    home = home.resolve()
    with _start_lock(home):
        info = running(home, check=False)
        if info is not None:
            if _wait_answering(info, home, timeout):
                return info, False
            raise Unavailable(f"the modsnet daemon (pid {info.pid}) does not answer; see {home / LOG_FILE}")
        _remove_files(home)
        command = [sys.executable, "-m", "modsnet", "--home", str(home), "daemon", "run"]
        # The log names uploaded files and libraries: this user's to read, as the token is.
        descriptor = os.open(home / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "ab") as log_file:
            process = subprocess.Popen(  # detached: its own session, no terminal, survives this command
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
                close_fds=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        if announce:
            print(f"modsnet: starting the daemon (pid {process.pid}; `modsnet daemon stop` stops it)", file=sys.stderr)
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if process.poll() is not None:
                raise Unavailable(f"the modsnet daemon exited while starting ({_log_tail(home)})")
            info = read_info(home)
            if info is not None and info.pid == process.pid and _answers(info.address, timeout=1.0):
                return info, True
            time.sleep(0.1)
        process.terminate()
        raise Unavailable(f"the modsnet daemon did not start within {timeout:.0f} s; see {home / LOG_FILE}")


def _wait_answering(info: DaemonInfo, home: Path, timeout: float) -> bool:
    give_up = time.monotonic() + timeout
    while True:
        if _answers(info.address, timeout=1.0):
            return True
        if not _is_daemon_process(info.pid) or time.monotonic() > give_up:
            return False
        time.sleep(0.2)


def _log_tail(home: Path, lines: int = 3) -> str:
    try:
        tail = (home / LOG_FILE).read_text(encoding="utf-8", errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return "no log"
    return " | ".join(tail) or f"nothing in {home / LOG_FILE}"


def stop(home: Path, *, timeout: float = STOP_SECONDS) -> DaemonInfo | None:
    """SIGTERM the daemon and wait until it has exited. Returns what ran (None: nothing ran)."""
    home = home.resolve()
    info = running(home, check=False)
    if info is None:
        _remove_files(home)
        return None
    os.kill(info.pid, signal.SIGTERM)
    give_up = time.monotonic() + timeout
    while _is_daemon_process(info.pid):
        if time.monotonic() > give_up:
            raise Unavailable(f"the modsnet daemon (pid {info.pid}) did not exit within {timeout:.0f} s")
        time.sleep(0.1)
    _remove_files(home)  # it removes them itself; this covers a daemon killed on the way out
    return info


def client(info: DaemonInfo):  # type: ignore[no-untyped-def]
    """A client of the daemon's services (every address: the daemon administers too)."""
    from modsnet.client import Client

    return Client(
        query=info.addresses["query"],
        knowledge=info.addresses["knowledge"],
        storage=info.addresses["storage"],
        recommender=info.addresses["recommender"],
        token=info.token,
    )


# ----------------------------------------------------------------------------------------------------
# The daemon process (`modsnet daemon run`)


def serve(home: Path) -> int:
    """Run the embedded cluster with authentication on, publish it in `daemon.json`, serve until SIGTERM."""
    from modsnet.embedded import EmbeddedCluster
    from modsnet.runtime.auth import ADMIN, INTERNAL, hash_token, new_token

    home = home.resolve()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    user_token, service_token = new_token(), new_token()
    entries = [
        {"name": "daemon-user", "sha256": hash_token(user_token), "scopes": [ADMIN]},
        {"name": "daemon-services", "sha256": hash_token(service_token), "scopes": [INTERNAL]},
    ]
    _write_private(home / AUTH_FILE, json.dumps({"tokens": entries}, indent=2))
    idle_seconds = 60.0 * float(os.environ.get("MODSNET_DAEMON_IDLE_MINUTES") or IDLE_MINUTES)
    started = time.time()
    log.info("daemon of %s starting (pid %d)", home, os.getpid())
    cluster = EmbeddedCluster(home, auth_file=home / AUTH_FILE, service_token=service_token, client_token=user_token)
    try:
        cluster.start()
        info = DaemonInfo(os.getpid(), dict(cluster.addresses), user_token, started, str(home))
        _write_private(home / STATE_FILE, json.dumps(asdict(info), indent=2))
        log.info("daemon ready on %s (started in %.1f s)", info.address, time.time() - started)
        # The GNN's modules (torch, torch-geometric, the ONNX exporter) take seconds to import, half a minute on
        # a busy machine: import them now, while the user's first command is on its way, not inside its search.
        threading.Thread(target=_import_estimators, name="import-estimators", daemon=True).start()
        last_use, requests = time.monotonic(), _requests()
        while not done.wait(STATUS_INTERVAL):
            trainings = cluster.recommender_core.trainings()
            now_requests = _requests()
            if now_requests != requests or trainings:
                last_use, requests = time.monotonic(), now_requests
            _write_private(home / STATUS_FILE, json.dumps(_status(cluster, info, trainings), indent=2))
            if idle_seconds > 0 and time.monotonic() - last_use > idle_seconds:
                log.info("idle for %.0f minutes: exiting", idle_seconds / 60)
                break
        trainings = cluster.recommender_core.trainings()
        for training in trainings:
            log.info("stopping: cancelling %s (no checkpoint of it is written)", training.describe())
    finally:
        cluster.stop()  # the recommender cancels its trainings and waits for their threads to end
        if (read_info(home) or DaemonInfo(0, {}, "", 0, "")).pid == os.getpid():
            _remove_files(home)
        log.info("daemon stopped")
    return 0


def _requests() -> float:
    """Requests the services have handled so far, health checks and reflection left out."""
    from modsnet.runtime.metrics import GRPC_REQUESTS

    total = 0.0
    for metric in GRPC_REQUESTS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("method") not in _QUIET_METHODS:
                total += sample.value
    return total


def _status(cluster: Any, info: DaemonInfo, trainings: list[Any]) -> dict[str, Any]:
    return {
        "pid": info.pid,
        "address": info.address,
        "started_unix": info.started_unix,
        "updated_unix": time.time(),
        "libraries_warm": cluster.recommender_core.warm_libraries(),
        "trainings": [{**asdict(t), "fraction": t.fraction, "line": t.describe()} for t in trainings],
    }


# ----------------------------------------------------------------------------------------------------
# The `modsnet daemon` commands


def add_commands(commands: Any) -> None:
    """`modsnet daemon start|stop|status|run` on the CLI's sub-command parser."""
    daemon = commands.add_parser("daemon", help="the local daemon that keeps the embedded cluster warm")
    actions = daemon.add_subparsers(dest="daemon_command", required=True, metavar="ACTION")
    actions.add_parser("start", help="start it (searches start it by themselves unless MODSNET_DAEMON=0)")
    actions.add_parser("stop", help="stop it (a training under way is cancelled; the next search trains again)")
    status = actions.add_parser("status", help="pid, address, uptime, libraries warm, trainings under way")
    status.add_argument("--json", action="store_true")
    actions.add_parser("run", help="run it in this process, in the foreground (what `start` runs detached)")
    daemon.set_defaults(run=cmd_daemon)


def cmd_daemon(args: argparse.Namespace) -> int:
    home = Path(args.home) if args.home else cfg.default_home()
    action = args.daemon_command
    if action == "run":
        return serve(home)
    if action == "start":
        info, started = start(home, announce=False)
        state = "started" if started else "already running"
        print(f"modsnet daemon {state}: pid {info.pid}, {info.address}, data {info.home}")
        return 0
    if action == "stop":
        status = read_status(home) or {}
        stopped = stop(home)
        if stopped is None:
            print("no modsnet daemon running")
            return 0
        for training in status.get("trainings", []):
            print(f"cancelled: {training['line']} (the next search trains it again)")
        print(f"modsnet daemon stopped (pid {stopped.pid})")
        return 0
    return _print_status(home, json_output=bool(getattr(args, "json", False)))


def _print_status(home: Path, *, json_output: bool) -> int:
    """Exit status 0 when a daemon runs and answers, 3 when none runs, 1 when one runs but does not answer."""
    asked = time.time()
    info = running(home.resolve(), check=False)
    answering = info is not None and _answers(info.address)
    status = (_fresh_status(home, asked) or {}) if answering else {}
    if json_output:
        state = "running" if answering else "not answering" if info is not None else "stopped"
        print(json.dumps({"state": state, **status}, indent=2))
    elif info is None:
        print("no modsnet daemon running")
    else:
        uptime = time.time() - info.started_unix
        print(f"modsnet daemon: pid {info.pid}, {info.address}, up {_duration(uptime)}, data {info.home}")
        if not answering:
            print("  not answering (starting, or stuck: see daemon.log)")
        warm = status.get("libraries_warm") or {}
        print("  libraries warm: " + (", ".join(f"{k} ({v})" for k, v in sorted(warm.items())) or "none yet"))
        trainings = status.get("trainings") or []
        for training in trainings:
            print(f"  {training['line']}")
        if not trainings:
            print("  no training under way")
    return 0 if answering else 3 if info is None else 1


def _fresh_status(home: Path, since: float) -> dict[str, Any] | None:
    """The daemon's status as written after `since` (it rewrites it every STATUS_INTERVAL), so what a
    command did just before shows; the latest one if none comes within a few intervals."""
    give_up = time.monotonic() + 3 * STATUS_INTERVAL
    status = read_status(home)
    while (status is None or float(status.get("updated_unix", 0)) < since) and time.monotonic() < give_up:
        time.sleep(STATUS_INTERVAL / 10)
        status = read_status(home)
    return status


def _duration(seconds: float) -> str:
    minutes, second = divmod(int(seconds), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}h{minute:02d}m" if hours else f"{minute}m{second:02d}s"


# ----------------------------------------------------------------------------------------------------
# A command that ran the cluster in its own process


_TRAINING_CLUSTERS: list[Any] = []


def stop_when_trained(cluster: Any) -> None:
    """Stop an in-process cluster now, or at `finish_trainings_then_stop` if it is training (so the command
    prints its answer first)."""
    if cluster.recommender_core.training_threads():
        _TRAINING_CLUSTERS.append(cluster)
    else:
        cluster.stop()


def finish_trainings_then_stop(status: int) -> int:
    """At the end of a command: let its clusters finish their trainings, stop them; 130 after a Ctrl-C."""
    while _TRAINING_CLUSTERS:
        cluster = _TRAINING_CLUSTERS.pop()
        try:
            finish_trainings(cluster)
        except KeyboardInterrupt:
            status = 130
        finally:
            cluster.stop()  # cancels what still trains and waits for its thread
    return status


def finish_trainings(cluster: Any, out: Any = None) -> None:
    """Wait for the trainings a command started in its own embedded cluster, with a progress line.

    The process must not exit under a training: the training would be lost (every later search would
    start it again) and torch would be torn down under its thread. Ctrl-C here cancels it cleanly: the
    KeyboardInterrupt reaches the cluster's stop, which cancels the training at its next step (no
    checkpoint of it is written) and waits for its thread.
    """
    out = out or sys.stderr
    sys.stdout.flush()  # the answer first
    core = cluster.recommender_core
    threads = core.training_threads()
    if not threads:
        return
    tty = out.isatty()
    libraries = [p.library for p in core.trainings()]
    shown = 0.0
    try:
        while any(t.is_alive() for t in threads):
            lines = [p.describe() for p in core.trainings()]
            now = time.monotonic()
            if lines and (tty or now - shown >= 15.0):
                text = "; ".join(lines) + " (Ctrl-C cancels it; the next search trains again)"
                out.write(f"\r\033[K{text}" if tty else text + "\n")
                out.flush()
                shown = now
            for thread in threads:
                thread.join(timeout=0.5)
    except KeyboardInterrupt:
        out.write(("\n" if tty else "") + "cancelling the training (nothing of it is kept)...\n")
        out.flush()
        raise
    if tty:
        out.write("\r\033[K")
    warm = core.warm_libraries()
    for library in libraries:
        done = "trained" in warm.get(library, "")
        out.write(
            f"the GNN of {library} is trained and checkpointed: later searches use it\n"
            if done
            else f"the training of {library} did not finish (see the log); the next search trains again\n"
        )
    out.flush()
