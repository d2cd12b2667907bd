"""Recommender service metrics."""

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from modsnet.runtime.metrics import LATENCY_BUCKETS, Sample, ScrapeTimeGauges

FITS = Counter("modsnet_estimator_fits_total", "Estimator fits, by library and reason.", ["library", "reason"])
FIT_SECONDS = Histogram("modsnet_estimator_fit_seconds", "Time to fit an estimator.", buckets=LATENCY_BUCKETS)
RECOMMEND_SECONDS = Histogram(
    "modsnet_recommend_seconds",
    "Time to score and rank a library's models for one query.",
    buckets=LATENCY_BUCKETS,
)
RETRAIN_AFTER = Gauge(
    "modsnet_retrain_after_interactions", "Interactions since the last training that start a background retraining."
)
CACHE = Counter(
    "modsnet_estimator_cache_total",
    "Estimator cache lookups, by result (hit, miss; stale: answered behind the graph while it refreshes).",
    ["result"],
)
SNAPSHOTS = Counter(
    "modsnet_graph_reads_total",
    "Graphs read from knowledge, by kind (whole: the library's whole graph; delta: the change since the graph held, "
    "put on it).",
    ["kind"],
)

# Read from the served estimators at each scrape (modsnet.runtime.metrics.ScrapeTimeGauges). A library appears
# once a search or `modsnet train` has used it since the recommender started.
ESTIMATOR_GAUGES = ScrapeTimeGauges(
    {
        "modsnet_estimator_age_seconds": (
            "Seconds since the weights serving a library were trained, by estimator (gnn/v1, knn) and origin "
            "(trained, checkpoint, refreshed; interim: kNN answering while the GNN trains).",
            ("library", "estimator", "origin"),
        ),
        "modsnet_estimator_graph_version": (
            "Graph version of the library the served estimator is on (behind modsnet_graph_version: not refreshed).",
            ("library",),
        ),
        "modsnet_estimator_trained_version": (
            "Graph version at which the served weights were trained.",
            ("library",),
        ),
        "modsnet_estimator_stale_seconds": (
            "Seconds since the graph moved past the version the served estimator is on (0: current); "
            "bounded by max_staleness_seconds, past which searches wait for the refresh.",
            ("library",),
        ),
        "modsnet_pending_feedback": (
            "Interactions added since the served weights were trained (retraining starts at retrain_after).",
            ("library",),
        ),
    }
)


def estimator_samples(
    served: Callable[[], Iterable[Any]], staleness: Callable[[], dict[str, float]]
) -> Callable[[], Iterator[Sample]]:
    """Samples of the served estimators (`RecommenderCore.served`, `RecommenderCore.staleness`)."""

    def read() -> Iterator[Sample]:
        now = time.time()
        stale = staleness()
        for s in served():
            library = s.library.name
            yield "modsnet_estimator_age_seconds", (library, s.estimator.name, s.origin), max(0.0, now - s.trained_unix)
            yield "modsnet_estimator_graph_version", (library,), float(s.graph_version)
            yield "modsnet_estimator_trained_version", (library,), float(s.trained_version)
            yield "modsnet_estimator_stale_seconds", (library,), max(0.0, stale.get(library, 0.0))
            yield "modsnet_pending_feedback", (library,), float(max(0, s.library.interactions - s.trained_interactions))

    return read
