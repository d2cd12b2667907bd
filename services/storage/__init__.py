"""Storage service: content-addressed blobs (datasets, bundles, artifacts, checkpoints)."""
