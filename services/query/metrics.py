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
