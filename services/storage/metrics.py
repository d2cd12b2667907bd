"""Storage service metrics."""

from prometheus_client import Counter

BLOB_BYTES_IN = Counter("modsnet_storage_bytes_in_total", "Bytes received by PutBlob.")
BLOB_BYTES_OUT = Counter("modsnet_storage_bytes_out_total", "Bytes sent by GetBlob.")
BLOBS_DEDUPLICATED = Counter(
    "modsnet_storage_deduplicated_total", "Uploads whose content was already stored (kept once)."
)
