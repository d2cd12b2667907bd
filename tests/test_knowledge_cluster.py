"""The Redis store on a real three-node Redis Cluster: how its keys are slotted (the conformance suite in
test_knowledge_store.py runs against the same cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest
from knowledge_bundles import make_bundle
from redis_server import RedisCluster, redis_cluster, redis_cluster_url  # noqa: F401 - fixtures used by name

from modsnet.data.graph import QueryRecord
from modsnet.runtime.errors import Unavailable
from services.knowledge.backends.redis import RedisKnowledgeStore
from services.knowledge.config import KnowledgeConfig
from services.knowledge.core import open_store

pytestmark = pytest.mark.integration


def _keys_by_node(cluster: RedisCluster) -> dict[int, set[str]]:
    found = {}
    for server in cluster.servers:
        with server.client() as client:
            found[server.port] = set(client.scan_iter(count=1000))
    return found


def test_a_librarys_keys_share_one_slot_and_libraries_spread_over_the_nodes(
    redis_cluster: RedisCluster,  # noqa: F811 - the fixture
    redis_cluster_url: str,  # noqa: F811 - the fixture
) -> None:
    store = RedisKnowledgeStore(redis_cluster_url)
    assert store.cluster
    names = [f"lib{k}" for k in range(8)]
    for k, name in enumerate(names):
        store.import_bundle(
            make_bundle(name, interactions=40, seed=k), blob_id=f"{k:064d}", replace=False, artifacts={}
        )
        store.add_interactions(name, [], [store.snapshot(name).interactions[0]], request_id=f"r{k}")
    store.log_query(QueryRecord("q1", "lib0", "f" * 64, "x.csv", "tabular/v1", {"a": 1.0}, "tabular", ["m0"], 1))
    store.delete_library("lib7")  # retired keys keep their slot until they expire
    by_node = _keys_by_node(redis_cluster)
    client = redis_cluster.client()
    homes = {}
    for name in names:
        tag = f"{{lib:{name}}}"
        slots = {client.keyslot(key) for keys in by_node.values() for key in keys if tag in key}
        nodes = {port for port, keys in by_node.items() if any(tag in key for key in keys)}
        assert len(slots) == 1 and len(nodes) == 1, (name, slots, nodes)
        homes[name] = nodes.pop()
    assert len(set(homes.values())) >= 2  # eight libraries do not all hash to one of three nodes
    query_slots = {client.keyslot(key) for keys in by_node.values() for key in keys if "{queries}" in key}
    assert len(query_slots) == 1
    # Everything reads back through the cluster client as it went in.
    assert [lib.name for lib in store.list_libraries()] == names[:-1]
    assert store.list_queries("lib0")[0].query_id == "q1"
    assert store.get_library("lib3").interactions == 41
    store.close()
    client.close()


def test_the_config_takes_a_cluster_url_and_a_dead_cluster_is_unavailable(
    tmp_path: Path,
    redis_cluster_url: str,  # noqa: F811 - the fixture
) -> None:
    config = KnowledgeConfig(
        home=tmp_path, storage_addr="127.0.0.1:1", knowledge_backend="redis", redis_url=redis_cluster_url
    )
    store = open_store(config)
    assert isinstance(store, RedisKnowledgeStore) and store.cluster
    store.check()
    store.close()
    with pytest.raises(Unavailable, match="cluster"):
        RedisKnowledgeStore("redis+cluster://127.0.0.1:1/0", socket_timeout=1)
