"""Knowledge logic with no grpc: bundle import/export through storage, graph reads and writes, query log."""

from __future__ import annotations

import dataclasses
import time

from modsnet.data.bundle import pack_bundle, read_bundle
from modsnet.data.graph import (
    PROVENANCES,
    DatasetNode,
    InteractionRecord,
    LibraryInfo,
    ModelNode,
    QueryRecord,
    Snapshot,
)
from modsnet.data.graph_build import metadata_warnings
from modsnet.runtime.errors import InvalidArgument, ModsnetError
from modsnet.runtime.stubs import StorageClient

from .config import KnowledgeConfig
from .metrics import IMPORT_SECONDS, IMPORTS, INTERACTIONS_ADDED, QUERIES_LOGGED
from .store import KnowledgeStore


def open_store(config: KnowledgeConfig) -> KnowledgeStore:
    if config.knowledge_backend == "redis":
        from .backends.redis import RedisKnowledgeStore  # the redis client is an optional extra

        assert config.redis_url
        return RedisKnowledgeStore(
            config.redis_url,
            password=config.redis_password,
            allow_no_persistence=config.redis_allow_no_persistence,
        )
    from .backends.sqlite import SqliteKnowledgeStore

    return SqliteKnowledgeStore(config.home / "knowledge.sqlite3")


@dataclasses.dataclass(frozen=True)
class ImportResult:
    """What an import did: the library, whether the bundle was already there, and its metadata warnings."""

    library: LibraryInfo
    unchanged: bool
    warnings: list[str]  # the junk columns of models.csv / datasets.csv, one line each (`metadata_warnings`)


class KnowledgeCore:
    def __init__(self, store: KnowledgeStore, storage: StorageClient):
        self.store = store
        self.storage = storage

    def import_library(self, blob_id: str, *, replace: bool) -> ImportResult:
        """Fetch a bundle from storage, validate it whole, then store it in one atomic write.

        Junk metadata columns (an index, ids, ...) are stored and exported like any other; the estimators
        ignore them, and the result names them so that whoever imports knows.
        """
        if not blob_id:
            raise InvalidArgument("blob_id is required: put the bundle in storage first")
        start = time.perf_counter()
        try:
            data = self.storage.get_bytes(blob_id)
            bundle = read_bundle(data, label=f"bundle {blob_id[:12]}")
            # Artifacts go to storage first: content-addressed, so a failed import leaves only
            # unreferenced blobs behind, never a half-visible library.
            artifacts = {
                path: self.storage.put_bytes(content, name=path).blob_id for path, content in bundle.artifacts.items()
            }
            info, unchanged = self.store.import_bundle(bundle, blob_id=blob_id, replace=replace, artifacts=artifacts)
        except ModsnetError as exc:
            IMPORTS.labels(exc.code.lower()).inc()
            raise
        IMPORTS.labels("unchanged" if unchanged else "imported").inc()
        IMPORT_SECONDS.observe(time.perf_counter() - start)
        return ImportResult(info, unchanged, metadata_warnings(bundle))

    def export_library(self, name: str) -> tuple[str, LibraryInfo]:
        bundle, artifacts = self.store.export_bundle(name)
        bundle.artifacts = {path: self.storage.get_bytes(blob) for path, blob in artifacts.items()}
        info = self.storage.put_bytes(pack_bundle(bundle), name=f"{name}.tar.gz")
        return info.blob_id, self.store.get_library(name)

    def list_libraries(self) -> list[LibraryInfo]:
        return self.store.list_libraries()

    def get_model(self, library: str, model_id: str) -> ModelNode:
        node = self.store.get_model(library, model_id)
        path = node.metadata.get("artifact", "")
        if path:
            node = dataclasses.replace(node, artifact_blob_id=self.store.artifact_blob(library, path))
        return node

    def get_dataset(self, library: str, dataset_id: str) -> DatasetNode:
        return self.store.get_dataset(library, dataset_id)

    def find_dataset(self, fingerprint: str, library: str = "") -> DatasetNode:
        return self.store.find_dataset(fingerprint, library)

    def add_interactions(
        self, library: str, new_datasets: list[DatasetNode], interactions: list[InteractionRecord]
    ) -> tuple[int, int]:
        for i, rec in enumerate(interactions):
            if rec.provenance not in PROVENANCES:
                raise InvalidArgument(
                    f"interaction {i}: provenance {rec.provenance!r} must be one of {', '.join(PROVENANCES)}"
                )
            if rec.score != rec.score or rec.score in (float("inf"), float("-inf")):
                raise InvalidArgument(f"interaction {i}: score must be a finite number")
        if not interactions and not new_datasets:
            raise InvalidArgument("nothing to add: no interactions and no datasets")
        version, added = self.store.add_interactions(library, new_datasets, interactions)
        for rec in interactions:
            INTERACTIONS_ADDED.labels(rec.provenance).inc()
        return version, added

    def snapshot(self, library: str) -> Snapshot:
        return self.store.snapshot(library)

    def graph_version(self, library: str) -> int:
        return self.store.graph_version(library)

    def log_query(self, record: QueryRecord) -> None:
        if not record.query_id:
            raise InvalidArgument("query_id is required")
        self.store.get_library(record.library)
        self.store.log_query(record)
        QUERIES_LOGGED.inc()

    def get_query(self, query_id: str) -> QueryRecord:
        return self.store.get_query(query_id)

    def delete_library(self, name: str) -> None:
        self.store.delete_library(name)

    def list_queries(self, library: str, limit: int) -> list[QueryRecord]:
        if not 1 <= limit <= 10_000:
            raise InvalidArgument(f"limit must be between 1 and 10000, not {limit}")
        return self.store.list_queries(library, limit)

    def purge_queries(self, older_than_unix: float | None) -> int:
        return self.store.purge_queries(older_than_unix)

    def check(self) -> None:
        self.store.check()

    def close(self) -> None:
        self.store.close()
        self.storage.close()
