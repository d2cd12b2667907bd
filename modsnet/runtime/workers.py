"""A bounded pool of worker processes for CPU-heavy work of a request (parsing, features, probes).

Why processes: that work is mostly Python holding the GIL, so on a gRPC thread it starves every other
call of the process (feedback waited seconds behind searches). Here it runs in at most `size` worker
processes (default: the cores), each reused from task to task so its imports and caches stay warm.

How it stays safe:
- Workers come from the `forkserver` start method: the server process (with gRPC's threads) is never
  forked; the fork server is a fresh interpreter that imports `preload` once, so a worker costs a fork.
- The pool starts nothing until its first task and `close` stops every worker (the embedded cluster
  runs it in the same process as the services and closes it with them).
- A task waits at most its `timeout` for a worker and then for its answer; past it, that one worker is
  killed (a stuck fit cannot outlive its request) and a fresh one replaces it at the next task.
- A task may send progress while it runs (`report`), to its caller's `progress`; a caller's `cancel` event
  kills that one worker (a long task, a GNN's training, stops at once when its service does).
- A worker's `ModsnetError` (bad input: INVALID_ARGUMENT naming the file, row or column) comes back as
  the same error with the same message; anything else is raised as `WorkerFailed` (INTERNAL, its
  traceback logged), and a worker that dies (killed, out of memory) as `WorkerFailed` saying so.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import pickle
import threading
import time
import traceback
import uuid
import weakref
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

from .errors import DeadlineExceeded, Internal, ModsnetError, Unavailable, from_code

log = logging.getLogger(__name__)

T = TypeVar("T")


def available_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup CPU quota (a container's CPU
    limit, which `os.cpu_count()` does not see: it counts the node's cores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        # cgroup v2: "max 100000" (no limit) or "200000 100000" (two cores)
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


class WorkerFailed(Internal):
    """A task failed in its worker with an unexpected error, or the worker died under it."""


class Cancelled(Unavailable):
    """The caller's `cancel` event was set while its task ran: the worker was stopped."""


POLL_SECONDS = 0.2  # how often a caller waiting for its task looks at its cancel event and the pool's close

_reporting: Connection | None = None  # in a worker, while a task runs: where `report` sends


def report(value: Any) -> None:
    """From a task running in a worker: send `value` to its caller's `progress` (a no-op elsewhere). Each is a
    message through a pipe and a wake-up of the caller: a task reports a few times a second, not per step."""
    if _reporting is not None:
        _reporting.send(("progress", value))


def _serve(conn: Connection) -> None:
    """A worker's loop: run each (function, args) it is sent and send back ("ok", value) or ("error", ...)."""
    global _reporting
    while True:
        try:
            function, args = conn.recv()
        except (EOFError, OSError):  # the pool closed (or its process died): nothing more to do
            return
        _reporting = conn
        try:
            reply: tuple[str, Any] = ("ok", function(*args))
        except ModsnetError as exc:
            reply = ("modsnet", (type(exc), exc.code, exc.message))
        except BaseException as exc:  # reported to the caller, never kills the worker
            reply = ("error", (f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        finally:
            _reporting = None
        try:
            conn.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:  # an unpicklable result
            conn.send(("error", (f"result not transferable: {exc}", traceback.format_exc())))


class _Worker:
    def __init__(self, context: Any, name: str):
        self.conn, child = context.Pipe(duplex=True)
        # Not a daemon: a worker may start children of its own (the XRD sandbox's finders).
        self.process = context.Process(target=_serve, args=(child,), name=name, daemon=False)
        self.process.start()
        child.close()
        # A close() and the caller of a task the close interrupts both end a busy worker: once only, for a
        # second os.close of the pipe's descriptor would fail, or close whatever file has reused its number.
        self._ending = threading.RLock()
        self.idle_since = 0.0  # when it was last given back to its pool (time.monotonic)

    def kill(self) -> None:
        with self._ending:
            # The process first: a caller still polling the pipe then sees its end, not a handle closed under it.
            if self.process.is_alive():
                self.process.kill()
            self.process.join(5)
            if not self.conn.closed:
                self.conn.close()

    def stop(self) -> None:
        with self._ending:
            if not self.conn.closed:
                self.conn.close()  # the worker's recv sees EOF and returns
            self.process.join(2)
            if self.process.is_alive():
                self.kill()


_pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # Before multiprocessing's own exit handler (registered earlier, so run later), which would wait for
    # non-daemon workers still waiting for tasks.
    for pool in list(_pools):
        pool.close()


class WorkerPool:
    """At most `size` worker processes (default: the cores this process may use) running tasks for request
    threads."""

    def __init__(self, name: str, *, size: int = 0, preload: Sequence[str] = (), idle_seconds: float | None = None):
        """`idle_seconds`: a worker left idle that long is stopped (its memory given back; the next task starts
        another); None keeps idle workers until the pool closes."""
        self.name = name
        self.size = size if size > 0 else available_cores()
        self.preload = list(preload)
        self.idle_seconds = idle_seconds
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._slots = threading.BoundedSemaphore(self.size)
        self._lock = threading.Lock()
        self._context: Any = None
        if self.preload:
            # One fork server per process, shared with modsnet.models.sandbox and the other pools: its preload is
            # set by the first pool made, not the first to start a worker (a pool of GNN trainings, without one,
            # may start it before a search does).
            multiprocessing.get_context("forkserver").set_forkserver_preload(self.preload)
        self._closed = False
        self._started = 0
        _pools.add(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def busy(self) -> list[int]:
        """The process ids of the workers running a task now."""
        with self._lock:
            return [w.process.pid for w in self._all if w not in self._idle and w.process.pid is not None]

    @property
    def started(self) -> int:
        """Workers started so far (replacements of killed ones included)."""
        return self._started

    def _checkout(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise Unavailable(f"{self.name} is shutting down")
            if self._idle:
                return self._idle.pop()
            if self._context is None:
                self._context = multiprocessing.get_context("forkserver")
            self._started += 1
            number = self._started
        worker = _Worker(self._context, f"{self.name}-worker-{number}")
        with self._lock:
            self._all.add(worker)
        return worker

    def _checkin(self, worker: _Worker) -> None:
        with self._lock:
            if not self._closed:
                worker.idle_since = time.monotonic()
                self._idle.append(worker)
                if self.idle_seconds is not None:
                    timer = threading.Timer(self.idle_seconds, self._stop_idle)
                    timer.daemon = True
                    timer.start()
                return
        worker.stop()

    def _stop_idle(self) -> None:
        """Stop the workers idle for `idle_seconds` or more (a timer started at each check-in)."""
        assert self.idle_seconds is not None
        with self._lock:
            now = time.monotonic()
            # A small allowance: the timer of this check-in may fire a hair before its worker's time is up.
            stale = [w for w in self._idle if now - w.idle_since >= self.idle_seconds * 0.99]
            for worker in stale:
                self._idle.remove(worker)
                self._all.discard(worker)
        for worker in stale:
            worker.stop()

    def _discard(self, worker: _Worker) -> None:
        with self._lock:
            self._all.discard(worker)
        worker.kill()

    def run(
        self,
        function: Callable[..., T],
        *args: Any,
        timeout: float | None = None,
        what: str = "",
        progress: Callable[[Any], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> T:
        """`function(*args)` in a worker: its value, or its error (see the module). `function` must be a
        module-level function; `timeout` (None: none) bounds the wait for a worker plus the run. What the task
        `report`s goes to `progress`, on this thread; `cancel` set stops the worker and raises `Cancelled`."""
        what = what or getattr(function, "__name__", "task")
        started = time.monotonic()
        if not self._acquire(timeout, cancel, what):
            raise DeadlineExceeded(f"{what}: no worker process free within {timeout:.1f} s")
        try:
            worker = self._checkout()
            try:
                worker.conn.send((function, args))
                while True:
                    left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
                    # In slices: a cancel or a close is seen within one, whatever the task's length.
                    if worker.conn.poll(POLL_SECONDS if left is None else min(left, POLL_SECONDS)):
                        status, value = worker.conn.recv()
                        if status != "progress":
                            break
                        if progress is not None:
                            progress(value)
                        continue
                    if cancel is not None and cancel.is_set():
                        self._discard(worker)
                        raise Cancelled(f"{what}: cancelled (its worker process was stopped)")
                    if left is not None and left <= 0:
                        self._discard(worker)
                        raise DeadlineExceeded(f"{what}: ran past its {timeout:.1f} s (its worker process was stopped)")
                    if self._closed:
                        raise EOFError  # close() kills the busy workers: as if this one had died
            except (EOFError, OSError, BrokenPipeError):
                code = worker.process.exitcode
                self._discard(worker)
                if self._closed:
                    raise Unavailable(f"{what}: {self.name} is shutting down") from None
                raise WorkerFailed(f"{what}: its worker process died (exit code {code})") from None
            self._checkin(worker)
        finally:
            self._slots.release()
        if status == "ok":
            result: T = value
            return result
        if status == "modsnet":
            error_type, code, message = value
            try:
                error = error_type(message)
            except TypeError:  # a subclass with more arguments (Busy): its status, its message
                error = from_code(code, message)
            raise error
        summary, trace = value
        incident = uuid.uuid4().hex[:12]
        log.error("%s failed in a worker process (incident %s): %s\n%s", what, incident, summary, trace)
        # As the interceptor does for unexpected errors: the client gets the incident, not the detail.
        raise WorkerFailed(f"internal error in {what} (incident {incident}; see the service log)")

    def _acquire(self, timeout: float | None, cancel: threading.Event | None, what: str) -> bool:
        """A slot within `timeout`; a set `cancel` or a close while waiting for one raises."""
        end = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"{what}: cancelled before a worker process was free")
            if self._closed:
                raise Unavailable(f"{what}: {self.name} is shutting down")
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return self._slots.acquire(blocking=False)
            if self._slots.acquire(timeout=POLL_SECONDS if left is None else min(left, POLL_SECONDS)):
                return True

    def close(self) -> None:
        """Stop every worker (a running task's caller gets an error); the pool takes no more tasks. Idle workers
        leave when their pipe closes; busy ones are killed at once (their tasks' answers are not wanted)."""
        with self._lock:
            self._closed = True
            workers = list(self._all)
            idle = set(self._idle)
            self._all.clear()
            self._idle.clear()
        for worker in workers:
            if worker in idle:
                worker.stop()
            else:
                worker.kill()
