"""Real backend servers started on this machine for tests, benchmarks and `make up` (not for production)."""
