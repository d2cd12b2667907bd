"""Query service: the public API (search by exemplar dataset, libraries, feedback)."""
