"""The services over real gRPC on loopback ports: the happy path and the failure modes by status code."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from synthetic import make_table

from modsnet.data.bundle import read_bundle
from modsnet.data.graph import QUERY_DATASET, ProbeRecord
from modsnet.data.probe_scale import ProbeScale
from modsnet.embedded import EmbeddedCluster
from modsnet.runtime.errors import DeadlineExceeded, InvalidArgument, NotFound, Unavailable
from modsnet.runtime.stubs import RecommenderClient
from modsnet.v1 import query_pb2 as qpb
from modsnet.v1 import query_pb2_grpc, storage_pb2, storage_pb2_grpc

SERVICES = {
    "query": "modsnet.v1.Query",
    "recommender": "modsnet.v1.Recommender",
    "knowledge": "modsnet.v1.Knowledge",
    "storage": "modsnet.v1.Storage",
}


def blob_count(cluster: EmbeddedCluster) -> int:
    return sum(1 for _ in (cluster.home / "blobs" / "blobs").rglob("*") if _.is_file())


@pytest.fixture
def query_csv(tmp_path: Path) -> Path:
    path = tmp_path / "query.csv"
    make_table(300, 9, 2, 99).to_csv(path, index=False)
    return path


def test_search_returns_ranked_models_with_evidence(cluster: EmbeddedCluster, query_csv: Path) -> None:
    response = cluster.client.search(query_csv, k=3)
    assert [m.rank for m in response.models] == [1, 2, 3]
    scores = [m.predicted_score for m in response.models]
    assert scores == sorted(scores, reverse=True)
    top = response.models[0]
    assert top.evidence and 0 < top.evidence[0].similarity <= 1
    assert top.uncertainty > 0 and top.cost.train_seconds > 0 and top.explanation
    assert response.dataset.rows == 300 and response.dataset.target_column == "class"
    assert response.dataset.fingerprint == hashlib.sha256(query_csv.read_bytes()).hexdigest()
    assert response.path == "inductive" and response.library == "synth"
    # The upload is kept, content-addressed.
    assert cluster.client.storage.stat(response.dataset.fingerprint).size == query_csv.stat().st_size


def test_planted_signal_ranks_models_that_win_on_similar_datasets(
    full_gnn_cluster: EmbeddedCluster, tmp_path: Path
) -> None:
    cluster = full_gnn_cluster
    # The synthetic library's even models win on wide datasets, odd models on narrow ones.
    wide, narrow = tmp_path / "wide.csv", tmp_path / "narrow.csv"
    make_table(200, 11, 2, 5).to_csv(wide, index=False)
    make_table(120, 2, 2, 6).to_csv(narrow, index=False)
    top_wide = cluster.client.search(wide, k=2).models
    top_narrow = cluster.client.search(narrow, k=2).models
    assert all(int(m.model_id[1:]) % 2 == 0 for m in top_wide)
    assert all(int(m.model_id[1:]) % 2 == 1 for m in top_narrow)


def test_constraints_leave_out_models(cluster: EmbeddedCluster, query_csv: Path) -> None:
    from modsnet.v1 import common_pb2 as pb

    response = cluster.client.search(
        query_csv, k=6, constraints=pb.Constraints(max_train_seconds=0.35, exclude_models=["m0"])
    )
    assert {m.model_id for m in response.models} == {"m1", "m2"}
    assert response.excluded_by_constraints == 4


def test_the_recommender_uses_the_probes_of_at_most_probe_budget_models(cluster: EmbeddedCluster) -> None:
    probes = [ProbeRecord(m, QUERY_DATASET, "score", 0.9 - i / 10) for i, m in enumerate(["m1", "m3", "m5"])]
    assert cluster.client.knowledge is not None
    features = cluster.client.knowledge.snapshot("synth").datasets[0].features  # a new dataset just like it
    recommender = RecommenderClient(cluster.addresses["recommender"])
    try:
        used = {
            budget: recommender.recommend("synth", features, k=6, probe_budget=budget, probes=probes)
            for budget in (0, 1, 3, 5)
        }
    finally:
        recommender.close()
    assert {budget: answer.probes_used for budget, answer in used.items()} == {0: 0, 1: 1, 3: 3, 5: 3}
    # Within the budget, the first named: m1 is shown at its posterior, its reading 0.9 shrunk toward its prediction
    # (a probe is a noisy reading), with an sd of its own; m3's probe is not used.
    cold = {m.model_id: m.predicted_score for m in used[0].models}
    shown = {m.model_id: m for m in used[1].models}
    low, high = sorted((cold["m1"], 0.9))
    assert low < shown["m1"].predicted_score < high and shown["m1"].uncertainty > 0.0
    assert "read 0.900" in shown["m1"].explanation and shown["m3"].predicted_score != pytest.approx(0.8)


def test_a_search_answer_carries_the_recommendation(cluster: EmbeddedCluster, query_csv: Path) -> None:
    # The synthetic library's models cannot be probed here: the recommendation is the predicted top-1.
    response = cluster.client.search(query_csv, k=3)
    assert response.HasField("recommendation") and not response.probes
    pick = response.recommendation
    assert pick.model_id == response.models[0].model_id and not pick.measured
    assert pick.score == pytest.approx(response.models[0].predicted_score)
    assert pick.reason.startswith("top of the ranking: predicted") and "no probe measured" in pick.reason


def test_the_recommender_recommends_a_measured_model_that_beat_every_prediction(cluster: EmbeddedCluster) -> None:
    assert cluster.client.knowledge is not None
    features = cluster.client.knowledge.snapshot("synth").datasets[0].features
    recommender = RecommenderClient(cluster.addresses["recommender"])
    try:
        plain = recommender.recommend("synth", features, k=6)
        last = plain.models[-1]
        # The model predicted worst measured better than anything predicted: it is the one to take. (By a
        # wide margin: a measurement also lifts the other predictions by half its residual.)
        best = max(m.predicted_score for m in plain.models)
        probes = [ProbeRecord(last.model_id, QUERY_DATASET, "score", best + 1.0)]
        measured = recommender.recommend("synth", features, k=2, probe_budget=1, probes=probes)
        # Measured far below every prediction: the top-1 stays, and it says the probe did not match it.
        low = [ProbeRecord(last.model_id, QUERY_DATASET, "score", last.predicted_score - 1.0)]
        predicted = recommender.recommend("synth", features, k=2, probe_budget=1, probes=low)
    finally:
        recommender.close()
    assert plain.recommendation is not None and plain.recommendation.model_id == plain.models[0].model_id
    pick = measured.recommendation
    assert pick is not None and (pick.model_id, pick.measured) == (last.model_id, True)
    # Weighed by its estimate (the reading shrunk toward its prediction by the probe's noise), not the raw reading.
    assert last.predicted_score < pick.score < best + 1.0 and "better than any prediction" in pick.reason
    assert pick.reason.startswith(f"measured {best + 1.0:.3f} (estimated {pick.score:.3f} ± ")
    assert pick.model_id in {m.model_id for m in measured.models} and len(measured.models) == 2
    assert predicted.recommendation is not None and not predicted.recommendation.measured
    assert predicted.recommendation.model_id == predicted.models[0].model_id != last.model_id
    assert f"the best probe measured {last.predicted_score - 1.0:.3f} (estimated " in predicted.recommendation.reason
    assert predicted.recommendation.reason.endswith(f"for {last.model_id}")


def test_the_knn_estimator_ranks_a_probed_model_by_its_measurement(tmp_path: Path, synth_bundle: Path) -> None:
    # The kNN estimator takes measured probes: the probe moves the others, the probed model is shown at its
    # posterior (the reading shrunk toward its prediction, with an sd of its own: a probe is a noisy reading), and
    # a measurement far above every prediction ranks first and is recommended.
    # (A recommended model below the top k takes the answer's last place: tests/test_recommendation.py.)
    with EmbeddedCluster(tmp_path / "home", import_builtins=False, estimator="knn") as running:
        running.client.import_library(synth_bundle)
        assert running.client.knowledge is not None
        features = running.client.knowledge.snapshot("synth").datasets[0].features
        recommender = RecommenderClient(running.addresses["recommender"])
        try:
            full = recommender.recommend("synth", features, k=6)
            last = full.models[-1]
            measured = full.models[0].predicted_score + 1.0  # the others rise by half its residual, not as far
            probes = [ProbeRecord(last.model_id, QUERY_DATASET, "score", measured)]
            answer = recommender.recommend("synth", features, k=3, probe_budget=1, probes=probes)
        finally:
            recommender.close()
    assert answer.probes_used == 1
    top = answer.models[0]
    assert top.model_id == last.model_id and last.predicted_score < top.predicted_score < measured
    assert top.uncertainty > 0.0 and f"read {measured:.3f}" in top.explanation
    assert answer.recommendation is not None and answer.recommendation.model_id == last.model_id
    assert answer.recommendation.measured


def test_a_knn_search_probes_tabzoo_settings_on_the_upload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODSNET_BUILTIN_LIBRARIES", "tabzoo")
    with EmbeddedCluster(tmp_path / "home", estimator="knn") as running:
        answer = running.client.search(Path(__file__).parents[1] / "examples/saheart.csv", k=5, probe_budget=3)
    assert answer.estimator.startswith("knn") and answer.probes_used == 3
    probed = {p.model_id: p.value for p in answer.probes if p.kind == "score"}
    assert len(probed) == 3
    ranked = {m.model_id: m for m in answer.models}
    # TabZoo's probe records teach the library a probe-to-record scale (`modsnet.data.probe_scale`): since a probe
    # samples a table as the library did, the identity. saheart has 462 rows, under TabZoo's row cap: probed whole,
    # as the library measures such a table, so a probed model is shown at its reading, with sd 0.
    bundle = read_bundle(Path(__file__).parents[1] / "modsnet/libraries/tabzoo")
    scale = ProbeScale.of_library(bundle.meta)
    assert scale is not None and abs(scale.shift) < 1e-3 and scale.sd < 1e-3
    assert all(p.whole for p in answer.probes)
    shown = [m for m in probed if m in ranked]
    assert shown, "no probed model in the answer"
    for model_id in shown:
        value = probed[model_id]
        assert ranked[model_id].uncertainty == 0.0
        assert ranked[model_id].predicted_score == pytest.approx(value, abs=1e-9)
        assert ranked[model_id].explanation == f"measured on the whole table of your data: {value:.3f}"


def test_a_search_probes_one_model_at_a_time_each_chosen_given_the_earlier_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.recommender.core import RecommenderCore

    monkeypatch.setenv("MODSNET_BUILTIN_LIBRARIES", "tabzoo")
    asked: list[tuple[list[str], list[str]]] = []  # per SelectProbes call: the measured models sent, the picks
    select = RecommenderCore.select_probes

    def recording(self: RecommenderCore, *args: object, **kwargs: object) -> object:
        choice = select(self, *args, **kwargs)  # type: ignore[arg-type]
        measured = [p.model_id for p in kwargs.get("measured", ())]  # type: ignore[attr-defined]
        asked.append((measured, list(choice.model_ids)))
        return choice

    monkeypatch.setattr(RecommenderCore, "select_probes", recording)
    with EmbeddedCluster(tmp_path / "home", estimator="knn") as running:
        answer = running.client.search(Path(__file__).parents[1] / "examples/saheart.csv", k=5, probe_budget=3)
    probed = [p.model_id for p in answer.probes]
    assert len(probed) == 3 and len(set(probed)) == 3 and answer.probes_used == 3
    # Three rounds of one: round i was sent the i probes measured before it, and picked the next one measured.
    assert [measured for measured, _ in asked] == [[], probed[:1], probed[:2]]
    assert [picks for _, picks in asked] == [[m] for m in probed]
    assert not answer.probing_note  # the budget was spent


def test_select_probes_refuses_bad_measured_probes_and_tried_models(cluster: EmbeddedCluster) -> None:
    assert cluster.client.knowledge is not None
    features = cluster.client.knowledge.snapshot("synth").datasets[0].features
    recommender = RecommenderClient(cluster.addresses["recommender"])
    bad = {
        r"measured\[1\]: needs a model_id, a kind and a finite value": {
            "measured": [
                ProbeRecord("m1", QUERY_DATASET, "score", 0.5),
                ProbeRecord("m2", QUERY_DATASET, "score", math.nan),
            ]
        },
        r"measured\[0\]: model 'nope' is not in library 'synth'": {
            "measured": [ProbeRecord("nope", QUERY_DATASET, "score", 0.5)]
        },
        r"measured\[0\]: needs a model_id": {"measured": [ProbeRecord("", QUERY_DATASET, "score", 0.5)]},
        r"tried\[1\]: empty model id": {"tried": ["m1", ""]},
        r"tried\[0\]: model 'nope' is not in library": {"tried": ["nope"]},
        r"measured: at most 50 probes": {
            "measured": [ProbeRecord(f"m{i % 6}", QUERY_DATASET, "score", 0.5) for i in range(51)]
        },
        r"budget must be >= 0": {"budget": -1},
    }
    try:
        for message, fields in bad.items():
            kwargs: dict[str, object] = {"budget": 2, **fields}
            with pytest.raises(InvalidArgument, match=message):
                recommender.select_probes("synth", features, **kwargs)  # type: ignore[arg-type]
        # The same fields, well formed, are answered (the synthetic library's models cannot be probed here).
        fine = recommender.select_probes(
            "synth", features, budget=2, measured=[ProbeRecord("m1", QUERY_DATASET, "score", 0.5)], tried=["m2"]
        )
    finally:
        recommender.close()
    assert fine.model_ids == [] and fine.stop and "can be measured" in fine.reason


def test_feedback_makes_the_dataset_a_node_and_search_goes_transductive(
    cluster: EmbeddedCluster, query_csv: Path
) -> None:
    first = cluster.client.search(query_csv, k=3)
    report = cluster.client.report_performance(first.query_id, "m3", 0.97)
    assert report.graph_version == first.graph_version + 1
    second = cluster.client.search(query_csv, k=3)
    assert second.path == "transductive" and second.dataset.known_dataset_id == report.dataset_id
    assert second.models[0].model_id == "m3" and second.models[0].predicted_score == pytest.approx(0.97)


def test_import_names_junk_columns_and_still_stores_them(
    cluster: EmbeddedCluster, synth_bundle: Path, tmp_path: Path
) -> None:
    import shutil

    bundle = Path(shutil.copytree(synth_bundle, tmp_path / "junk"))
    meta = bundle / "library.yaml"
    meta.write_text(meta.read_text().replace("name: synth", "name: junk"))
    datasets = bundle / "datasets.csv"
    lines = datasets.read_text().splitlines()
    lines = [f"{lines[0]},split,tags"] + [f"{line},train,\"['t{i}', 'x']\"" for i, line in enumerate(lines[1:])]
    datasets.write_text("\n".join(lines) + "\n")
    response = cluster.client.import_library(bundle)
    assert list(response.warnings) == [
        "datasets.csv column 'split': constant (every filled cell is 'train'), ignored by the estimators",
        "datasets.csv column 'tags': a list in each cell (free text), ignored by the estimators",
    ]
    assert not cluster.client.import_library(synth_bundle).warnings
    assert cluster.client.knowledge is not None
    snapshot = cluster.client.knowledge.snapshot("junk")
    assert snapshot.datasets[0].metadata["tags"] == "['t0', 'x']"


def test_malformed_csv_is_invalid_argument_and_nothing_is_kept(cluster: EmbeddedCluster, tmp_path: Path) -> None:
    bad = tmp_path / "ragged.csv"
    bad.write_text("a,b,class\n1,2,x\n3,4\n5,6,y\n")
    before = blob_count(cluster)
    with pytest.raises(InvalidArgument, match=r"ragged\.csv.*(row|line) 3"):
        cluster.client.search(bad)
    assert blob_count(cluster) == before


def test_unknown_library_is_not_found(cluster: EmbeddedCluster, query_csv: Path) -> None:
    with pytest.raises(NotFound, match="nope"):
        cluster.client.search(query_csv, library="nope")


def test_status_codes_on_the_wire(cluster: EmbeddedCluster, tmp_path: Path) -> None:
    bad = tmp_path / "one.csv"
    bad.write_text("only\n1\n2\n")
    stub = query_pb2_grpc.QueryStub(cluster.client.query.channel)
    header = qpb.SearchRequest(header=qpb.SearchHeader(filename="one.csv"))
    with pytest.raises(grpc.RpcError) as caught:
        stub.Search(iter([header, qpb.SearchRequest(chunk=bad.read_bytes())]), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "one.csv" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        stub.Search(iter([qpb.SearchRequest(chunk=b"a,b\n")]), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_deadline_too_short_is_deadline_exceeded(cluster: EmbeddedCluster, query_csv: Path) -> None:
    with pytest.raises(DeadlineExceeded):
        cluster.client.search(query_csv, timeout=0.0005)


def test_downstream_stopped_is_unavailable(cluster: EmbeddedCluster, query_csv: Path) -> None:
    cluster.servers.pop("recommender").stop(0)
    with pytest.raises(Unavailable, match="recommender"):
        cluster.client.search(query_csv)
    # The query service itself stays up: calls that need no recommender still work.
    assert [lib.name for lib in cluster.client.list_libraries()] == ["synth"]


def test_knowledge_stopped_turns_query_health_not_serving(cluster: EmbeddedCluster) -> None:
    cluster.servers.pop("knowledge").stop(0)
    query = cluster.servers["query"]
    assert query.check_now() is False
    health = health_pb2_grpc.HealthStub(cluster.client.query.channel)
    status = health.Check(health_pb2.HealthCheckRequest(service="modsnet.v1.Query"), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_health_and_reflection_answer_on_every_service(cluster: EmbeddedCluster, service: str) -> None:
    with grpc.insecure_channel(cluster.addresses[service]) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICES[service]):
            response = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        answer = next(reflection.ServerReflectionInfo(iter([request]), timeout=5))
        names = {s.name for s in answer.list_services_response.service}
        assert {SERVICES[service], "grpc.health.v1.Health"} <= names


def test_storage_refuses_a_checksum_mismatch_with_data_loss(cluster: EmbeddedCluster) -> None:
    stub = storage_pb2_grpc.StorageStub(cluster.client.storage.channel)
    header = storage_pb2.PutBlobRequest(header=storage_pb2.PutBlobHeader(expected_sha256="0" * 64))
    with pytest.raises(grpc.RpcError) as caught:
        stub.PutBlob(iter([header, storage_pb2.PutBlobRequest(chunk=b"hello")]), timeout=5)
    assert caught.value.code() == grpc.StatusCode.DATA_LOSS


def test_corrupt_blob_is_data_loss_on_read(cluster: EmbeddedCluster) -> None:
    info = cluster.client.storage.put_bytes(b"precious bytes" * 100)
    path = next((cluster.home / "blobs" / "blobs").rglob(info.blob_id))
    path.write_bytes(b"tampered" + path.read_bytes()[8:])
    stub = storage_pb2_grpc.StorageStub(cluster.client.storage.channel)
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.GetBlob(storage_pb2.GetBlobRequest(blob_id=info.blob_id), timeout=5))
    assert caught.value.code() == grpc.StatusCode.DATA_LOSS


def test_upload_over_the_limit_is_resource_exhausted(tmp_path: Path, synth_bundle: Path) -> None:
    from modsnet.runtime.errors import ResourceExhausted

    big = tmp_path / "big.csv"
    make_table(2000, 9, 2, 1).to_csv(big, index=False)
    with EmbeddedCluster(tmp_path / "home", import_builtins=False, max_upload_bytes=10_000) as small:
        small.client.import_library(synth_bundle)
        with pytest.raises(ResourceExhausted, match=r"big\.csv"):
            small.client.search(big)


def test_unexpected_errors_are_internal_without_a_traceback(cluster: EmbeddedCluster, monkeypatch) -> None:
    from services.knowledge.backends.sqlite import SqliteKnowledgeStore

    def boom(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret detail")

    monkeypatch.setattr(SqliteKnowledgeStore, "list_libraries", boom)
    with grpc.insecure_channel(cluster.addresses["knowledge"]) as channel:
        from modsnet.v1 import common_pb2, knowledge_pb2_grpc

        with pytest.raises(grpc.RpcError) as caught:
            knowledge_pb2_grpc.KnowledgeStub(channel).ListLibraries(common_pb2.ListLibrariesRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "secret detail" not in caught.value.details() and "incident" in caught.value.details()


BROKEN_UPLOADS = [
    ("garbage.png", b"\x89PNG\r\n\x1a\n" + b"not an image at all" * 10, "garbage.png"),
    ("scan.xy", b"# two_theta intensity\n10.0\n10.1\n10.2\n", "scan.xy"),
    ("bomb.zip", None, "bomb.zip"),
    ("escape.zip", None, "unsafe"),
    (
        "laughs.xrdml",
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
        b"<xrdMeasurements>&lol2;</xrdMeasurements>",
        "laughs.xrdml",
    ),
]


@pytest.mark.parametrize(("name", "content", "expected"), BROKEN_UPLOADS, ids=[b[0] for b in BROKEN_UPLOADS])
def test_broken_uploads_of_every_kind_get_a_clear_status_and_nothing_is_kept(
    cluster: EmbeddedCluster, tmp_path: Path, name: str, content: bytes | None, expected: str
) -> None:
    import zipfile

    path = tmp_path / name
    if name == "bomb.zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for i in range(3):
                archive.writestr(f"texts/a/{i}.txt", b"a" * (700 * 1024 * 1024))
    elif name == "escape.zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("../../etc/evil.txt", b"hello")
    else:
        assert content is not None
        path.write_bytes(content)
    before = blob_count(cluster)
    stub = query_pb2_grpc.QueryStub(cluster.client.query.channel)
    messages = [qpb.SearchRequest(header=qpb.SearchHeader(filename=name))]
    messages += [
        qpb.SearchRequest(chunk=path.read_bytes()[i : i + (1 << 20)]) for i in range(0, path.stat().st_size, 1 << 20)
    ]
    with pytest.raises(grpc.RpcError) as caught:
        stub.Search(iter(messages), timeout=60)
    assert caught.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert expected in caught.value.details()
    assert blob_count(cluster) == before
    assert cluster.servers["query"].check_now() is True
