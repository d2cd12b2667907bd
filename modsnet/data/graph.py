"""Plain records of the knowledge graph, shared by the knowledge store and the recommender (no grpc)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROVENANCES = ("imported", "feedback", "probe")


@dataclass(frozen=True)
class LibraryInfo:
    name: str
    meta: dict[str, Any]  # library.yaml content
    models: int
    datasets: int
    interactions: int
    graph_version: int
    bundle_blob_id: str
    imported_unix: float


@dataclass(frozen=True)
class Cost:
    train_seconds: float = 0.0
    inference_seconds: float = 0.0
    memory_bytes: float = 0.0


@dataclass(frozen=True)
class ModelNode:
    library: str
    model_id: str
    metadata: dict[str, str]
    cost: Cost = Cost()
    interactions: int = 0
    artifact_blob_id: str = ""  # storage blob of its runnable file (metadata column `artifact`), if any


@dataclass(frozen=True)
class DatasetNode:
    library: str
    dataset_id: str
    metadata: dict[str, str]
    features: dict[str, float] = field(default_factory=dict)
    feature_set: str = ""
    fingerprint: str = ""
    interactions: int = 0


@dataclass(frozen=True)
class InteractionRecord:
    model_id: str
    dataset_id: str
    score: float
    cost: Cost = Cost()
    provenance: str = "imported"


@dataclass(frozen=True)
class SimilarityRecord:
    dataset_a: str
    dataset_b: str
    distance: float


@dataclass(frozen=True)
class Snapshot:
    """One library's graph, consistent at one graph version."""

    library: LibraryInfo
    models: list[ModelNode]
    datasets: list[DatasetNode]
    interactions: list[InteractionRecord]
    similarities: list[SimilarityRecord]

    @property
    def graph_version(self) -> int:
        return self.library.graph_version


@dataclass(frozen=True)
class QueryRecord:
    query_id: str
    library: str
    fingerprint: str
    filename: str
    feature_set: str
    features: dict[str, float]
    modality: str
    answer_model_ids: list[str]
    graph_version: int
    logged_unix: float = 0.0
