"""Data handling: library bundles, exemplar uploads, safe archives and the knowledge graph's plain records."""
