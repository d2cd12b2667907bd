"""The knowledge store interface: what every backend (SQLite file, Redis) must do, all-or-nothing."""

from __future__ import annotations

import abc

from modsnet.data.bundle import Bundle
from modsnet.data.graph import (
    AuditEntry,
    DatasetNode,
    GraphDelta,
    InteractionRecord,
    LibraryInfo,
    ModelNode,
    QueryRecord,
    Snapshot,
)


class KnowledgeStore(abc.ABC):
    """Every write is atomic: readers see the library wholly before or wholly after it."""

    @abc.abstractmethod
    def import_bundle(
        self, bundle: Bundle, *, blob_id: str, replace: bool, artifacts: dict[str, str], request_id: str = ""
    ) -> tuple[LibraryInfo, bool]:
        """Store a validated bundle as library `bundle.name`; returns (info, unchanged).

        `artifacts` maps artifact paths to storage blob ids. Raises AlreadyExists when the name is taken
        by a different bundle and `replace` is false. Re-importing the same blob is a no-op. A `request_id`
        is remembered with the import as request `import:REQUEST_ID` (see `request_records`), so that a
        retry can tell its own earlier success from someone else's.
        """

    @abc.abstractmethod
    def export_bundle(self, name: str) -> tuple[Bundle, dict[str, str]]:
        """The library as a bundle (artifact contents left empty) and its artifact path -> blob id."""

    @abc.abstractmethod
    def delete_library(self, name: str) -> None: ...

    @abc.abstractmethod
    def list_libraries(self) -> list[LibraryInfo]: ...

    @abc.abstractmethod
    def get_library(self, name: str) -> LibraryInfo:
        """NotFound for an unknown library."""

    @abc.abstractmethod
    def get_model(self, library: str, model_id: str) -> ModelNode: ...

    @abc.abstractmethod
    def artifact_blob(self, library: str, path: str) -> str:
        """Storage blob id of the library's artifact at `path` (under artifacts/); NotFound if absent."""

    @abc.abstractmethod
    def get_dataset(self, library: str, dataset_id: str) -> DatasetNode: ...

    @abc.abstractmethod
    def find_dataset(self, fingerprint: str, library: str = "") -> DatasetNode:
        """The dataset node whose file hashes to `fingerprint`; NotFound otherwise."""

    @abc.abstractmethod
    def add_interactions(
        self,
        library: str,
        new_datasets: list[DatasetNode],
        interactions: list[InteractionRecord],
        request_id: str = "",
    ) -> tuple[int, int]:
        """Add dataset nodes and records in one transaction; returns (graph_version, added).

        Every record is checked (`check_interaction`, known model and dataset) before anything is written.
        With a `request_id` that already stored records in this library (a retry), nothing is written and
        the answer is (the current graph version, how many records that request stored).
        """

    @abc.abstractmethod
    def request_records(self, library: str, request_id: str) -> tuple[list[InteractionRecord], str]:
        """The records a request stored (quarantine cleared once confirmed) and its state: "" when no request
        of that id stored any, else "applied", "confirmed" or "retracted"."""

    @abc.abstractmethod
    def retract(self, library: str, request_id: str, principal: str, note: str = "") -> tuple[int, int]:
        """Remove the records of a request, audited, in one transaction; returns (graph_version, removed).

        NotFound for a request that stored nothing here; retracting again removes nothing (0) and writes nothing.
        """

    @abc.abstractmethod
    def confirm(self, library: str, request_id: str, principal: str, note: str = "") -> tuple[int, int]:
        """Release a request's quarantined records to learning, audited; returns (graph_version, released).

        NotFound for an unknown or retracted request; a request with nothing quarantined releases 0, writes nothing.
        """

    @abc.abstractmethod
    def audit_log(self, library: str, limit: int = 100) -> list[AuditEntry]:
        """The newest `limit` audit entries of `library`, newest first (they outlive the library)."""

    @abc.abstractmethod
    def snapshot(self, library: str) -> Snapshot:
        """The graph estimators learn from: quarantined records are left out (they are still exported)."""

    def delta(self, library: str, since_version: int) -> GraphDelta | None:
        """What the graph gained since `since_version` (see `GraphDelta`), consistent at one graph version, or
        None when that is not only added records and dataset nodes (a retraction, a confirmation, a re-import
        since then; a version this store cannot place): the caller then reads the whole `snapshot`. NotFound
        for an unknown library. A store that keeps no history answers None."""
        self.get_library(library)  # NotFound as the other reads
        return None

    @abc.abstractmethod
    def graph_version(self, library: str) -> int: ...

    def graph_head(self, library: str) -> tuple[int, str, float]:
        """(graph version, bundle blob id, import time) of a library, NotFound for an unknown one: what every
        Recommend asks, so a store where the counts of `get_library` cost a scan answers it without them."""
        info = self.get_library(library)
        return info.graph_version, info.bundle_blob_id, info.imported_unix

    @abc.abstractmethod
    def log_query(self, record: QueryRecord) -> None: ...

    @abc.abstractmethod
    def get_query(self, query_id: str) -> QueryRecord: ...

    @abc.abstractmethod
    def list_queries(self, library: str = "", limit: int = 100) -> list[QueryRecord]:
        """The newest `limit` logged queries (of `library`, or of all), newest first; ties by query id, descending."""

    @abc.abstractmethod
    def purge_queries(self, older_than_unix: float | None = None) -> int:
        """Forget the queries logged before `older_than_unix` (None: all); returns how many were removed."""

    @abc.abstractmethod
    def check(self) -> None:
        """Raise Unavailable when the backend cannot be used."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
