"""Knowledge logic with no grpc: bundle import/export through storage, graph reads and writes, query log."""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from modsnet.data.bundle import PROBE_SCALE_KEY, check_dataset_rows, pack_bundle, read_bundle, stored_probe_records
from modsnet.data.graph import (
    AuditEntry,
    Cost,
    DatasetNode,
    GraphDelta,
    InteractionRecord,
    LibraryInfo,
    ModelNode,
    QueryRecord,
    Snapshot,
    check_id,
    check_interaction,
)
from modsnet.data.graph_build import NODE_COLUMNS, dataset_row, metadata_warnings
from modsnet.runtime.errors import InvalidArgument, ModsnetError, NotFound
from modsnet.runtime.stubs import StorageClient

from .config import KnowledgeConfig
from .metrics import IMPORT_SECONDS, IMPORTS, INTERACTIONS_ADDED, QUERIES_LOGGED
from .plausibility import ScoreSummary
from .store import KnowledgeStore

log = logging.getLogger(__name__)

# How long a library's score summary is reused: a summary of thousands of records barely moves with a few
# more, and building one reads the whole snapshot. A re-import builds a new one at once.
SUMMARY_TTL_S = 60.0
MAX_REQUEST_ID = 128  # characters of a client's request id (a uuid has 36)


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


def _check_request_id(request_id: str) -> None:
    if len(request_id) > MAX_REQUEST_ID:
        raise InvalidArgument(f"request_id: {len(request_id)} characters, at most {MAX_REQUEST_ID} (a uuid is 36)")


@dataclasses.dataclass(frozen=True)
class AddResult:
    """What AddInteractions did: the graph version after it, how many records the request stored, under which
    request id, and per record why it is quarantined ("" when learned from). A retry answers the same."""

    graph_version: int
    added: int
    request_id: str
    quarantine: list[str]


@dataclasses.dataclass(frozen=True)
class FeedbackResult:
    """What a feedback became: the dataset it is attached to, the graph version after it, the request id it is
    stored under, and why it is quarantined ("" when it is learned from)."""

    dataset_id: str
    graph_version: int
    request_id: str
    quarantine: str


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
        self._summaries: dict[str, tuple[tuple[str, float], float, ScoreSummary]] = {}
        self._summaries_lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}  # per library: one build at a time, the others wait for it
        self._renewing: set[str] = set()  # libraries whose summary is being (re)built in the background
        # One thread for those builds: one store connection, and `close` waits for it before closing the store
        # (SQLite must not be closed under a query running on another thread).
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="knowledge-summary")
        self._closing = False

    def import_library(self, blob_id: str, *, replace: bool, request_id: str = "") -> ImportResult:
        """Fetch a bundle from storage, validate it whole, then store it in one atomic write.

        Junk metadata columns (an index, ids, ...) are stored and exported like any other; the estimators
        ignore them, and the result names them so that whoever imports knows.
        """
        if not blob_id:
            raise InvalidArgument("blob_id is required: put the bundle in storage first")
        _check_request_id(request_id)
        start = time.perf_counter()
        try:
            data = self.storage.get_bytes(blob_id)
            bundle = read_bundle(data, label=f"bundle {blob_id[:12]}")
            # Artifacts go to storage first: content-addressed, so a failed import leaves only
            # unreferenced blobs behind, never a half-visible library.
            artifacts = {
                path: self.storage.put_bytes(content, name=path).blob_id for path, content in bundle.artifacts.items()
            }
            info, unchanged = self.store.import_bundle(
                bundle, blob_id=blob_id, replace=replace, artifacts=artifacts, request_id=request_id
            )
            if unchanged and request_id and self.store.request_records(info.name, f"import:{request_id}")[1]:
                unchanged = False  # a retry of the import that stored this bundle: the same answer as then
        except ModsnetError as exc:
            IMPORTS.labels(exc.code.lower()).inc()
            raise
        IMPORTS.labels("unchanged" if unchanged else "imported").inc()
        IMPORT_SECONDS.observe(time.perf_counter() - start)
        return ImportResult(info, unchanged, metadata_warnings(bundle))

    def export_library(self, name: str) -> tuple[str, LibraryInfo]:
        bundle, artifacts = self.store.export_bundle(name)
        bundle.artifacts = {path: self.storage.get_bytes(blob) for path, blob in artifacts.items()}
        if PROBE_SCALE_KEY in bundle.meta:
            # The stores keep the scale the probe records taught (library metadata), not the rows: those come
            # back from the import's own bundle, so an export (and `modsnet eval` on it) has them.
            _, blob_id, _ = self.store.graph_head(name)
            try:
                imported = self.storage.get_bytes(blob_id)
            except NotFound:  # the import's bundle is gone from storage: the export keeps the learned scale alone
                imported = None
            if imported is not None:
                bundle.probe_records = stored_probe_records(imported, label=f"bundle {blob_id[:12]}")
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

    def _summary(self, library: str) -> ScoreSummary:
        """The library's score summary. A first one (or one after a re-import) is built on the call, once however
        many feedback reports arrive together; one older than SUMMARY_TTL_S still answers while a background
        thread builds its successor, so a feedback never waits for a snapshot of the library after the first."""
        _, blob_id, imported = self.store.graph_head(library)
        key = (blob_id, imported)
        with self._summaries_lock:
            cached = self._summaries.get(library)
            building = self._building.setdefault(library, threading.Lock())
            if cached is not None and cached[0] == key:
                if time.monotonic() - cached[1] >= SUMMARY_TTL_S:
                    self._renew_in_background(library, key)
                return cached[2]
        with building:
            with self._summaries_lock:
                cached = self._summaries.get(library)
            if cached is not None and cached[0] == key:  # built while this call waited
                return cached[2]
            return self._build_summary(library, key)

    def _build_summary(self, library: str, key: tuple[str, float]) -> ScoreSummary:
        summary = ScoreSummary.of(self.store.snapshot(library))
        with self._summaries_lock:
            self._summaries[library] = (key, time.monotonic(), summary)
        return summary

    def _renew_in_background(self, library: str, key: tuple[str, float]) -> None:
        """Queue a build of the library's summary on the background thread, unless one is queued (under
        `_summaries_lock`)."""
        if self._closing or library in self._renewing:
            return
        self._renewing.add(library)
        self._background.submit(self._renew_summary, library, key)

    def _renew_summary(self, library: str, key: tuple[str, float]) -> None:
        try:
            with self._building[library]:
                with self._summaries_lock:
                    cached = self._summaries.get(library)
                fresh = cached is not None and cached[0] == key and time.monotonic() - cached[1] < SUMMARY_TTL_S
                if not fresh:
                    self._build_summary(library, key)
        except Exception:  # the old summary keeps answering; the next expired call tries again
            log.warning("could not renew the score summary of library %s", library, exc_info=True)
        finally:
            with self._summaries_lock:
                self._renewing.discard(library)

    def add_interactions(
        self,
        library: str,
        new_datasets: list[DatasetNode],
        interactions: list[InteractionRecord],
        request_id: str = "",
    ) -> AddResult:
        """Validate every record, judge each feedback score (`plausibility`), then store all in one write.

        Imported and probe records are the library's own and are not judged; feedback is. With a
        `request_id` already stored, nothing is written and the first answer comes back.
        """
        if not interactions and not new_datasets:
            raise InvalidArgument("nothing to add: no interactions and no datasets")
        _check_request_id(request_id)
        if request_id:
            stored, state = self.store.request_records(library, request_id)
            if state:
                version = self.store.graph_version(library)
                return AddResult(version, len(stored), request_id, [r.quarantine for r in stored])
        for i, node in enumerate(new_datasets):
            check_id(node.dataset_id, f"new dataset {i}: dataset_id")
            reserved = sorted(NODE_COLUMNS & set(node.metadata))
            if reserved:
                named = ", ".join(reserved)
                raise InvalidArgument(f"new dataset {node.dataset_id!r}: metadata may not be named {named}")
        if new_datasets:  # as export will write them: a write that could not be exported is refused
            check_dataset_rows([dataset_row(node) for node in new_datasets], "new datasets")
        for i, rec in enumerate(interactions):
            check_interaction(rec, f"interaction {i}: ")
        if any(rec.provenance == "feedback" for rec in interactions):
            summary = self._summary(library)
            interactions = [
                dataclasses.replace(
                    rec, quarantine=summary.check(rec.score, rec.model_id, rec.dataset_id, f"interaction {i}: ")
                )
                if rec.provenance == "feedback"
                else rec
                for i, rec in enumerate(interactions)
            ]
        request_id = request_id or uuid.uuid4().hex
        version, added = self.store.add_interactions(library, new_datasets, interactions, request_id)
        for rec in interactions:
            INTERACTIONS_ADDED.labels("quarantined" if rec.quarantine else rec.provenance).inc()
        return AddResult(version, added, request_id, [rec.quarantine for rec in interactions])

    def add_feedback(self, query_id: str, model_id: str, score: float, cost: Cost, request_id: str) -> FeedbackResult:
        """A measured score of `model_id` on the dataset of logged search `query_id`: the library's dataset with
        the search's fingerprint, else a new dataset node made from the logged search, then `add_interactions`.

        One call, where the query service made three (GetQuery, FindDataset, AddInteractions): under load each
        call between processes waits for a core and a GIL on both sides, and the feedback's latency was theirs.
        """
        if not query_id or not model_id:
            raise InvalidArgument("query_id and model_id are required")
        query = self.store.get_query(query_id)
        try:
            dataset_id = self.store.find_dataset(query.fingerprint, query.library).dataset_id
            new = []
        except NotFound:
            dataset_id = f"query-{query.fingerprint[:16]}"
            new = [
                DatasetNode(
                    library=query.library,
                    dataset_id=dataset_id,
                    metadata={"origin": "feedback", "filename": query.filename},
                    features=query.features,
                    feature_set=query.feature_set,
                    fingerprint=query.fingerprint,
                )
            ]
        record = InteractionRecord(model_id, dataset_id, score, cost, "feedback")
        result = self.add_interactions(query.library, new, [record], request_id or uuid.uuid4().hex)
        return FeedbackResult(
            dataset_id, result.graph_version, result.request_id, result.quarantine[0] if result.quarantine else ""
        )

    def retract(self, library: str, request_id: str, principal: str, note: str = "") -> tuple[int, int]:
        if not request_id:
            raise InvalidArgument("request_id is required: the id of the write whose records to retract")
        return self.store.retract(library, request_id, principal or "anonymous", note)

    def confirm(self, library: str, request_id: str, principal: str, note: str = "") -> tuple[int, int]:
        if not request_id:
            raise InvalidArgument("request_id is required: the id of the write whose records to confirm")
        return self.store.confirm(library, request_id, principal or "anonymous", note)

    def audit_log(self, library: str, limit: int) -> list[AuditEntry]:
        if not library:
            raise InvalidArgument("library is required")
        if not 1 <= limit <= 10_000:
            raise InvalidArgument(f"limit must be between 1 and 10000, not {limit}")
        return self.store.audit_log(library, limit)

    def snapshot(self, library: str) -> Snapshot:
        return self.store.snapshot(library)

    def delta(self, library: str, since_version: int) -> GraphDelta | None:
        """What the graph gained since `since_version` (a version the caller holds the whole graph of), or None
        when that is not only added records and dataset nodes: the caller then needs the whole `snapshot`."""
        if not library:
            raise InvalidArgument("library is required")
        if since_version < 1:
            raise InvalidArgument(f"since_version: {since_version} is no graph version (versions start at 1)")
        return self.store.delta(library, since_version)

    def graph_version(self, library: str) -> int:
        return self.store.graph_version(library)

    def graph_head(self, library: str) -> tuple[int, str]:
        """The graph version and the bundle blob of the import it is a version of, read in one go."""
        version, blob_id, _ = self.store.graph_head(library)
        return version, blob_id

    def log_query(self, record: QueryRecord) -> None:
        if not record.query_id:
            raise InvalidArgument("query_id is required")
        _, blob_id, imported = self.store.graph_head(record.library)  # NotFound for an unknown library
        self.store.log_query(record)
        QUERIES_LOGGED.inc()
        self._prepare_summary(record.library, (blob_id, imported))

    def _prepare_summary(self, library: str, key: tuple[str, float]) -> None:
        """Build the library's score summary in the background if it has none yet: feedback follows searches, so
        the first feedback after a start finds it ready instead of waiting for a snapshot."""
        with self._summaries_lock:
            cached = self._summaries.get(library)
            self._building.setdefault(library, threading.Lock())
            if cached is None or cached[0] != key:
                self._renew_in_background(library, key)

    def get_query(self, query_id: str) -> QueryRecord:
        return self.store.get_query(query_id)

    def delete_library(self, name: str) -> None:
        self.store.delete_library(name)

    def list_queries(self, library: str, limit: int) -> list[QueryRecord]:
        if not 1 <= limit <= 10_000:
            raise InvalidArgument(f"limit must be between 1 and 10000, not {limit}")
        return self.store.list_queries(library, limit)

    def purge_queries(self, older_than_unix: float | None) -> int:
        if older_than_unix is not None and not (math.isfinite(older_than_unix) and older_than_unix >= 0):
            raise InvalidArgument(f"older_than_unix: {older_than_unix!r} must be a finite Unix time >= 0 (0: all)")
        return self.store.purge_queries(older_than_unix)

    def check(self) -> None:
        self.store.check()

    def close(self) -> None:
        with self._summaries_lock:
            self._closing = True
        self._background.shutdown(wait=True, cancel_futures=True)  # a build under way finishes first
        self.store.close()
        self.storage.close()
