"""OpenTelemetry traces, off unless an OTLP endpoint is configured.

On (`OTEL_EXPORTER_OTLP_ENDPOINT`, or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or the `otlp_endpoint` setting
of `modsnet serve`), every RPC gets a server span in the service that answers it and a client span in the
service that calls it, the W3C trace context travelling in gRPC metadata (`traceparent`), and a search gets
a span per stage (`modsnet.runtime.observe`): one search is one trace across query, recommender, knowledge
and storage. Off, nothing of OpenTelemetry is imported (its packages take about 0.2 s to import, the OTLP
exporter about a second) and every function here is a no-op.

Each service name gets its own tracer provider (resource `service.name` = `modsnet-query`, ...), so the four
services of the embedded process still show as four services; they share one span processor.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

log = logging.getLogger(__name__)

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
SERVICE_PREFIX = "modsnet-"
# The codes that make a server span an error (OpenTelemetry's gRPC conventions): the others are the caller's
# doing (NOT_FOUND, INVALID_ARGUMENT...) and show on its client span.
SERVER_ERRORS = frozenset({"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"})

_processor: Any = None  # the span processor every provider shares; None while tracing is off
_providers: dict[str, Any] = {}  # service -> TracerProvider
_propagator: Any = None


def enabled() -> bool:
    return _processor is not None


def endpoint_from_env() -> str | None:
    for name in ENDPOINT_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def configure(endpoint: str | None = None) -> bool:
    """Turn tracing on with an OTLP/gRPC exporter when `endpoint` (else the environment) names one.

    Returns whether tracing is on. The exporter reads the other standard OTEL_EXPORTER_OTLP_* variables
    (headers, certificate, insecure, timeout) itself.
    """
    endpoint = endpoint or endpoint_from_env()
    if not endpoint:
        return False
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    enable(OTLPSpanExporter(endpoint=endpoint), batch=True)
    log.info("tracing on: spans go to %s over OTLP/gRPC", endpoint)
    return True


def enable(exporter: Any, *, batch: bool = True) -> None:
    """Turn tracing on with `exporter` (an OpenTelemetry SpanExporter: OTLP, or in-memory for tests).

    `batch=False` exports each span as it ends (tests); batching is what a service wants."""
    global _processor, _propagator
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    disable()
    _propagator = TraceContextTextMapPropagator()
    _processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)


def disable() -> None:
    """Flush what was recorded and turn tracing off."""
    global _processor
    processor, _processor = _processor, None
    _providers.clear()
    if processor is not None:
        processor.shutdown()


def _tracer(service: str) -> Any:
    provider = _providers.get(service)
    if provider is None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_PREFIX + (service or "client")}))
        provider.add_span_processor(_processor)
        _providers[service] = provider
    return provider.get_tracer("modsnet")


class SpanHandle:
    """What a caller may say about a span while it is open (nothing, when tracing is off)."""

    def __init__(self, span: Any = None):
        self.span = span

    def set(self, key: str, value: Any) -> None:
        if self.span is not None:
            self.span.set_attribute(key, value)

    def set_code(self, code: str) -> None:
        """The call's gRPC status code: an error status on the span unless OK."""
        if self.span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        self.span.set_attribute("rpc.grpc.status_code", code)
        if code in SERVER_ERRORS:
            self.span.set_status(Status(StatusCode.ERROR, code))


@contextlib.contextmanager
def server_span(service: str, method: str, metadata: Mapping[str, str], **attributes: Any) -> Iterator[SpanHandle]:
    """The span of one RPC in the service answering it, child of the caller's span found in `metadata`."""
    if _processor is None:
        yield SpanHandle()
        return
    from opentelemetry.trace import SpanKind

    parent = _propagator.extract(dict(metadata))
    with _tracer(service).start_as_current_span(
        f"{service}/{method}",
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method, **attributes},
        record_exception=False,  # the status code says what went wrong; tracebacks stay in the service log
        set_status_on_exception=False,
    ) as span:
        yield SpanHandle(span)


@contextlib.contextmanager
def client_span(caller: str, target: str, method: str) -> Iterator[list[tuple[str, str]]]:
    """The span of one outgoing call; yields the metadata that carries its context to `target`."""
    if _processor is None:
        yield []
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    with _tracer(caller).start_as_current_span(
        f"{target}/{method}",
        kind=SpanKind.CLIENT,
        attributes={"rpc.system": "grpc", "rpc.service": target, "rpc.method": method},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        carrier: dict[str, str] = {}
        _propagator.inject(carrier)
        try:
            yield list(carrier.items())
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


class StageSpan:
    """A span opened now and closed later (a search's stages follow one another without nesting blocks)."""

    def __init__(self, service: str, name: str):
        from opentelemetry import context, trace

        self.span = _tracer(service).start_span(name, attributes={"modsnet.stage": name})
        self._token = context.attach(trace.set_span_in_context(self.span))

    def end(self, error: str | None = None) -> None:
        from opentelemetry import context
        from opentelemetry.trace import Status, StatusCode

        context.detach(self._token)
        if error:
            self.span.set_status(Status(StatusCode.ERROR, error))
        self.span.end()


def stage_span(service: str, name: str) -> StageSpan | None:
    return StageSpan(service, name) if _processor is not None else None
