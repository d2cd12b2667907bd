"""Outgoing calls between services: channels with size limits and retries, deadlines, error mapping.

Every call has a deadline (its default cut down to the caller's remaining time), reads retry on
UNAVAILABLE through gRPC's service-config retry policy, and a failed call comes back as the domain error
of its status, with a message naming the service and address that failed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modsnet.runtime.auth import ClientCredentials
from modsnet.runtime.errors import (
    RETRY_AFTER_KEY,
    Busy,
    DeadlineExceeded,
    ModsnetError,
    Unavailable,
    Unreachable,
    from_code,
)

from .deadline import timeout_for
from .metrics import CLIENT_REQUESTS
from .observe import outgoing
from .server import MAX_MESSAGE_BYTES, ORIGIN_KEY

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0


def channel_options(service: str, retry_methods: Sequence[str]) -> list[tuple[str, Any]]:
    """Channel options: message size limits and a retry policy for idempotent `retry_methods`."""
    config = {
        # One subchannel per address the name resolves to, calls spread over them: behind a headless Service
        # (k8s/base) that is one per pod; a plain address resolves to one, where this is pick_first.
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": service, "method": m} for m in retry_methods],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(config)),
        # A restarted service is found again within about 2 s (gRPC's default backoff grows to 120 s).
        ("grpc.initial_reconnect_backoff_ms", 500),
        ("grpc.max_reconnect_backoff_ms", 2000),
        # Each channel its own connections: from the process-wide pool a new channel to a service that has just
        # restarted inherits an older channel's reconnect backoff and fails fast with its last "connection
        # refused" through all its retries (a new channel just after a restart: 2 of 10 failed; with its own
        # pool 0 of 10; `make up` after its supervisor was killed, 2026-12-07). Clients are made once per process
        # or component, so nothing is lost by not sharing.
        ("grpc.use_local_subchannel_pool", 1),
    ]


def to_domain_error(exc: grpc.RpcError, what: str, seconds: float | None = None) -> ModsnetError:
    """The domain error for a failed call to `what` ("knowledge service at host:port"), so it propagates
    with its meaning to our own caller.

    An error the service answered itself (its interceptor marks it) keeps its message, which names what
    failed further down; a call that got no answer names `what`, and how long it waited (`seconds`).
    """
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(code)
    if _answered(exc):
        retry_after = _trailer(exc, RETRY_AFTER_KEY)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and retry_after is not None and retry_after.isdigit():
            return Busy(details, retry_after=int(retry_after) / 1000)
        return from_code(code.name, details)
    service, _, address = what.partition(" at ")
    if code == grpc.StatusCode.UNAVAILABLE:
        return Unreachable(f"{service} is unavailable ({address}): {details}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        waited = f" within {seconds:.1f} s" if seconds is not None else " in time"
        return DeadlineExceeded(f"{service} did not answer{waited} ({address})")
    if code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED):
        return Unavailable(f"{service} failed ({address}): {details}")
    return from_code(code.name, details)


def _answered(exc: grpc.RpcError) -> bool:
    """Whether the service itself answered with this error (rather than the link or the deadline)."""
    return _trailer(exc, ORIGIN_KEY) is not None


def _trailer(exc: grpc.RpcError, key: str) -> str | None:
    if not isinstance(exc, grpc.Call):
        return None
    for name, value in exc.trailing_metadata() or ():
        if name == key:
            return str(value)
    return None


class ServiceClient:
    """A channel to one service plus helpers that call it with deadlines and error mapping."""

    def __init__(
        self,
        name: str,
        target: str,
        stub_class: Callable[[grpc.Channel], Any],
        *,
        full_service: str,
        retry_methods: Sequence[str] = (),
        timeout: float = DEFAULT_TIMEOUT,
        credentials: ClientCredentials | None = None,
    ):
        self.name = name
        self.target = target
        self.full_service = full_service
        self.timeout = timeout
        self.credentials = credentials or ClientCredentials()
        options = channel_options(full_service, retry_methods)
        secure = self.credentials.channel_credentials()
        self.channel = (
            grpc.insecure_channel(target, options=options)
            if secure is None
            else grpc.secure_channel(target, secure, options=options)
        )
        self.stub = stub_class(self.channel)

    @property
    def what(self) -> str:
        return f"{self.name} service at {self.target}"

    def call(self, method: str, request: Any, *, timeout: float | None = None) -> Any:
        """Unary or client-streaming call (`request` may be an iterator of messages)."""
        rpc = getattr(self.stub, method)
        seconds = timeout_for(timeout or self.timeout, self.what)
        # The query id and trace context travel with the credentials' metadata (modsnet.runtime.observe).
        with outgoing(self.name, method, self.credentials.metadata()) as metadata:
            try:
                response = rpc(request, timeout=seconds, metadata=metadata)
            except grpc.RpcError as exc:
                CLIENT_REQUESTS.labels(self.name, method, _code_name(exc)).inc()
                raise to_domain_error(exc, self.what, seconds) from None
        CLIENT_REQUESTS.labels(self.name, method, "OK").inc()
        return response

    def stream(self, method: str, request: Any, *, timeout: float | None = None) -> Iterator[Any]:
        """Server-streaming call; errors surface while iterating, as domain errors."""
        rpc = getattr(self.stub, method)
        seconds = timeout_for(timeout or self.timeout, self.what)
        with outgoing(self.name, method, self.credentials.metadata()) as metadata:
            try:
                yield from rpc(request, timeout=seconds, metadata=metadata)
            except grpc.RpcError as exc:
                CLIENT_REQUESTS.labels(self.name, method, _code_name(exc)).inc()
                raise to_domain_error(exc, self.what, seconds) from None
        CLIENT_REQUESTS.labels(self.name, method, "OK").inc()

    def check_ready(self, timeout: float) -> None:
        """Raise `Unavailable` naming this service unless its health service says SERVING within `timeout`."""
        stub = health_pb2_grpc.HealthStub(self.channel)
        try:
            status = stub.Check(health_pb2.HealthCheckRequest(service=self.full_service), timeout=timeout).status
        except grpc.RpcError as exc:
            raise Unavailable(to_domain_error(exc, self.what, timeout).message) from None
        if status != health_pb2.HealthCheckResponse.SERVING:
            name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
            raise Unavailable(f"{self.name} service is {name} ({self.target})")

    def close(self) -> None:
        self.channel.close()


def _code_name(exc: grpc.RpcError) -> str:
    return exc.code().name if isinstance(exc, grpc.Call) else "UNKNOWN"


def chunked(head: T, chunks: Iterable[bytes], make: Callable[[bytes], T]) -> Iterator[T]:
    """A client-streaming request: the header message, then one message per chunk."""
    yield head
    for chunk in chunks:
        yield make(chunk)
