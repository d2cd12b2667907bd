"""Prometheus metrics every service shares: gRPC requests by method and code, and their latency.

Each service's own `metrics.py` adds its domain metrics; all names follow `modsnet_<thing>_total` and
`modsnet_<thing>_seconds` with explicit buckets.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

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


Sample = tuple[str, tuple[str, ...], float]  # (family name, label values, value)


class ScrapeTimeGauges:
    """Gauges read at scrape time from the live parts of this process (a store's graph versions, the served
    estimators), so they are never stale and cost nothing between scrapes.

    `families` names each gauge: name -> (help, label names). A service's factory calls `watch(read)` with a
    function that returns the current samples and calls the returned function when it stops (several
    services or test clusters may live in one process: each adds its own samples). A reader that fails is
    left out of that scrape; the failure is logged once per reader.
    """

    def __init__(self, families: dict[str, tuple[str, tuple[str, ...]]]):
        self.families = families
        self._readers: dict[int, Callable[[], Iterable[Sample]]] = {}
        self._failing: set[int] = set()
        self._lock = threading.Lock()
        REGISTRY.register(self)

    def watch(self, read: Callable[[], Iterable[Sample]]) -> Callable[[], None]:
        key = id(read)
        with self._lock:
            self._readers[key] = read

        def unwatch() -> None:
            with self._lock:
                self._readers.pop(key, None)

        return unwatch

    def describe(self) -> list[Any]:
        return []  # samples come and go with the parts watched: no fixed description to check at register

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauges = {name: GaugeMetricFamily(name, text, labels=labels) for name, (text, labels) in self.families.items()}
        with self._lock:
            readers = list(self._readers.items())
        for key, read in readers:
            try:
                samples = list(read())
            except Exception as exc:  # a backend down at scrape time: its gauges are missing, `up` is not
                if key not in self._failing:
                    log.warning("metrics: a reader failed (%s): its gauges are left out until it works", exc)
                self._failing.add(key)
                continue
            self._failing.discard(key)
            for name, labels, value in samples:
                gauges[name].add_metric(list(labels), value)
        yield from gauges.values()
