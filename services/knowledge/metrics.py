"""Knowledge service metrics."""

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import Counter, Histogram

from modsnet.data.graph import LibraryInfo
from modsnet.runtime.metrics import LATENCY_BUCKETS, Sample, ScrapeTimeGauges

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

# Read from the store at each scrape (modsnet.runtime.metrics.ScrapeTimeGauges).
LIBRARY_GAUGES = ScrapeTimeGauges(
    {
        "modsnet_graph_version": ("Graph version of each library (every import and feedback adds one).", ("library",)),
        "modsnet_library_interactions": ("Interactions (measured scores) each library holds.", ("library",)),
    }
)


def library_samples(libraries: Callable[[], Iterable[LibraryInfo]]) -> Callable[[], Iterator[Sample]]:
    def read() -> Iterator[Sample]:
        for info in libraries():
            yield "modsnet_graph_version", (info.name,), float(info.graph_version)
            yield "modsnet_library_interactions", (info.name,), float(info.interactions)

    return read
