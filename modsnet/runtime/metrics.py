"""Prometheus metrics every service shares: gRPC requests by method and code, and their latency.

Each service's own `metrics.py` adds its domain metrics; all names follow `modsnet_<thing>_total` and
`modsnet_<thing>_seconds` with explicit buckets.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

GRPC_REQUESTS = Counter(
    "modsnet_grpc_requests_total",
    "gRPC requests handled, by service, method and status code.",
    ["service", "method", "code"],
)
GRPC_SECONDS = Histogram(
    "modsnet_grpc_request_seconds",
    "Time to handle a gRPC request, by service and method.",
    ["service", "method"],
    buckets=LATENCY_BUCKETS,
)
GRPC_IN_FLIGHT = Gauge(
    "modsnet_grpc_requests_in_flight",
    "gRPC requests being handled now, by service and method (saturation: compare with modsnet_grpc_workers).",
    ["service", "method"],
)
GRPC_WORKERS = Gauge("modsnet_grpc_workers", "Threads a service has to handle gRPC requests.", ["service"])
SERVICE_SERVING = Gauge(
    "modsnet_service_serving",
    "1 while the service's readiness check passes (its backend and the services it needs answer), else 0.",
    ["service"],
)
CLIENT_REQUESTS = Counter(
    "modsnet_grpc_client_requests_total",
    "Outgoing gRPC calls to other ModsNet services, by target service, method and status code.",
    ["target", "method", "code"],
)


def serve_metrics(port: int, host: str = "127.0.0.1") -> int | None:
    """Serve /metrics over HTTP on `port` (0 = off). Returns the port, or None when off."""
    if port <= 0:
        return None
    server, _thread = start_http_server(port, addr=host)
    bound = int(server.server_address[1])
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return bound
