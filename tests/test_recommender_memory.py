"""The recommender's process keeps the memory of freed large arrays (core.keep_freed_memory): a query's new
1M-long vectors come from kept memory, not from fresh pages faulted in one by one each time."""

from __future__ import annotations

import resource
import sys

import numpy as np
import pytest

from services.recommender.core import keep_freed_memory


def faults_per_query(vector: np.ndarray, queries: int = 20) -> float:
    """Minor page faults per round of what a 1M-model query does: several new 8 MB vectors, freed together."""

    def query() -> float:
        made = [vector * 2.0 for _ in range(8)]
        total = made[0]
        for other in made[1:]:
            total = total + other
        return float(total[0])

    query()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(queries):
        query()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / queries


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_recommender_process_reuses_freed_vectors_instead_of_faulting_new_pages() -> None:
    if not keep_freed_memory():  # as a recommender does once it serves a library of LARGE_LIBRARY models
        pytest.skip("not glibc")
    vector = np.random.default_rng(0).normal(size=1_000_000)
    # The same round on fresh pages faults ~5,000 times (2,048 pages per 8 MB vector that was given back).
    assert faults_per_query(vector) < 200
