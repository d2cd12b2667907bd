"""The `modsnet` command as a person runs it: real processes, real files, exit codes and messages."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from synthetic import make_table

from modsnet.cli import print_search
from modsnet.v1 import common_pb2, query_pb2

ROOT = Path(__file__).resolve().parents[1]


def modsnet(*args: str, home: Path, timeout: float = 120, builtins: str = "") -> subprocess.CompletedProcess[str]:
    # The session's small-GNN settings (conftest) pass through: what these tests check is the command, not the GNN.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODSNET_") or k.startswith("MODSNET_GNN_")}
    env["MODSNET_HOME"] = str(home)
    # Built-in libraries (TabZoo 52k records, XRDZoo 81k) only where a test needs them: each start imports them.
    env["MODSNET_BUILTIN_LIBRARIES"] = builtins
    env["MODSNET_DAEMON"] = "0"  # the services in the command's own process (tests/test_daemon.py tests the daemon)
    return subprocess.run(
        [sys.executable, "-m", "modsnet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def _imported_home(home: Path, bundle: Path) -> Path:
    done = modsnet("library", "import", str(bundle), home=home)
    assert done.returncode == 0, done.stderr
    assert "library synth: 6 models, 10 datasets, 60 interactions" in done.stdout
    return home


@pytest.fixture
def home(tmp_path: Path, synth_bundle: Path) -> Path:
    return _imported_home(tmp_path / "home", synth_bundle)


@pytest.fixture(scope="module")
def unchanged_home(tmp_path_factory: pytest.TempPathFactory, synth_bundle: Path) -> Path:
    """A data folder with the library imported, for commands that must leave it as it is (one import a module)."""
    return _imported_home(tmp_path_factory.mktemp("unchanged") / "home", synth_bundle)


def test_search_prints_a_table_and_json(home: Path, tmp_path: Path) -> None:
    csv = tmp_path / "mine.csv"
    make_table(150, 6, 3, 7).to_csv(csv, index=False)
    done = modsnet("search", str(csv), "--library", "synth", "-k", "3", home=home)
    assert done.returncode == 0, done.stderr
    assert "mine.csv: 150 rows x 7 columns, target 'class' (3 classes)" in done.stdout
    assert "query id" in done.stdout and "m" in done.stdout
    # One line under the table: the model to take and why (nothing was probed: the top-1, predicted).
    table_top = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("1 "))
    recommended = [line for line in done.stdout.splitlines() if line.startswith("Recommended: ")]
    assert len(recommended) == 1 and recommended[0].startswith(f"Recommended: {table_top} — top of the ranking")
    done = modsnet("search", str(csv), "--library", "synth", "-k", "2", "--json", home=home)
    answer = json.loads(done.stdout)
    assert [m["rank"] for m in answer["models"]] == [1, 2] and answer["query_id"]
    assert answer["recommendation"]["model_id"] == answer["models"][0]["model_id"]
    assert answer["recommendation"]["reason"] and not answer["recommendation"].get("measured", False)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "the file is empty"),
        ("a,b,class\n", "no data rows"),
        ("a,b,class\n1,2,x\n3\n", "row 3 has 1 field, the header has 3"),
        ("just_one\n1\n2\n", "one column"),
    ],
)
def test_malformed_file_prints_one_line_error_and_fails(
    unchanged_home: Path, tmp_path: Path, content: str, expected: str
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    done = modsnet("search", str(bad), home=unchanged_home)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("modsnet: error: ") and expected in lines[0], done.stderr
    assert "bad.csv" in lines[0]


@pytest.mark.timeout(400)  # eight commands, each a process that starts the services (~5 s of CPU each)
def test_library_list_export_and_reimport(home: Path, tmp_path: Path) -> None:
    listing = modsnet("library", "list", home=home)
    assert listing.returncode == 0 and "synth" in listing.stdout and "tabular" in listing.stdout
    for target in ("out", "out.tar.gz", "out.zip"):
        done = modsnet("library", "export", "synth", str(tmp_path / target), home=home)
        assert done.returncode == 0, done.stderr
    again = modsnet("library", "import", str(tmp_path / "out.zip"), home=tmp_path / "other")
    assert again.returncode == 0 and "60 interactions" in again.stdout
    # The canonical export of an unchanged import is byte-identical, so it is recognised as such.
    same = modsnet("library", "import", str(tmp_path / "out.tar.gz"), home=home)
    assert same.returncode == 0 and "unchanged" in same.stdout
    meta = tmp_path / "out" / "library.yaml"
    meta.write_text(meta.read_text().replace("synthetic test library", "edited"))
    edited = modsnet("library", "import", str(tmp_path / "out"), home=home)
    assert edited.returncode == 1 and "already exists" in edited.stderr
    replaced = modsnet("library", "import", str(tmp_path / "out"), "--replace", home=home)
    assert replaced.returncode == 0 and "graph version 2" in replaced.stdout


def test_bad_bundle_is_refused_and_nothing_changes(home: Path, tmp_path: Path, synth_bundle: Path) -> None:
    import shutil

    broken = Path(shutil.copytree(synth_bundle, tmp_path / "broken"))
    meta = broken / "library.yaml"
    meta.write_text(meta.read_text().replace("name: synth", "name: broken"))
    interactions = broken / "interactions.csv"
    lines = interactions.read_text().splitlines()
    cells = lines[5].split(",")
    cells[lines[0].split(",").index("score")] = "not-a-number"
    lines[5] = ",".join(cells)
    interactions.write_text("\n".join(lines) + "\n")
    done = modsnet("library", "import", str(broken), home=home)
    assert done.returncode == 1
    assert "interactions.csv line 6, column 'score'" in done.stderr
    assert "broken" not in modsnet("library", "list", home=home).stdout


def test_the_query_address_alone_serves_users_and_administration_asks_for_its_own(
    tmp_path: Path, synth_bundle: Path
) -> None:
    from modsnet.embedded import EmbeddedCluster

    with EmbeddedCluster(tmp_path / "running", import_builtins=False) as cluster:
        cluster.client.import_library(synth_bundle)
        query = ["--query-addr", cluster.addresses["query"]]
        listing = modsnet(*query, "library", "list", home=tmp_path / "unused")
        assert listing.returncode == 0 and "synth" in listing.stdout, listing.stderr
        shown = modsnet(*query, "model", "show", "m0", home=tmp_path / "unused")
        assert shown.returncode == 0 and shown.stdout.startswith("m0 (library synth"), shown.stderr
        refused = modsnet(*query, "library", "delete", "synth", home=tmp_path / "unused")
        assert refused.returncode == 2 and "give a knowledge address" in refused.stderr
        assert [lib.name for lib in cluster.client.list_libraries()] == ["synth"]
    assert not (tmp_path / "unused").exists()  # nothing ran embedded


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_fails_fast_without_a_required_address(tmp_path: Path) -> None:
    done = modsnet("serve", "query", "--port", "0", home=tmp_path)
    assert done.returncode == 2
    assert "missing required setting --knowledge-addr (or environment variable MODSNET_KNOWLEDGE_ADDR)" in done.stderr


def test_serve_storage_answers_health_and_metrics_then_stops_on_sigterm(tmp_path: Path) -> None:
    import urllib.request

    port, metrics = free_port(), free_port()
    # The session's small-GNN settings (conftest) pass through: what these tests check is the command, not the GNN.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODSNET_") or k.startswith("MODSNET_GNN_")}
    env.update(MODSNET_HOME=str(tmp_path), MODSNET_GRACE="2")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modsnet",
            "serve",
            "storage",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--metrics-port",
            str(metrics),
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        deadline = time.monotonic() + 10
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=2).read().decode()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert 'modsnet_grpc_requests_total{code="OK",method="Check",service="storage"} 1.0' in body
        assert "modsnet_grpc_request_seconds_bucket" in body
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert "shutting down" in (process.stdout.read() if process.stdout else "")


def test_run_a_tabzoo_setting_on_my_data(tmp_path: Path) -> None:
    csv = tmp_path / "mine.csv"
    make_table(200, 5, 2, 3).to_csv(csv, index=False)
    done = modsnet("run", "gaussian-nb", str(csv), home=tmp_path / "home", builtins="tabzoo")
    assert done.returncode == 0, done.stderr
    assert (
        "gaussian-nb on mine.csv (target 'class', 200 of 200 rows, 3-fold stratified CV): balanced accuracy"
        in done.stdout
    )
    missing = modsnet("run", "no-such-model", str(csv), home=tmp_path / "home", builtins="tabzoo")
    assert missing.returncode == 1 and "no library has a model 'no-such-model'" in missing.stderr


def test_search_an_xrd_scan_then_run_the_top_finder(tmp_path: Path) -> None:
    import numpy as np

    two_theta = np.arange(10.0, 80.0, 0.02)
    rng = np.random.default_rng(0)
    centres = [28.44, 47.30, 56.12, 69.13, 76.38]  # silicon's reflections with Cu Kα
    clean = 50 + sum(1000 * np.exp(-0.5 * ((two_theta - c) / 0.08) ** 2) for c in centres)
    scan = tmp_path / "silicon.xy"
    scan.write_text("".join(f"{t:.2f} {y:.0f}\n" for t, y in zip(two_theta, rng.poisson(clean), strict=True)))
    env_home = tmp_path / "home"
    searched = modsnet("search", str(scan), "--json", "-k", "3", home=env_home, builtins="xrdzoo")
    assert searched.returncode == 0, searched.stderr
    answer = json.loads(searched.stdout)
    assert answer["library"] == "xrdzoo" and answer["dataset"]["modality"] == "xrd"
    # Searches probe by default: the picked finders ran on this scan and their agreement became probe edges.
    assert answer["estimator"] == "gnn/v1"
    assert len(answer["probes"]) == 5 and answer["probes_used"] == 5
    assert all(p["kind"] == "agreement" and 0 <= p.get("value", 0) <= 1 for p in answer["probes"])
    top = answer["models"][0]["model_id"]
    # Agreement is not XRDZoo's metric: the recommendation is the predicted top-1, never "measured".
    pick = answer["recommendation"]
    assert pick["model_id"] == top and not pick.get("measured", False)
    assert "the probes measured agreement, not the library's metric" in pick["reason"]
    ran = modsnet("run", top, str(scan), home=env_home, builtins="xrdzoo")
    assert ran.returncode == 0, ran.stderr
    found = [float(line.split()[0]) for line in ran.stdout.splitlines()[3:] if line.strip()]
    assert all(any(abs(f - c) < 0.1 for f in found) for c in centres), ran.stdout


def test_the_table_says_which_models_were_measured_here_by_a_probe() -> None:
    near = [common_pb2.Evidence(dataset_id="keel-pima", similarity=0.98, score=0.74)]
    response = query_pb2.SearchResponse(
        query_id="q1",
        library="tabzoo",
        models=[
            common_pb2.RankedModel(rank=1, model_id="probed", predicted_score=0.65, evidence=near),
            common_pb2.RankedModel(rank=2, model_id="predicted", predicted_score=0.64, evidence=near),
        ],
        probes=[
            common_pb2.ProbeResult(model_id="probed", kind="score", value=0.65, seconds=0.1, detail="3-fold CV"),
            common_pb2.ProbeResult(model_id="predicted", kind="agreement", value=0.9, seconds=0.1),
        ],
        probes_used=2,
    )
    out = io.StringIO()
    print_search(response, out)
    rows = {line.split()[1]: line for line in out.getvalue().splitlines() if line[:2] in ("1 ", "2 ")}
    assert "measured here by the probe; 0.74 on keel-pima (0.98)" in rows["probed"]
    # An agreement probe ranks finders but is not their score: that row keeps its records only.
    assert "measured here" not in rows["predicted"] and "0.74 on keel-pima" in rows["predicted"]


def test_the_recommended_model_is_printed_under_the_table() -> None:
    response = query_pb2.SearchResponse(
        query_id="q1",
        library="tabzoo",
        models=[
            common_pb2.RankedModel(rank=1, model_id="probed", predicted_score=0.91),
            common_pb2.RankedModel(rank=2, model_id="predicted", predicted_score=0.88),
        ],
        probes=[common_pb2.ProbeResult(model_id="probed", kind="score", value=0.91, seconds=0.1)],
        recommendation=common_pb2.Recommendation(
            model_id="probed",
            measured=True,
            score=0.91,
            reason="measured 0.910 on your data, better than any prediction (best predicted 0.880 for predicted)",
        ),
    )
    out = io.StringIO()
    print_search(response, out)
    lines = out.getvalue().splitlines()
    line = (
        "Recommended: probed — measured 0.910 on your data, better than any prediction "
        "(best predicted 0.880 for predicted)"
    )
    assert line in lines
    # Under the table, before the query id.
    assert max(i for i, text in enumerate(lines) if text.startswith("2 ")) < lines.index(line)
    assert lines.index(line) < next(i for i, text in enumerate(lines) if text.startswith("query id"))
    # No recommendation (no model left to rank): no line.
    response.ClearField("recommendation")
    out = io.StringIO()
    print_search(response, out)
    assert "Recommended:" not in out.getvalue()


def test_import_warns_about_junk_columns_and_keeps_them(tmp_path: Path, synth_bundle: Path) -> None:
    import shutil

    bundle = Path(shutil.copytree(synth_bundle, tmp_path / "junk"))
    models = bundle / "models.csv"
    lines = models.read_text().splitlines()
    lines = [f"{lines[0]},Unnamed: 0"] + [f"{line},{i}" for i, line in enumerate(lines[1:])]
    models.write_text("\n".join(lines) + "\n")
    done = modsnet("library", "import", str(bundle), home=tmp_path / "home")
    assert done.returncode == 0 and "library synth: 6 models" in done.stdout
    warning = "warning: models.csv column 'Unnamed: 0': an index (0..5, one per row), ignored by the estimators"
    assert done.stderr.splitlines() == [warning]
    # Nothing is refused or dropped: the column is stored and exported.
    exported = modsnet("library", "export", "synth", str(tmp_path / "out"), home=tmp_path / "home")
    assert exported.returncode == 0, exported.stderr
    assert "Unnamed: 0" in (tmp_path / "out" / "models.csv").read_text().splitlines()[0]
