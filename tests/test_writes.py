"""Writes that cannot poison the graph: feedback is validated before anything is written, an implausible one is
quarantined, a retry applies once, a retraction is audited, and a search's predictions do not move.

The store-level guarantees (both backends) are in tests/test_knowledge_store.py; these go through the
services of an embedded cluster as a user's client does."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from synthetic import make_table, write_library

from modsnet.cli import main
from modsnet.data.bundle import bundle_members, pack_members, pack_path, read_bundle
from modsnet.data.graph import Cost, InteractionRecord, LibraryInfo, Snapshot
from modsnet.embedded import EmbeddedCluster
from modsnet.runtime.errors import InvalidArgument, NotFound
from modsnet.v1 import common_pb2 as pb
from modsnet.v1 import knowledge_pb2 as kpb
from modsnet.v1 import knowledge_pb2_grpc
from services.knowledge.plausibility import ScoreSummary


def _summary(scores: dict[tuple[str, str], float], meta: dict[str, object] | None = None) -> ScoreSummary:
    info = LibraryInfo("lib", meta or {}, 0, 0, len(scores), 1, "", 0.0)
    records = [InteractionRecord(m, d, s) for (m, d), s in scores.items()]
    return ScoreSummary.of(Snapshot(info, [], [], records, []))


# Three models of steady skill on four datasets of different difficulty, with a little noise.
_SCORES = {
    (f"m{j}", f"d{i}"): 0.5 + 0.1 * i + 0.05 * j + 0.002 * ((i * 3 + j) % 5 - 2) for j in range(3) for i in range(4)
}


def test_a_score_outside_the_range_is_refused_naming_the_field() -> None:
    summary = _summary(_SCORES)  # recorded 0.496-0.904: allowed 0.292-1.108
    for score in (1e308, -1.0, 1.2, math.nan, math.inf):
        with pytest.raises(InvalidArgument, match="interaction 0: score"):
            summary.check(score, "m0", "d0", "interaction 0: ")
    declared = _summary(_SCORES, {"metric_range": [0.0, 1.0]})
    with pytest.raises(InvalidArgument, match=r"metric_range of library.yaml"):
        declared.check(1.01, "m0", "d0")
    assert _summary({}).check(5.0, "m0", "d0") == ""  # no records, no range: nothing to judge by


def test_an_implausible_score_is_quarantined_with_the_reason() -> None:
    summary = _summary(_SCORES)
    assert summary.check(0.55, "m1", "d0") == ""  # m1 on d0 is about 0.55
    assert summary.check(0.81, "m2", "d2") == ""
    far = summary.check(0.85, "m0", "d0")  # inside the range, far from what m0 and d0 make likely
    assert "robust standard deviations" in far and "the model's and the dataset's records" in far
    assert "beyond the library's recorded scores" in summary.check(1.05, "m2", "new-dataset")
    assert summary.check(0.7, "m1", "new-dataset") == ""  # a new dataset: judged by the model's own spread


@pytest.fixture
def cluster(tmp_path: Path, synth_bundle: Path) -> Iterator[EmbeddedCluster]:
    # kNN: the same predictions from the same graph, without waiting for a GNN to train.
    with EmbeddedCluster(tmp_path / "home", import_builtins=False, estimator="knn") as running:
        running.client.import_library(synth_bundle)
        yield running


def _predictions(cluster: EmbeddedCluster, path: Path) -> dict[str, float]:
    return {m.model_id: m.predicted_score for m in cluster.client.search(path, k=50).models}


def test_poisoned_feedback_changes_no_prediction(cluster: EmbeddedCluster, tmp_path: Path) -> None:
    poisoned, other = tmp_path / "poisoned.csv", tmp_path / "other.csv"
    make_table(300, 9, 2, 99).to_csv(poisoned, index=False)
    make_table(200, 4, 2, 7).to_csv(other, index=False)
    query = cluster.client.search(poisoned, k=3)
    before = _predictions(cluster, other)
    learned = len(cluster.client.knowledge.snapshot("synth").interactions)
    version = cluster.client.knowledge.graph_version("synth")
    refused = [
        (1e308, None, "score"),
        (math.nan, None, "score"),
        (-1e12, None, "score"),  # huge but finite, far outside the recorded range
        (0.8, pb.Cost(train_seconds=-1, inference_seconds=math.nan), "cost.train_seconds"),
        (0.8, pb.Cost(inference_seconds=math.inf), "cost.inference_seconds"),
    ]
    for score, cost, field in refused:
        with pytest.raises(InvalidArgument, match=field):
            cluster.client.report_performance(query.query_id, "m3", score, cost)
    assert cluster.client.knowledge.graph_version("synth") == version  # nothing was written
    # Inside the range but far beyond anything recorded: stored, said so, not learned from.
    held = cluster.client.report_performance(query.query_id, "m3", 0.3)
    assert held.quarantined and "beyond the library's recorded scores" in held.quarantine_reason
    assert held.graph_version == version + 1
    assert _predictions(cluster, other) == before
    assert len(cluster.client.knowledge.snapshot("synth").interactions) == learned
    with pytest.raises(InvalidArgument, match="older_than_unix"):
        cluster.client.purge_queries(math.nan)
    with pytest.raises(InvalidArgument, match="older_than_unix"):
        cluster.client.purge_queries(-1.0)
    # What was stored exports and imports back: the held record with its reason.
    exported = read_bundle(cluster.client.export_library("synth", tmp_path / "synth.tar.gz"))
    assert [r["quarantine"] for r in exported.interactions.rows if r.get("request_id")] == [held.quarantine_reason]


def _knowledge_calls(methods: tuple[str, ...] = ("GetQuery", "FindDataset", "AddInteractions", "AddFeedback")) -> dict:
    """Calls made to the knowledge service so far (this process's clients), of the methods a feedback may use."""
    from prometheus_client import REGISTRY

    return {
        method: REGISTRY.get_sample_value(
            "modsnet_grpc_client_requests_total", {"target": "knowledge", "method": method, "code": "OK"}
        )
        or 0.0
        for method in methods
    }


def test_a_feedback_is_one_call_from_query_to_knowledge(cluster: EmbeddedCluster, tmp_path: Path) -> None:
    """Under load each call between two processes waits for a core and a GIL on both sides: the query service
    hands a feedback to knowledge whole (AddFeedback), which finds the search's dataset, or adds it, itself."""
    path = tmp_path / "query.csv"
    make_table(300, 9, 2, 7).to_csv(path, index=False)
    query = cluster.client.search(path, k=3)
    before = _knowledge_calls()
    first = cluster.client.report_performance(query.query_id, "m3", 0.9)
    after = _knowledge_calls()
    assert {m: after[m] - before[m] for m in after} == {
        "GetQuery": 0,
        "FindDataset": 0,
        "AddInteractions": 0,
        "AddFeedback": 1,
    }
    assert first.dataset_id.startswith("query-")  # a dataset no library had: added
    second = cluster.client.report_performance(query.query_id, "m4", 0.8)
    assert second.dataset_id == first.dataset_id and second.graph_version == first.graph_version + 1
    node = cluster.client.knowledge.get_dataset("synth", first.dataset_id)
    assert node.interactions == 2 and node.metadata["filename"] == "query.csv"
    with pytest.raises(NotFound):
        cluster.client.report_performance("no-such-query", "m3", 0.9)


def test_a_retried_report_applies_once_and_a_retraction_is_audited(
    cluster: EmbeddedCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "query.csv"
    make_table(300, 9, 2, 99).to_csv(path, index=False)
    query = cluster.client.search(path, k=3)
    cost = pb.Cost(train_seconds=3.0)
    first = cluster.client.report_performance(query.query_id, "m3", 0.9, cost, request_id="retried-once")
    again = cluster.client.report_performance(query.query_id, "m3", 0.9, cost, request_id="retried-once")
    assert (again.dataset_id, again.graph_version, again.request_id) == (
        first.dataset_id,
        first.graph_version,
        "retried-once",
    )
    assert not first.quarantined

    def stored() -> list[InteractionRecord]:
        return [r for r in cluster.client.knowledge.snapshot("synth").interactions if r.dataset_id == first.dataset_id]

    assert [(r.model_id, r.score, r.cost) for r in stored()] == [("m3", 0.9, Cost(train_seconds=3.0))]

    # Retraction names who asked (the principal authentication puts in the metadata) and bumps the version.
    with grpc.insecure_channel(cluster.addresses["knowledge"]) as channel:
        stub = knowledge_pb2_grpc.KnowledgeStub(channel)
        done = stub.DeleteInteraction(
            kpb.DeleteInteractionRequest(library="synth", request_id="retried-once", note="wrong run"),
            metadata=(("x-modsnet-principal", "carol"),),
        )
    assert (done.removed, done.graph_version) == (1, first.graph_version + 1)
    assert stored() == []
    [entry] = cluster.client.audit_log("synth")
    assert (entry.principal, entry.action, entry.request_id, entry.records, entry.note) == (
        "carol",
        "retract",
        "retried-once",
        1,
        "wrong run",
    )
    with pytest.raises(NotFound):
        cluster.client.retract_feedback("synth", "never-sent")

    # The CLI: a report (the old form still works), then its retraction and confirmation by an admin.
    addresses = [f"--{s}-addr={a}" for s, a in cluster.addresses.items()]
    assert main([*addresses, "feedback", query.query_id, "m3", "0.3"]) == 0
    reported = capsys.readouterr().out
    assert "quarantined, not learned from until an admin confirms it" in reported
    request_id = reported.split("request ")[1].split(")")[0]
    assert main([*addresses, "feedback", "confirm", "synth", request_id, "--note", "measured twice"]) == 0
    assert "confirmed 1 quarantined record(s)" in capsys.readouterr().out
    assert [r.score for r in stored()] == [0.3]
    assert main([*addresses, "feedback", "retract", "synth", request_id]) == 0
    assert main([*addresses, "feedback", "audit", "synth"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "retracted 1 record(s)" in lines[0]
    assert [line.split()[3] for line in lines[1:]] == ["retract", "confirm", "retract"]
    assert lines[2].split()[2] == "anonymous" and lines[2].endswith("measured twice")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"library.yaml": b"metric_range: [1, 0]\n"}, "key 'metric_range'"),
        ({"library.yaml": b"metric_range: [0, .nan]\n"}, "key 'metric_range'"),
        ({"library.yaml": b"metric_range: [0, 0.5]\n"}, r"interactions.csv line \d+, column 'score'.*metric_range"),
        ({"datasets.csv": "features"}, "datasets.csv line 2, column 'features'"),
    ],
)
def test_metric_range_and_feature_cells_are_checked_at_import(
    synth_bundle: Path, edit: dict[str, object], message: str
) -> None:
    files = bundle_members(read_bundle(synth_bundle))
    if "library.yaml" in edit:
        files["library.yaml"] += edit["library.yaml"]  # type: ignore[operator]
    else:
        lines = files["datasets.csv"].decode().splitlines()
        lines = [lines[0] + ",features", lines[1] + ',"{""a"": NaN}"', *(line + "," for line in lines[2:])]
        files["datasets.csv"] = "\n".join(lines).encode()
    with pytest.raises(InvalidArgument, match=message):
        read_bundle(pack_members(files))
    files = bundle_members(read_bundle(synth_bundle))
    files["library.yaml"] += b"metric_range: [0, 1]\n"
    assert read_bundle(pack_members(files)).meta["metric_range"] == [0.0, 1.0]


def test_a_retried_import_answers_as_the_first(cluster: EmbeddedCluster, tmp_path: Path) -> None:
    library = tmp_path / "other"
    write_library(library, name="other", seed=3)
    blob = cluster.client.storage.put_bytes(pack_path(library), name="other.tar.gz").blob_id
    first = cluster.client.knowledge.import_library(blob, request_id="import-1")
    retry = cluster.client.knowledge.import_library(blob, request_id="import-1")
    assert not first.unchanged and not retry.unchanged
    assert retry.library.graph_version == first.library.graph_version  # applied once
    assert cluster.client.knowledge.import_library(blob, request_id="import-2").unchanged  # someone else's
