"""Query service: the public API (search by exemplar dataset, libraries, models and their artifacts, feedback)."""
