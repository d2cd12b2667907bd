"""Knowledge service metrics."""

from prometheus_client import Counter, Histogram

from modsnet.runtime.metrics import LATENCY_BUCKETS

IMPORTS = Counter("modsnet_library_imports_total", "Library imports, by outcome.", ["outcome"])
IMPORT_SECONDS = Histogram(
    "modsnet_library_import_seconds", "Time to validate and store a library bundle.", buckets=LATENCY_BUCKETS
)
INTERACTIONS_ADDED = Counter(
    "modsnet_interactions_added_total",
    "Interactions added after import, by provenance (quarantined feedback counted apart).",
    ["provenance"],
)
QUERIES_LOGGED = Counter("modsnet_queries_logged_total", "Searches recorded in the query log.")
