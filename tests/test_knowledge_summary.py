"""The score summary that judges feedback: computed on columns with the numbers of a per-group
`statistics.median`, and built once per library however many feedback reports arrive together."""

from __future__ import annotations

import random
import statistics
import threading
import time
from typing import Any

from modsnet.data.graph import InteractionColumns, InteractionRecord, LibraryInfo, Snapshot
from services.knowledge import core as knowledge_core
from services.knowledge.core import KnowledgeCore
from services.knowledge.plausibility import _MAD_TO_SD, ScoreSummary


def _reference(records: list[InteractionRecord]) -> dict[str, Any]:
    """The summary's numbers record by record, as the plausibility rules define them."""
    scores = [r.score for r in records]
    models: dict[str, list[float]] = {}
    datasets: dict[str, list[float]] = {}
    for r in records:
        models.setdefault(r.model_id, []).append(r.score)
        datasets.setdefault(r.dataset_id, []).append(r.score)
    centre = statistics.median(scores)
    model_median = {m: statistics.median(v) for m, v in models.items()}
    dataset_median = {d: statistics.median(v) for d, v in datasets.items()}
    residuals = [r.score - (model_median[r.model_id] + dataset_median[r.dataset_id] - centre) for r in records]
    return {
        "observed": (min(scores), max(scores)),
        "library_median": centre,
        "residual_spread": _MAD_TO_SD * statistics.median(abs(v) for v in residuals),
        "model_median": model_median,
        "model_spread": {
            m: _MAD_TO_SD * statistics.median(abs(s - model_median[m]) for s in v) for m, v in models.items()
        },
        "dataset_median": dataset_median,
    }


def _snapshot(records: object) -> Snapshot:
    return Snapshot(LibraryInfo("lib", {}, 0, 0, 0, 1, "", 0.0), [], [], records, [])  # type: ignore[arg-type]


def test_the_summary_on_columns_has_the_numbers_of_per_group_medians() -> None:
    rng = random.Random(0)
    for trial in range(200):
        records = [
            InteractionRecord(f"m{rng.randrange(6)}", f"d{rng.randrange(4)}", round(rng.random(), rng.choice([1, 6])))
            for _ in range(rng.randrange(1, 50))
        ]
        expected = _reference(records)
        for given in (records, InteractionColumns.from_records(records, ["unrated", "m0"], ["d9"])):
            summary = ScoreSummary.of(_snapshot(given))
            got = {key: getattr(summary, key) for key in expected}
            assert got == expected, trial  # exact: the same arithmetic, not merely close


class _CountingStore:
    """A store whose snapshot is slow and counted (what a summary build reads)."""

    def __init__(self, records: list[InteractionRecord]):
        self.records = records
        self.snapshots = 0
        self.lock = threading.Lock()

    def graph_head(self, library: str) -> tuple[int, str, float]:
        return 1, "bundle", 1.0

    def snapshot(self, library: str) -> Snapshot:
        with self.lock:
            self.snapshots += 1
        time.sleep(0.2)  # long enough for every caller below to arrive while the first builds
        return _snapshot(self.records)


def test_feedback_arriving_together_builds_one_summary_and_an_expired_one_is_renewed_off_the_call(
    monkeypatch: Any,
) -> None:
    store = _CountingStore(
        [InteractionRecord(f"m{j}", f"d{i}", 0.5 + 0.01 * (i + j)) for i in range(5) for j in range(4)]
    )
    core = KnowledgeCore(store, storage=None)  # type: ignore[arg-type]
    got: list[ScoreSummary] = []
    callers = [threading.Thread(target=lambda: got.append(core._summary("lib"))) for _ in range(8)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join()
    assert store.snapshots == 1 and len(got) == 8 and all(s is got[0] for s in got)

    monkeypatch.setattr(knowledge_core, "SUMMARY_TTL_S", 0.0)  # expired: answered by the old one, renewed behind
    assert core._summary("lib") is got[0]  # the old one answers: the call did not wait for a new build
    deadline = time.monotonic() + 10
    while store.snapshots < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    while "lib" in core._renewing and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.snapshots == 2
    assert core._summary("lib") is not got[0]  # the renewed one answers now
