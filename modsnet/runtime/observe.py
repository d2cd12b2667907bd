"""What every call records about itself: its query id, an access log line, its span, in-flight count; and
the stage timings of a search.

`server_call` wraps each RPC in the server interceptor (`modsnet.runtime.server`); `outgoing` wraps each call
one service makes to another (`modsnet.runtime.channels`) and gives the metadata that carries the query id and
the trace context on. `stopwatch` and `stage` time the stages of a search in the query core (no grpc here:
cores may import this module): each stage is timed, becomes a span when tracing is on, and the list of
(stage, layer, seconds) goes back to the client in the answer (`modsnet search --verbose` prints it).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from . import logs, tracing
from .metrics import GRPC_IN_FLIGHT

access = logging.getLogger("modsnet.access")

# Calls made by machinery, many times a second: logged at DEBUG, not INFO.
_QUIET_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection")


@dataclass
class Call:
    """One RPC as the server sees it; the interceptor sets `code` when it maps an error."""

    service: str
    method: str
    query_id: str
    code: str = "OK"
    span: tracing.SpanHandle = field(default_factory=tracing.SpanHandle)


def _metadata(context: Any) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


@contextlib.contextmanager
def server_call(service: str, full_method: str, context: Any) -> Iterator[Call]:
    """Bind the call's query id (the caller's, else a new request id), open its span, count it in flight;
    at the end write its access line with code and duration."""
    method = full_method.rsplit("/", 1)[-1]
    metadata = _metadata(context)
    query_id = logs.accepted_query_id(metadata.get(logs.QUERY_ID_HEADER)) or logs.new_request_id()
    tokens = logs.enter_call(service, method, query_id)
    quiet = full_method.lstrip("/").startswith(_QUIET_SERVICES)
    call = Call(service, method, query_id)
    in_flight = GRPC_IN_FLIGHT.labels(service, method)
    in_flight.inc()
    start = time.perf_counter()
    try:
        with tracing.server_span(service, method, metadata, **{"modsnet.query_id": query_id}) as span:
            call.span = span
            try:
                yield call
            except GeneratorExit:  # a streaming caller went away
                call.code = "CANCELLED"
                raise
            except BaseException:
                if call.code == "OK":
                    code = context.code() if hasattr(context, "code") else None
                    call.code = getattr(code, "name", None) or "UNKNOWN"
                raise
            finally:
                span.set_code(call.code)
                span.set("modsnet.query_id", logs.current_query_id() or query_id)  # a search binds its own
    finally:
        in_flight.dec()
        access.log(
            logging.DEBUG if quiet else logging.INFO,
            "%s %s",
            method,
            call.code,
            extra={"code": call.code, "duration_ms": round((time.perf_counter() - start) * 1000, 3)},
        )
        logs.exit_call(tokens)


@contextlib.contextmanager
def outgoing(target: str, method: str, metadata: list[tuple[str, str]]) -> Iterator[list[tuple[str, str]]]:
    """An outgoing call: `metadata` plus the query id and (tracing on) the trace context of its client span."""
    query_id = logs.current_query_id()
    extra = [(logs.QUERY_ID_HEADER, query_id)] if query_id else []
    caller = logs.current_service()
    with tracing.client_span(caller, target, method) as trace_metadata:
        yield [*metadata, *extra, *trace_metadata]


# ------------------------------------------------------------------------------------------------ stages


@dataclass(frozen=True)
class StageTiming:
    stage: str
    layer: str  # the service that did the work (query, storage, knowledge, recommender)
    seconds: float


# The layer each stage of a search runs in (the query core calls the others for the rest).
SEARCH_STAGES = {
    "wait": "query",  # for an upload turn when the service is busy
    "upload": "query",  # receiving the file
    "parse": "query",
    "features": "query",
    "library": "knowledge",  # which library answers
    "store": "storage",
    "lookup": "knowledge",  # is the file a known dataset?
    "select": "recommender",  # the probe-selector picks models (the first search of a library fits its estimator)
    "probes": "query",  # fetching the picked models and measuring them on the upload
    "recommend": "recommender",
    "log": "knowledge",
}


class Stopwatch:
    """Times stages that follow one another: `stage(name)` ends the running one and starts the next."""

    def __init__(self, service: str, layers: dict[str, str]):
        self.service = service
        self.layers = layers
        self.laps: list[StageTiming] = []
        self._current: tuple[str, float, tracing.StageSpan | None] | None = None

    def stage(self, name: str) -> None:
        self.stop()
        self._current = (name, time.perf_counter(), tracing.stage_span(self.service, name))

    def split(self, seconds: float, name: str) -> None:
        """The running stage took its first `seconds`; the rest of the time so far was stage `name`, which runs
        on (work done elsewhere in one go, such as a worker process that parsed and then described an upload)."""
        if self._current is None:
            self.stage(name)
            return
        current, started, span = self._current
        now = time.perf_counter()
        first = min(max(seconds, 0.0), now - started)
        self.laps.append(StageTiming(current, self.layers.get(current, self.service), first))
        if span is not None:
            span.end(None)
        self._current = (name, started + first, tracing.stage_span(self.service, name))

    def stop(self, error: str | None = None) -> None:
        if self._current is None:
            return
        name, started, span = self._current
        self._current = None
        self.laps.append(StageTiming(name, self.layers.get(name, self.service), time.perf_counter() - started))
        if span is not None:
            span.end(error)


_stopwatch: contextvars.ContextVar[Stopwatch | None] = contextvars.ContextVar("modsnet_stopwatch", default=None)


@contextlib.contextmanager
def stopwatch(service: str, layers: dict[str, str], first: str | None = None) -> Iterator[Stopwatch]:
    """Time the stages of this block (`stage(...)` calls within it); starts with stage `first` if given."""
    watch = Stopwatch(service, layers)
    token = _stopwatch.set(watch)
    if first:
        watch.stage(first)
    try:
        yield watch
    except BaseException as exc:
        watch.stop(type(exc).__name__)
        raise
    finally:
        watch.stop()
        _stopwatch.reset(token)


def split_stage(seconds: float, name: str) -> None:
    """`Stopwatch.split` on the running stopwatch; nothing outside one."""
    watch = _stopwatch.get()
    if watch is not None:
        watch.split(seconds, name)


def stage(name: str) -> None:
    """Start stage `name` of the running stopwatch (ending the one before); nothing outside one."""
    watch = _stopwatch.get()
    if watch is not None:
        watch.stage(name)
