"""The query service's HTTP/JSON API, called over real HTTP on the embedded cluster (same core as gRPC)."""

from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path

import pytest
import requests
from synthetic import make_table
from werkzeug.test import Client as WsgiClient

from modsnet.data.profiles import OBJECTIVE_NAMES, PROFILES
from modsnet.embedded import EmbeddedCluster
from modsnet.runtime.auth import AuthTable, Principal, Security, hash_token
from modsnet.runtime.stubs import KnowledgeClient, RecommenderClient, StorageClient
from services.query.core import QueryCore
from services.query.http_api import HttpApi
from services.query.insight import LibraryInsight


def _csv(rows: int = 120, seed: int = 3) -> bytes:
    return make_table(rows, 4, 2, seed).to_csv(index=False).encode()


def test_libraries_and_the_insight_pages(web_url: str) -> None:
    libraries = {lib["name"]: lib for lib in requests.get(f"{web_url}/api/libraries").json()["libraries"]}
    synth = libraries["synth"]
    # 6 models x 10 datasets, all scored; other tests of this session may have added feedback datasets
    n = synth["datasets"]
    assert synth["models"] == 6 and n >= 10 and synth["interactions"] >= 60
    assert synth["density"] == pytest.approx(synth["interactions"] / (6 * n))
    assert libraries["xrdzoo"]["modality"] == "xrd"

    matrix = requests.get(f"{web_url}/api/libraries/synth/matrix").json()
    assert len(matrix["models"]) == 6 and len(matrix["datasets"]) == n
    assert len(matrix["scores"]) == 6 and all(len(row) == n for row in matrix["scores"])
    # Datasets come easiest first: column means never rise from left to right.
    columns = [[row[j] for row in matrix["scores"] if row[j] is not None] for j in range(n)]
    means = [sum(c) / len(c) for c in columns]
    assert means == sorted(means, reverse=True)

    model = requests.get(f"{web_url}/api/libraries/synth/models/m0").json()
    assert model["interactions"] >= 10 and model["metadata"] == {"family": "up"} and not model["has_artifact"]
    assert [s["score"] for s in model["scores"]] == sorted((s["score"] for s in model["scores"]), reverse=True)

    dataset = requests.get(f"{web_url}/api/libraries/synth/datasets/d0").json()
    assert len(dataset["best_models"]) == 6 and dataset["features"]
    assert dataset["nearest"] and all(n["dataset_id"] != "d0" and n["why"] for n in dataset["nearest"])
    # The library's own datasets share all 6 models with d0: their scores' correlation is part of the why.
    own = [n for n in dataset["nearest"] if not n["dataset_id"].startswith("query-")]
    assert own and all(n["score_correlation"] is not None and "correlation" in n["why"] for n in own)


def test_search_a_csv_then_report_a_score(web_url: str) -> None:
    before = requests.get(f"{web_url}/api/libraries/synth").json()["graph_version"]
    response = requests.post(
        f"{web_url}/api/search", params={"filename": "mine.csv", "k": 3, "library": "synth"}, data=_csv()
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [m["rank"] for m in answer["models"]] == [1, 2, 3]
    assert answer["dataset"]["rows"] == 120 and answer["dataset"]["filename"] == "mine.csv"
    assert answer["graph_version"] == before
    top = answer["models"][0]
    assert (
        top["uncertainty"] > 0
        and top["evidence"]
        and set(top["cost"])
        == {
            "train_seconds",
            "inference_seconds",
            "memory_bytes",
        }
    )

    feedback = requests.post(
        f"{web_url}/api/feedback",
        json={"query_id": answer["query_id"], "model_id": top["model_id"], "score": 0.8, "cost": {"train_seconds": 1}},
    )
    assert feedback.status_code == 200, feedback.text
    assert feedback.json()["graph_version"] == before + 1
    assert requests.get(f"{web_url}/api/libraries/synth").json()["graph_version"] == before + 1


def test_multipart_file_and_folder_uploads(web_url: str) -> None:
    one = requests.post(f"{web_url}/api/search", params={"k": 2}, files={"file": ("table.csv", _csv(seed=4))})
    assert one.status_code == 200, one.text
    assert one.json()["dataset"]["filename"] == "table.csv"
    # A folder arrives as parts named by their paths (subfolders are the labels): here texts.
    notes = {"good": "a fine and pleasant day", "bad": "a grim and tiresome day"}
    folder = [
        ("file", (f"{label}/{i}.txt", f"{text} number {i}".encode())) for label, text in notes.items() for i in range(4)
    ]
    response = requests.post(f"{web_url}/api/search", params={"filename": "notes"}, files=folder)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["library"] == "texts" and answer["dataset"]["modality"] == "text" and answer["dataset"]["rows"] == 8
    assert answer["dataset"]["filename"] == "notes.zip" and len(answer["models"]) == 4
    bad = requests.post(f"{web_url}/api/search", files=[("file", ("../x.txt", b"a")), ("file", ("y.txt", b"b"))])
    assert bad.status_code == 400 and "file[0]" in bad.json()["error"]


@pytest.mark.parametrize(
    ("params", "body", "status", "named"),
    [
        ({"k": "0"}, b"a,b\n1,2\n", 400, "k"),
        ({"k": "many"}, b"a,b\n1,2\n", 400, "k"),
        ({"modality": "audio"}, b"a,b\n1,2\n", 400, "modality"),
        ({"max_train_seconds": "-1"}, b"a,b\n1,2\n", 400, "max_train_seconds"),
        ({"filename": "empty.csv"}, b"", 400, "empty"),
        ({"library": "nope"}, _csv(), 404, "nope"),
        ({"sha256": "0" * 64, "filename": "t.csv"}, _csv(), 422, "corrupt"),
        ({"objective": "cheap"}, _csv(), 400, "objective: 'cheap' must be one of score, per-train-seconds"),
        ({"objective": "pareto", "pareto_cost": "disk"}, _csv(), 400, "inference-seconds, memory"),
        ({"pareto_cost": "memory"}, _csv(), 400, "pareto_cost: goes with objective=pareto"),
        ({"profile": "laptop"}, _csv(), 400, "profile: profile 'laptop' is not a profile; the profiles are cpu-small"),
    ],
)
def test_bad_searches_get_4xx_naming_the_field(
    web_url: str, params: dict, body: bytes, status: int, named: str
) -> None:
    response = requests.post(f"{web_url}/api/search", params=params, data=body)
    assert response.status_code == status, response.text
    assert named in response.json()["error"]


def test_search_by_objective_and_profile(web_url: str) -> None:
    profiles = requests.get(f"{web_url}/api/profiles").json()["profiles"]
    assert [p["name"] for p in profiles] == sorted(PROFILES)
    assert next(p for p in profiles if p["name"] == "edge") == {
        "name": "edge",
        "description": PROFILES["edge"].description,
        "max_train_seconds": 0.0,
        "max_inference_seconds": 0.010,
        "max_memory_bytes": 50e6,
    }
    # The document's list of profile names is the code's.
    document = requests.get(f"{web_url}/api/openapi.json").json()
    search = {p["name"]: p for p in document["paths"]["/api/search"]["post"]["parameters"]}
    assert search["profile"]["schema"]["enum"] == sorted(PROFILES)
    assert search["objective"]["schema"]["enum"] == list(OBJECTIVE_NAMES)

    plain = requests.post(
        f"{web_url}/api/search", params={"filename": "t.csv", "library": "synth", "k": 6}, data=_csv()
    )
    assert plain.status_code == 200, plain.text
    answer = plain.json()
    assert answer["objective"] == {"name": "score", "cost": "", "label": "score"} and answer["profile"] == ""
    assert answer["removals"] == [] and not any(m["on_front"] for m in answer["models"])

    # Pareto against memory (synth: model j takes 1000 x (j + 1) bytes): the front is marked, members first.
    pareto = requests.post(
        f"{web_url}/api/search",
        params={"filename": "t.csv", "library": "synth", "k": 6, "objective": "pareto", "pareto_cost": "memory"},
        data=_csv(),
    ).json()
    assert pareto["objective"] == {"name": "pareto", "cost": "memory", "label": "pareto (memory)"}
    flags = [m["on_front"] for m in pareto["models"]]
    assert flags[0] and flags == sorted(flags, reverse=True)
    front = [(m["predicted_score"], m["cost"]["memory_bytes"]) for m in pareto["models"] if m["on_front"]]
    for m in pareto["models"]:  # off the front: some member is at least as good and as cheap
        if not m["on_front"]:
            assert any(s >= m["predicted_score"] and c <= m["cost"]["memory_bytes"] for s, c in front)

    per_memory = requests.post(
        f"{web_url}/api/search",
        params={"filename": "t.csv", "library": "synth", "k": 6, "objective": "per-memory"},
        data=_csv(),
    ).json()
    values = [m["objective_value"] for m in per_memory["models"]]
    assert per_memory["objective"]["name"] == "per-memory" and values == sorted(values, reverse=True) and values[0] > 0

    # edge (inference <= 10 ms) keeps text-m0 only of the text library (model j infers in 10 ms x (j + 1)).
    notes = {"good": "a fine and pleasant day", "bad": "a grim and tiresome day"}
    folder = [
        ("file", (f"{label}/{i}.txt", f"{text} number {i}".encode())) for label, text in notes.items() for i in range(4)
    ]
    edge = requests.post(
        f"{web_url}/api/search", params={"filename": "notes", "profile": "edge", "max_memory_bytes": 1e9}, files=folder
    )
    assert edge.status_code == 200, edge.text
    answer = edge.json()
    assert [m["model_id"] for m in answer["models"]] == ["text-m0"] and answer["profile"] == "edge"
    assert answer["constraints"]["max_inference_seconds"] == 0.010 and answer["constraints"]["max_memory_bytes"] == 50e6
    (removal,) = answer["removals"]
    assert (removal["reason"], removal["source"], removal["removed"]) == ("max-inference-seconds", "profile edge", 3)
    assert sorted(removal["model_ids"]) == ["text-m1", "text-m2", "text-m3"] and removal["explanation"]
    assert removal["best_score"] is not None and 0 <= removal["better"] <= 3


def test_bad_feedback_and_unknown_routes(web_url: str) -> None:
    for body, named in [
        ({"query_id": "q", "model_id": "m0"}, "score"),
        ({"query_id": "", "model_id": "m0", "score": 1}, "query_id"),
        ({"query_id": "q", "model_id": "m0", "score": 1, "cost": {"train_seconds": -1}}, "train_seconds"),
        ({"query_id": "q", "model_id": "m0", "score": "high"}, "score"),
    ]:
        response = requests.post(f"{web_url}/api/feedback", json=body)
        assert response.status_code == 400 and named in response.json()["error"], (body, response.text)
    unknown = requests.post(f"{web_url}/api/feedback", json={"query_id": "nope", "model_id": "m0", "score": 1})
    assert unknown.status_code == 404 and unknown.json()["error"]
    not_json = requests.post(f"{web_url}/api/feedback", data=b"{", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and "JSON" in not_json.json()["error"]
    assert requests.get(f"{web_url}/api/nothing").status_code == 404
    wrong_method = requests.get(f"{web_url}/api/search")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]
    assert requests.get(f"{web_url}/api/libraries/synth/models/nope").status_code == 404
    never = requests.get(f"{web_url}/api/libraries/xrdzoo/evaluation")  # no test evaluates it
    assert never.status_code == 404 and "modsnet eval xrdzoo" in never.json()["error"]


def test_artifact_download_and_xrd_peaks(web_url: str, xrd_scan: Path) -> None:
    model = requests.get(f"{web_url}/api/libraries/xrdzoo/matrix").json()["models"][0]
    artifact = requests.get(f"{web_url}/api/libraries/xrdzoo/models/{model}/artifact")
    assert artifact.status_code == 200
    assert hashlib.sha256(artifact.content).hexdigest() == artifact.headers["X-Checksum-Sha256"]
    assert "attachment" in artifact.headers["Content-Disposition"]
    missing = requests.get(f"{web_url}/api/libraries/synth/models/m0/artifact")
    assert missing.status_code == 404 and "no runnable artifact" in missing.json()["error"]

    peaks = requests.post(
        f"{web_url}/api/xrd/peaks",
        params={"library": "xrdzoo", "model_id": model, "filename": xrd_scan.name},
        data=xrd_scan.read_bytes(),
    )
    assert peaks.status_code == 200, peaks.text
    scan = peaks.json()["scans"][0]
    assert len(scan["two_theta"]) == len(scan["intensity"]) > 100
    assert scan["peaks"] and all(scan["two_theta"][0] <= p["two_theta"] <= scan["two_theta"][-1] for p in scan["peaks"])
    not_a_scan = requests.post(
        f"{web_url}/api/xrd/peaks", params={"library": "xrdzoo", "model_id": model, "filename": "t.csv"}, data=_csv()
    )
    assert not_a_scan.status_code == 400


def _app(cluster: EmbeddedCluster, security: Security | None = None, **limits: int) -> tuple[HttpApi, QueryCore]:
    a = cluster.addresses
    knowledge, storage = KnowledgeClient(a["knowledge"]), StorageClient(a["storage"])
    core = QueryCore(storage, knowledge, RecommenderClient(a["recommender"]), **limits)  # type: ignore[arg-type]
    return HttpApi(core, LibraryInsight(knowledge, storage), security or Security()), core


def test_busy_is_429_with_retry_after_and_too_large_is_413(web_cluster: EmbeddedCluster) -> None:
    app, core = _app(web_cluster, max_upload_bytes=10_000, max_concurrent_uploads=1, max_waiting_uploads=0)
    client = WsgiClient(app)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # another upload holding the one slot
        with core.upload(iter([b"x"]), "held.csv"):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        busy = client.post("/api/search?filename=t.csv", data=_csv(20))
        assert busy.status_code == 429 and int(busy.headers["Retry-After"]) >= 1
        assert "busy" in busy.get_json()["error"]
    finally:
        release.set()
        holder.join()
    large = client.post("/api/search?filename=t.csv", data=io.BytesIO(b"a,b\n" + b"1,2\n" * 5000))
    assert large.status_code == 413 and "10000 bytes" in large.get_json()["error"]
    core.close()


def test_bearer_tokens_with_the_grpc_scopes(web_cluster: EmbeddedCluster) -> None:
    table = AuthTable({hash_token("reader"): Principal("reader", frozenset({"search"}))}, {})
    app, core = _app(web_cluster, Security(table=table), max_upload_bytes=10**6)
    client = WsgiClient(app)
    assert client.get("/api/libraries").status_code == 401
    assert client.get("/api/libraries", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/libraries", headers={"Authorization": "Bearer reader"}).status_code == 200
    denied = client.post(
        "/api/feedback", json={"query_id": "q", "model_id": "m", "score": 1}, headers={"Authorization": "Bearer reader"}
    )
    assert denied.status_code == 403 and "feedback" in denied.get_json()["error"]
    assert client.get("/api/openapi.json").status_code == 200  # the document and the page need no token
    core.close()
