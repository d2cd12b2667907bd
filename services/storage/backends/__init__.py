"""Blob store backends: `local` (a folder, the embedded default) and `s3` (MinIO / any S3 API)."""
