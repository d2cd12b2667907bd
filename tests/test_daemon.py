"""The local daemon (`modsnet daemon start|status|stop`), stale daemon files, and in-process trainings that
finish before the command exits. Every command is a real `python -m modsnet` process in a temp data folder."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from modsnet import daemon
from modsnet.client import Client
from modsnet.embedded import EmbeddedCluster
from modsnet.runtime.errors import Unauthenticated

# Each test starts several Python processes (a daemon, CLI commands): generous on a shared, busy machine.
pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "saheart.csv"


def modsnet(*args: str, home: Path, timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MODSNET_") or k.startswith("MODSNET_GNN_")}
    clean.update({"MODSNET_HOME": str(home), "MODSNET_BUILTIN_LIBRARIES": "", "MODSNET_DAEMON": "1", **env})
    return subprocess.run(
        [sys.executable, "-m", "modsnet", *args], capture_output=True, text=True, timeout=timeout, env=clean, cwd=ROOT
    )


@pytest.fixture
def running(tmp_path: Path, synth_bundle: Path) -> Iterator[Path]:
    """A data folder whose daemon runs and holds the synthetic library; stopped (or killed) afterwards."""
    home = tmp_path / "home"
    # The kNN estimator: these tests are about the daemon, the GNN's training has its own test below.
    started = modsnet("daemon", "start", home=home, MODSNET_ESTIMATOR="knn")
    assert started.returncode == 0, started.stderr
    try:
        imported = modsnet("library", "import", str(synth_bundle), home=home)
        assert imported.returncode == 0, imported.stderr
        yield home
    finally:
        info = daemon.read_info(home)
        if modsnet("daemon", "stop", home=home).returncode != 0 and info is not None:
            os.kill(info.pid, 9)


def test_daemon_serves_searches_at_once_and_stops_cleanly(running: Path) -> None:
    home = running
    info = daemon.read_info(home)
    assert info is not None
    # The token is for this user alone, and the services refuse a caller without it.
    assert stat.S_IMODE((home / daemon.STATE_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE((home / daemon.AUTH_FILE).stat().st_mode) == 0o600
    stranger = Client(query=info.address)
    with pytest.raises(Unauthenticated):
        stranger.list_libraries()
    stranger.close()

    # Two searches at once both go through the daemon (no second daemon, no in-process cluster).
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: modsnet("search", str(EXAMPLE), "--json", home=home), range(2)))
    for answer in answers:
        assert answer.returncode == 0, answer.stderr
        assert json.loads(answer.stdout)["library"] == "synth"
        assert "starting the daemon" not in answer.stderr
    assert daemon.read_info(home) == info

    status = modsnet("daemon", "status", home=home)
    assert status.returncode == 0, status.stderr
    assert f"pid {info.pid}, {info.address}" in status.stdout
    assert "libraries warm: synth (knn-popularity/v1 trained, graph version 1)" in status.stdout
    assert "no training under way" in status.stdout

    stopped = modsnet("daemon", "stop", home=home)
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped (pid {info.pid})" in stopped.stdout
    assert not daemon._is_daemon_process(info.pid)
    assert not (home / daemon.STATE_FILE).exists() and not (home / daemon.AUTH_FILE).exists()
    assert "daemon stopped" in (home / daemon.LOG_FILE).read_text()
    assert modsnet("daemon", "status", home=home).returncode == 3


def test_stale_daemon_files_are_detected_and_removed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for pid in (int(gone.stdout), os.getpid()):  # a pid that is gone, and a live one that is no daemon
        state = {"pid": pid, "addresses": {"query": "127.0.0.1:9"}, "token": "t", "started_unix": 1.0}
        (home / daemon.STATE_FILE).write_text(json.dumps({**state, "home": str(home)}))
        status = modsnet("daemon", "status", home=home)
        assert status.returncode == 3 and "no modsnet daemon running" in status.stdout, status.stdout
        assert not (home / daemon.STATE_FILE).exists()


def test_an_in_process_search_finishes_the_training_it_started(tmp_path: Path, synth_bundle: Path) -> None:
    """Without the daemon, a search whose GNN trains in the background (kNN answers) waits for that training
    before the process exits: exit 0, the checkpoint stored, nothing aborted."""
    home = tmp_path / "home"
    tiny = {"gnn_members": 1, "gnn_steps": 20}  # what is tested is the process's lifecycle, not the GNN
    with EmbeddedCluster(home, import_builtins=False, **tiny) as cluster:
        cluster.client.import_library(synth_bundle)
    plain = {
        "MODSNET_DAEMON": "0",
        "MODSNET_TRAIN_INLINE_LIMIT": "1",  # every first training in the background
        "MODSNET_GNN_MEMBERS": "1",
        "MODSNET_GNN_STEPS": "20",
    }
    searched = modsnet("search", str(EXAMPLE), "--json", home=home, **plain)
    assert searched.returncode == 0, searched.stderr
    assert json.loads(searched.stdout)["estimator"].startswith("knn"), "the stand-in answered"
    assert "the GNN of synth is trained and checkpointed" in searched.stderr
    assert "terminate called" not in searched.stderr
    assert not (home / daemon.STATE_FILE).exists(), "MODSNET_DAEMON=0 starts no daemon"
    with EmbeddedCluster(home, import_builtins=False, **tiny) as cluster:
        assert cluster.client.estimator_info("synth").origin == "checkpoint"
