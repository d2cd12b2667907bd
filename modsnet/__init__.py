"""ModsNet: performance-aware top-k model search by exemplar dataset."""

__version__ = "0.1.0"
