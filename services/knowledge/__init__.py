"""Knowledge service: the knowledge graph K (libraries, models, datasets, interactions) and the query log."""
