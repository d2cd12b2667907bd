"""Query service metrics."""

from prometheus_client import Counter, Histogram

from modsnet.runtime.metrics import LATENCY_BUCKETS

SEARCHES = Counter("modsnet_searches_total", "Searches, by modality and outcome.", ["modality", "outcome"])
UPLOAD_BYTES = Counter("modsnet_upload_bytes_total", "Bytes of exemplar files received.")
DOWNLOAD_BYTES = Counter("modsnet_artifact_download_bytes_total", "Bytes of model artifacts sent to clients.")
FEATURE_SECONDS = Histogram(
    "modsnet_feature_seconds",
    "Time to parse a file and compute its dataset features.",
    ["modality"],
    buckets=LATENCY_BUCKETS,
)
FEEDBACK = Counter("modsnet_feedback_total", "Performance reports received.")
PROBES = Counter("modsnet_probes_total", "Probes measured on uploaded data, by library.", ["library"])
# No library label: probing is bounded by one setting (probe_seconds) for all; modsnet_probes_total says which.
PROBE_SECONDS = Histogram(
    "modsnet_probe_seconds",
    "Time a search that probes spends on it (picking, fetching and measuring models on its data).",
    buckets=LATENCY_BUCKETS,
)
# Exemplar sizes: 1 kB to 2 GB by factors of about 4 (the default upload limit is 512 MiB).
SIZE_BUCKETS = tuple(float(4**i * 1024) for i in range(11))
UPLOAD_SIZE = Histogram("modsnet_upload_size_bytes", "Size of each exemplar file received.", buckets=SIZE_BUCKETS)
