"""Server bootstrap shared by the four services.

`ServiceServer` is built by each service's factory and not started there, so tests can start it on
port 0 and stop it. It wires what every service has: the error-mapping and metrics interceptor, the
standard health service fed by a periodic backend check, reflection for an explicit list of services,
message size limits, and a SIGTERM path (NOT_SERVING, then `stop(grace)`).

Stopping closes the backends only after the handlers still running have returned (bounded by `drain`): gRPC
cancels the calls left when the grace runs out, but their handler threads run on, and one still reading a
closed SQLite store failed with an internal error. A handler that fails while its server stops is answered
UNAVAILABLE (retry elsewhere), never INTERNAL.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from modsnet.runtime.auth import CallGuard, Security
from modsnet.runtime.config import CHECK_INTERVAL_SECONDS, CHECK_TIMEOUT_SECONDS, CommonConfig
from modsnet.runtime.errors import RETRY_AFTER_KEY, Busy, ModsnetError

from . import observe
from .deadline import reset_deadline, set_deadline
from .metrics import GRPC_REQUESTS, GRPC_SECONDS, GRPC_WORKERS, SERVICE_SERVING

log = logging.getLogger(__name__)

# Health service names besides "" and the services': readiness (= "", what a load balancer asks) and
# liveness (SERVING while the process runs, whatever its dependencies: what a restart decision asks).
READINESS = "readiness"
LIVENESS = "liveness"
# A check still unanswered when a new failure is confirmed gets this share of check_timeout more (see ServiceServer).
CONFIRM_SHARE = 0.75
# Trailing metadata on every error a service itself answers with: its name.
ORIGIN_KEY = "modsnet-origin"

MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # chunks are 1 MiB; snapshots are streamed in pieces below this
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
    # Load spreading (k8s/README.md): every connection is closed (GOAWAY) after 5 minutes, calls in flight get
    # 10 more to finish, so clients reconnect and re-resolve: new pods get traffic, a LoadBalancer rebalances.
    ("grpc.max_connection_age_ms", 300_000),
    ("grpc.max_connection_age_grace_ms", 600_000),
]


_frozen = False  # whether this process has moved what it had built at its first start out of the collector's way


def freeze_startup_objects() -> None:
    """Once per process, when it has started serving (a service's first start; the embedded cluster's, once
    all four run): everything alive then (modules, their libraries' objects) goes to the collector's permanent
    generation. Why: a full collection scans every tracked object, and this
    process's ~400k (pandas, torch, scikit-learn) made each one stop every thread for ~0.3 s, several times a
    minute under load (feedback p99 followed). Only once and without a collection first: what is garbage at
    that moment stays for good, a one-time cost, where freezing at every start (tests start hundreds of
    servers) would keep collecting garbage out of reach."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.freeze()


# A thread back from I/O (a Redis reply, an answer from another service) waits for the GIL until the thread holding
# it is asked to let go, by default after 5 ms. A feedback makes some twenty such returns across the query and
# knowledge processes, each possibly behind a snapshot, a parse or a refresh holding the GIL: 1 ms bounds that wait
# closer to the call's own work, at the cost of more switches between CPU-bound threads.
GIL_SWITCH_SECONDS = 0.001


# How long `stop` waits, after the grace, for handlers still running before it closes the backends under them.
DRAIN_SECONDS = 10.0


class InFlight:
    """The handlers running now, so that a stopping server closes its backends after they return."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    @property
    def count(self) -> int:
        return self._count

    @contextlib.contextmanager
    def handler(self) -> Iterator[None]:
        with self._changed:
            self._count += 1
        try:
            yield
        finally:
            with self._changed:
                self._count -= 1
                if self._count == 0:
                    self._changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for no handler to be running; returns whether none is."""
        with self._changed:
            return self._changed.wait_for(lambda: self._count == 0, timeout)


class ErrorInterceptor(grpc.ServerInterceptor):
    """Maps domain errors to status codes, hides unexpected ones, counts and times every call.

    It also publishes the call's deadline to `modsnet.runtime.deadline`, so the handler's outgoing calls
    are bounded by what the caller has left, and lets `guard` authenticate and authorize the call first
    (its refusals are domain errors, counted and mapped like the others). It counts the handlers running
    in `in_flight`; once `stopping` is set, an unexpected error is the shutdown's doing (a backend closed, a
    worker pool shut), so it is answered UNAVAILABLE.
    """

    def __init__(
        self,
        service: str,
        guard: CallGuard | None = None,
        *,
        in_flight: InFlight | None = None,
        stopping: threading.Event | None = None,
    ):
        self.service = service
        self.guard = guard or CallGuard(None)
        self.in_flight = in_flight or InFlight()
        self.stopping = stopping or threading.Event()

    def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        full_method = handler_call_details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap(handler.unary_unary, full_method),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap(handler.stream_unary, full_method),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, full_method),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._wrap_stream(handler.stream_stream, full_method),
            handler.request_deserializer,
            handler.response_serializer,
        )

    def _fail(self, context: grpc.ServicerContext, exc: BaseException, method: str) -> str:
        """Abort the call with the status `exc` deserves; returns the code name for metrics."""
        if isinstance(exc, ModsnetError):
            code = exc.code
            message = exc.message
        elif self.stopping.is_set():
            code = "UNAVAILABLE"
            log.warning("%s.%s stopped by the shutdown: %s: %s", self.service, method, type(exc).__name__, exc)
            message = f"{self.service} is shutting down; retry with another replica or after its restart"
        else:
            code = "INTERNAL"
            incident = uuid.uuid4().hex[:12]
            log.exception("%s.%s failed (incident %s)", self.service, method, incident)
            message = f"internal error in {self.service}.{method} (incident {incident}; see the service log)"
        GRPC_REQUESTS.labels(self.service, method, code).inc()
        # Says that this service answered (with an error), so a caller names it rather than blaming the link.
        trailers = [(ORIGIN_KEY, self.service)]
        if isinstance(exc, Busy):
            trailers.append((RETRY_AFTER_KEY, str(round(exc.retry_after * 1000))))
        context.set_trailing_metadata(tuple(trailers))
        context.abort(getattr(grpc.StatusCode, code), message)
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover

    def _wrap(self, behavior: Callable[..., Any], full_method: str) -> Callable[..., Any]:
        method = full_method.rsplit("/", 1)[-1]

        @functools.wraps(behavior)
        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            start = time.perf_counter()
            token = set_deadline(context.time_remaining())
            with self.in_flight.handler(), observe.server_call(self.service, full_method, context) as call:
                try:
                    with self.guard.call(full_method, context):
                        response = behavior(request, context)
                except Exception as exc:
                    if _already_aborted(context):
                        raise
                    call.code = _code_of(exc, self.stopping)
                    self._fail(context, exc, method)
                finally:
                    reset_deadline(token)
                    GRPC_SECONDS.labels(self.service, method).observe(time.perf_counter() - start)
            GRPC_REQUESTS.labels(self.service, method, "OK").inc()
            return response

        return wrapped

    def _wrap_stream(self, behavior: Callable[..., Iterator[Any]], full_method: str) -> Callable[..., Any]:
        method = full_method.rsplit("/", 1)[-1]

        @functools.wraps(behavior)
        def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            start = time.perf_counter()
            token = set_deadline(context.time_remaining())
            with self.in_flight.handler(), observe.server_call(self.service, full_method, context) as call:
                try:
                    with self.guard.call(full_method, context):
                        yield from behavior(request, context)
                except Exception as exc:
                    if _already_aborted(context):
                        raise
                    call.code = _code_of(exc, self.stopping)
                    self._fail(context, exc, method)
                finally:
                    reset_deadline(token)
                    GRPC_SECONDS.labels(self.service, method).observe(time.perf_counter() - start)
            GRPC_REQUESTS.labels(self.service, method, "OK").inc()

        return wrapped


def _code_of(exc: BaseException, stopping: threading.Event) -> str:
    if isinstance(exc, ModsnetError):
        return exc.code
    return "UNAVAILABLE" if stopping.is_set() else "INTERNAL"


def _run_into(check: Callable[[], None], future: futures.Future[None]) -> None:
    try:
        check()
    except BaseException as exc:  # any failure of a check means not ready, whatever its type
        future.set_exception(exc)
    else:
        future.set_result(None)


def _already_aborted(context: grpc.ServicerContext) -> bool:
    try:
        return context.code() not in (None, grpc.StatusCode.OK)
    except AttributeError:  # pragma: no cover - very old grpc
        return False


class Dependency(Protocol):
    """A service this one needs to answer requests (a `ServiceClient`): checked through its health service."""

    name: str

    def check_ready(self, timeout: float) -> None: ...


class Companion(Protocol):
    port: int  # bound when built

    def start(self) -> int: ...

    def stop(self) -> None: ...


class ServiceServer:
    """A built, not yet started, gRPC server for one service (or several, in the embedded process).

    Health tells readiness the truth: each service is SERVING only while its own backend check passes and
    every dependency it names answers its health check as SERVING, each check bounded by `check_timeout`
    and re-run every `check_interval` seconds in the background; a new failure is confirmed by a second
    round at once. So a dead dependency turns this server NOT_SERVING within about `check_interval` seconds,
    a frozen one within `check_interval + 1.75 * check_timeout` (4.6 s with the defaults), and back when it
    recovers. Liveness (the "liveness" name) stays SERVING until shutdown.
    """

    def __init__(
        self,
        name: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        grace: float = 30.0,
        max_workers: int = 16,
        check_interval: float = CHECK_INTERVAL_SECONDS,
        check_timeout: float = CHECK_TIMEOUT_SECONDS,
        security: Security | None = None,
        health_port: int = 0,
        drain: float = DRAIN_SECONDS,
    ):
        self.name = name
        self.grace = grace
        self.drain = drain
        self.freeze_on_start = True  # see freeze_startup_objects; a process hosting several servers freezes itself
        self.security = security or Security()
        GRPC_WORKERS.labels(name).set(max_workers)
        self._stopping = threading.Event()
        self.in_flight = InFlight()
        interceptor = ErrorInterceptor(
            name, CallGuard(self.security.table), in_flight=self.in_flight, stopping=self._stopping
        )
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"{name}-rpc"),
            interceptors=[interceptor],
            options=SERVER_OPTIONS,
        )
        self._address = f"{host}:{port}"
        self.port: int = 0
        self._health = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        # Kubernetes' gRPC probes speak no TLS: with TLS on, they get the same health on a plaintext port.
        self._health_server: grpc.Server | None = None
        if health_port:
            self._health_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=SERVER_OPTIONS)
            health_pb2_grpc.add_HealthServicer_to_server(self._health, self._health_server)
        self._health_address = f"{host}:{health_port}"
        self._service_names: list[str] = []
        # Per service: (what is checked, the check) pairs; a check raises when that part is unusable.
        self._checks: dict[str, list[tuple[str, Callable[[], None]]]] = {}
        self._running: dict[str, futures.Future[None]] = {}  # checks still running from an earlier round
        self._closers: list[Callable[[], None]] = []
        # Other faces of the same service in the same process (the query service's HTTP port): started after
        # the gRPC server, stopped before it.
        self.companions: dict[str, Companion] = {}
        # Each service's logic object by service name, for a process that hosts it (the embedded cluster's
        # daemon reports what its recommender is training).
        self.cores: dict[str, Any] = {}
        self._check_interval = check_interval
        self._check_timeout = check_timeout
        self._monitor: threading.Thread | None = None
        self._checking = threading.Lock()  # one round at a time: the monitor's and check_now's
        self.failures: dict[str, str] = {}  # what failed its last check -> why (empty when ready)

    @classmethod
    def from_config(
        cls, name: str, config: CommonConfig, security: Security, *, max_workers: int = 16
    ) -> ServiceServer:
        """The server of a service's settings (every service's share of them is `CommonConfig`)."""
        return cls(
            name,
            max_workers=max_workers,
            host=config.host,
            port=config.port,
            grace=config.grace,
            security=security,
            health_port=config.health_port,
            check_interval=config.check_interval,
            check_timeout=config.check_timeout,
        )

    @property
    def server(self) -> grpc.Server:
        return self._server

    def add_service(
        self,
        full_name: str,
        register: Callable[[grpc.Server], None],
        check: Callable[[], None] | None = None,
        close: Callable[[], None] | None = None,
        depends_on: Sequence[Dependency] = (),
        core: Any = None,
    ) -> None:
        """Register a servicer. `check` raises when its own backend is unusable; `depends_on` are the
        services a request needs. Either failing turns this service (and "") NOT_SERVING."""
        register(self._server)
        if core is not None:
            self.cores[full_name] = core
        self._service_names.append(full_name)
        checks = self._checks.setdefault(full_name, [])
        if check is not None:
            checks.append((f"{full_name.rsplit('.', 1)[-1].lower()} backend", check))  # "knowledge backend"
        timeout = self._check_timeout
        for dependency in depends_on:
            checks.append((f"{dependency.name} service", functools.partial(dependency.check_ready, timeout)))
        if close is not None:
            self._closers.append(close)

    def add_companion(self, name: str, companion: Companion) -> None:
        self.companions[name] = companion

    def start(self) -> int:
        """Bind, enable reflection, start serving and the health monitor. Returns the bound port."""
        names = [*self._service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
        reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], self._server)
        credentials = self.security.server_credentials()
        if credentials is None:
            self.port = self._server.add_insecure_port(self._address)
        else:
            self.port = self._server.add_secure_port(self._address, credentials)
        if self.port == 0:
            raise OSError(f"{self.name}: could not bind {self._address}")
        self._server.start()
        sys.setswitchinterval(GIL_SWITCH_SECONDS)  # the process serves now (every server of an embedded cluster too)
        if self.freeze_on_start:
            freeze_startup_objects()
        if self._health_server is not None:
            if not self._health_server.add_insecure_port(self._health_address):
                raise OSError(f"{self.name}: could not bind the health port {self._health_address}")
            self._health_server.start()
        self._health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        self._update_health()
        self._monitor = threading.Thread(target=self._watch, name=f"{self.name}-health", daemon=True)
        self._monitor.start()
        for companion in self.companions.values():
            companion.start()
        log.info("%s serving on port %d", self.name, self.port)
        return self.port

    def _run_checks(self, wait: float | None = None) -> dict[str, str]:
        """Run every check at once, each in its own thread, waiting at most `wait` (default `check_timeout`).

        Returns what failed -> why. A check still running from an earlier round is not started again
        (a frozen dependency must not pile up threads); it counts as failed until it returns.
        """
        started: dict[str, futures.Future[None]] = {}
        for checks in self._checks.values():
            for what, check in checks:
                if what in started:
                    continue
                running = self._running.get(what)
                if running is not None and not running.done():
                    started[what] = running
                    continue
                future: futures.Future[None] = futures.Future()
                threading.Thread(target=_run_into, args=(check, future), name=f"{self.name}-check", daemon=True).start()
                self._running[what] = started[what] = future
        futures.wait(started.values(), timeout=(self._check_timeout if wait is None else wait) + 0.1)
        failures = {}
        for what, future in started.items():
            if not future.done():
                failures[what] = f"{what} did not answer within {self._check_timeout:.1f} s"
            elif future.exception() is not None:
                failures[what] = str(future.exception()) or type(future.exception()).__name__
        return failures

    def _update_health(self) -> bool:
        with self._checking:
            failures = self._run_checks()
            if failures.keys() - self.failures.keys():
                # A newly failing check is confirmed by a second round at once, which also gives a check still
                # running CONFIRM_SHARE x check_timeout more: one slow answer on a starved machine does not flip
                # readiness, and a frozen dependency still shows within interval + 1.75 x timeout (4.6 s).
                failures = self._run_checks(CONFIRM_SHARE * self._check_timeout)
            return self._publish(failures)

    def _publish(self, failures: dict[str, str]) -> bool:
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        healthy = True
        for name in self._service_names:
            ready = not any(what in failures for what, _ in self._checks[name])
            healthy = healthy and ready
            if not self._stopping.is_set():
                self._health.set(name, serving if ready else not_serving)
        for what, why in failures.items():
            # Log changes, not every round of a long outage; nor a check that failed because this server is
            # closing its own clients (a round under way when `stop` began).
            if self.failures.get(what) != why and not self._stopping.is_set():
                log.warning("%s not ready: %s", self.name, why)
        for what in self.failures.keys() - failures.keys():
            log.info("%s: %s is back", self.name, what)
        self.failures = failures
        if not self._stopping.is_set():
            for name in ("", READINESS):
                self._health.set(name, serving if healthy else not_serving)
            SERVICE_SERVING.labels(self.name).set(1 if healthy else 0)
        return healthy

    def _watch(self) -> None:
        while not self._stopping.wait(self._check_interval):
            self._update_health()

    def check_now(self) -> bool:
        """Run the backend and dependency checks now and publish the result; returns whether ready."""
        return self._update_health()

    def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING first (load balancers stop sending), then let in-flight calls finish, then close the
        backends once no handler runs (see the module)."""
        self._stopping.set()
        self._health.enter_graceful_shutdown()
        for companion in self.companions.values():
            companion.stop()
        SERVICE_SERVING.labels(self.name).set(0)
        self._server.stop(self.grace if grace is None else grace).wait()
        if self._health_server is not None:
            self._health_server.stop(0)
        if not self.in_flight.wait_idle(self.drain):
            log.warning(
                "%s: %d handlers still running %.1f s after the grace; closing the backends under them",
                self.name,
                self.in_flight.count,
                self.drain,
            )
        for close in self._closers:
            try:
                close()
            except Exception:
                log.exception("%s: error while closing a backend", self.name)

    def wait(self) -> None:
        self._server.wait_for_termination()

    def run_until_signal(self) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully (used by `modsnet serve`)."""
        done = threading.Event()

        def _on_signal(signum: int, _frame: Any) -> None:
            log.info("%s: signal %d, shutting down (grace %.0f s)", self.name, signum, self.grace)
            done.set()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        done.wait()
        self.stop()
