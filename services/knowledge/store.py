"""The knowledge store interface: what every backend (SQLite file, Redis) must do, all-or-nothing."""

from __future__ import annotations

import abc

from modsnet.data.bundle import Bundle
from modsnet.data.graph import DatasetNode, InteractionRecord, LibraryInfo, ModelNode, QueryRecord, Snapshot


class KnowledgeStore(abc.ABC):
    """Every write is atomic: readers see the library wholly before or wholly after it."""

    @abc.abstractmethod
    def import_bundle(
        self, bundle: Bundle, *, blob_id: str, replace: bool, artifacts: dict[str, str]
    ) -> tuple[LibraryInfo, bool]:
        """Store a validated bundle as library `bundle.name`; returns (info, unchanged).

        `artifacts` maps artifact paths to storage blob ids. Raises AlreadyExists when the name is taken
        by a different bundle and `replace` is false. Re-importing the same blob is a no-op.
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
        self, library: str, new_datasets: list[DatasetNode], interactions: list[InteractionRecord]
    ) -> tuple[int, int]:
        """Add dataset nodes and records in one transaction; returns (graph_version, added)."""

    @abc.abstractmethod
    def snapshot(self, library: str) -> Snapshot: ...

    @abc.abstractmethod
    def graph_version(self, library: str) -> int: ...

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
