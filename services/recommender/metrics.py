"""Recommender service metrics."""

from prometheus_client import Counter, Histogram

from modsnet.runtime.metrics import LATENCY_BUCKETS

FITS = Counter("modsnet_estimator_fits_total", "Estimator fits, by library and reason.", ["library", "reason"])
FIT_SECONDS = Histogram("modsnet_estimator_fit_seconds", "Time to fit an estimator.", buckets=LATENCY_BUCKETS)
RECOMMEND_SECONDS = Histogram(
    "modsnet_recommend_seconds",
    "Time to score and rank a library's models for one query.",
    buckets=LATENCY_BUCKETS,
)
CACHE = Counter("modsnet_estimator_cache_total", "Estimator cache lookups, by result.", ["result"])
