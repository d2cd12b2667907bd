"""Typed clients of the internal services (storage, knowledge, recommender), used by the services
themselves and by the SDK's library administration.

Each wraps `ServiceClient` (deadlines, retries of reads on UNAVAILABLE, status -> domain error) and speaks
in domain records (`modsnet.data.graph`) where the service deals in them, so a core that calls another
service never builds a message. The query service's own client is the SDK (`modsnet.client`).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from typing import IO

from modsnet.data.graph import (
    AuditEntry,
    Constraints,
    Cost,
    DatasetNode,
    GraphDelta,
    InteractionColumns,
    InteractionRecord,
    LibraryInfo,
    ModelNode,
    Objective,
    ProbeChoice,
    ProbeRecord,
    QueryRecord,
    RankedModel,
    Ranking,
    SimilarityRecord,
    Snapshot,
)
from modsnet.runtime.auth import ClientCredentials
from modsnet.runtime.channels import ServiceClient, chunked
from modsnet.runtime.convert import (
    audit_from_pb,
    constraints_to_pb,
    cost_to_pb,
    dataset_from_pb,
    dataset_to_pb,
    features_to_pb,
    interaction_to_pb,
    interactions_from_columns,
    library_from_pb,
    log_query_to_pb,
    model_from_pb,
    objective_to_pb,
    probe_choice_from_pb,
    probe_to_pb,
    query_from_pb,
    ranking_from_pb,
    similarity_from_pb,
)
from modsnet.runtime.errors import DataLoss
from modsnet.v1 import common_pb2 as pb
from modsnet.v1 import knowledge_pb2 as kpb
from modsnet.v1 import knowledge_pb2_grpc, recommender_pb2_grpc, storage_pb2_grpc
from modsnet.v1 import recommender_pb2 as rpb
from modsnet.v1 import storage_pb2 as spb

CHUNK = 1 << 20


def iter_file(handle: IO[bytes], chunk: int = CHUNK) -> Iterator[bytes]:
    while piece := handle.read(chunk):
        yield piece


# Models a search probes on the user's data unless told otherwise (each costs a bounded real measurement): the
# default of the SDK, the CLI and the HTTP API alike, and the budget `modsnet eval --with-probes` simulates.
DEFAULT_PROBES = 5

# Storage pointer to a library's latest `modsnet eval` report (a JSON blob), which the web app's evaluation view reads.
EVALUATION_POINTER = "evaluation/{library}"


class StorageClient(ServiceClient):
    def __init__(self, target: str, *, timeout: float = 300.0, credentials: ClientCredentials | None = None):
        super().__init__(
            "storage",
            target,
            storage_pb2_grpc.StorageStub,
            full_service="modsnet.v1.Storage",
            retry_methods=("StatBlob", "GetPointer", "GetBlob"),
            timeout=timeout,
            credentials=credentials,
        )

    def put_chunks(
        self, chunks: Iterable[bytes], *, expected_sha256: str = "", size_hint: int = 0, name: str = ""
    ) -> spb.BlobInfo:
        header = spb.PutBlobRequest(
            header=spb.PutBlobHeader(expected_sha256=expected_sha256, size_hint=size_hint, name=name)
        )
        return self.call("PutBlob", chunked(header, chunks, lambda c: spb.PutBlobRequest(chunk=c)))

    def put_bytes(self, data: bytes, *, name: str = "") -> spb.BlobInfo:
        digest = hashlib.sha256(data).hexdigest()
        view = io.BytesIO(data)
        return self.put_chunks(iter_file(view), expected_sha256=digest, size_hint=len(data), name=name)

    def get_chunks(self, blob_id: str, offset: int = 0) -> Iterator[bytes]:
        for message in self.stream("GetBlob", spb.GetBlobRequest(blob_id=blob_id, offset=offset)):
            yield message.data

    def get_checked_chunks(self, blob_id: str) -> Iterator[bytes]:
        """The blob's chunks as they arrive, hashed on the way: DataLoss after the last one if they do not
        add up to its sha256 (its id), so a relay that streams them on still learns of a corrupt blob."""
        digest = hashlib.sha256()
        for chunk in self.get_chunks(blob_id):
            digest.update(chunk)
            yield chunk
        if digest.hexdigest() != blob_id:
            raise DataLoss(f"blob {blob_id} arrived corrupt from {self.what} (hashes to {digest.hexdigest()})")

    def get_bytes(self, blob_id: str) -> bytes:
        """The whole blob, its sha256 checked here too, before any caller parses it."""
        return b"".join(self.get_checked_chunks(blob_id))

    def stat(self, blob_id: str) -> spb.BlobInfo:
        return self.call("StatBlob", spb.StatBlobRequest(blob_id=blob_id))

    def size(self, blob_id: str) -> int:
        """Bytes of a stored blob; NotFound if absent."""
        return int(self.stat(blob_id).size)

    def delete(self, blob_id: str) -> bool:
        return bool(self.call("DeleteBlob", spb.DeleteBlobRequest(blob_id=blob_id)).deleted)

    def set_pointer(self, name: str, blob_id: str) -> None:
        self.call("SetPointer", spb.SetPointerRequest(name=name, blob_id=blob_id))

    def get_pointer(self, name: str) -> str:
        return str(self.call("GetPointer", spb.GetPointerRequest(name=name)).blob_id)


class KnowledgeClient(ServiceClient):
    def __init__(self, target: str, *, timeout: float = 60.0, credentials: ClientCredentials | None = None):
        super().__init__(
            "knowledge",
            target,
            knowledge_pb2_grpc.KnowledgeStub,
            full_service="modsnet.v1.Knowledge",
            retry_methods=(
                "ListLibraries",
                "GetModel",
                "GetDataset",
                "FindDataset",
                "GraphSnapshot",
                "GraphVersion",
                "GetQuery",
                "ExportLibrary",
                "ListQueries",
            ),
            timeout=timeout,
            credentials=credentials,
        )

    def import_library(self, blob_id: str, *, replace: bool = False, request_id: str = "") -> kpb.ImportLibraryResponse:
        request = kpb.ImportLibraryRequest(blob_id=blob_id, replace=replace, request_id=request_id)
        return self.call("ImportLibrary", request, timeout=600)

    def export_library(self, name: str) -> kpb.ExportLibraryResponse:
        return self.call("ExportLibrary", kpb.ExportLibraryRequest(name=name), timeout=600)

    def list_libraries(self) -> list[LibraryInfo]:
        return [library_from_pb(lib) for lib in self.call("ListLibraries", pb.ListLibrariesRequest()).libraries]

    def list_libraries_pb(self) -> pb.ListLibrariesResponse:
        return self.call("ListLibraries", pb.ListLibrariesRequest())

    def get_model(self, library: str, model_id: str) -> ModelNode:
        return model_from_pb(self.call("GetModel", kpb.GetModelRequest(library=library, model_id=model_id)))

    def get_dataset(self, library: str, dataset_id: str) -> DatasetNode:
        return dataset_from_pb(self.call("GetDataset", kpb.GetDatasetRequest(library=library, dataset_id=dataset_id)))

    def find_dataset(self, fingerprint: str, library: str = "") -> DatasetNode:
        return dataset_from_pb(
            self.call("FindDataset", kpb.FindDatasetRequest(fingerprint=fingerprint, library=library))
        )

    def add_interactions(
        self,
        library: str,
        new_datasets: list[DatasetNode],
        interactions: list[InteractionRecord],
        request_id: str = "",
    ) -> kpb.AddInteractionsResponse:
        return self.call(
            "AddInteractions",
            kpb.AddInteractionsRequest(
                library=library,
                new_datasets=[dataset_to_pb(d) for d in new_datasets],
                interactions=[interaction_to_pb(i) for i in interactions],
                request_id=request_id,
            ),
        )

    def add_feedback(
        self, query_id: str, model_id: str, score: float, cost: Cost, request_id: str
    ) -> kpb.AddFeedbackResponse:
        request = kpb.AddFeedbackRequest(
            query_id=query_id, model_id=model_id, score=score, cost=cost_to_pb(cost), request_id=request_id
        )
        return self.call("AddFeedback", request)

    def retract(self, library: str, request_id: str, note: str = "") -> kpb.DeleteInteractionResponse:
        request = kpb.DeleteInteractionRequest(library=library, request_id=request_id, note=note)
        return self.call("DeleteInteraction", request)

    def confirm(self, library: str, request_id: str, note: str = "") -> kpb.ConfirmInteractionResponse:
        request = kpb.ConfirmInteractionRequest(library=library, request_id=request_id, note=note)
        return self.call("ConfirmInteraction", request)

    def audit_log(self, library: str, limit: int = 100) -> list[AuditEntry]:
        response = self.call("ListAudit", kpb.ListAuditRequest(library=library, limit=limit))
        return [audit_from_pb(e) for e in response.entries]

    def graph_version(self, library: str) -> int:
        return self.graph_head(library)[0]

    def graph_head(self, library: str) -> tuple[int, str]:
        """The library's graph version and the bundle blob of its import (what a re-import changes)."""
        response = self.call("GraphVersion", kpb.GraphVersionRequest(library=library))
        return int(response.graph_version), response.bundle_blob_id

    def snapshot(self, library: str) -> Snapshot:
        graph = self._graph(kpb.GraphSnapshotRequest(library=library))
        if isinstance(graph, GraphDelta):
            raise DataLoss(f"graph snapshot of {library!r}: a change since {graph.since_version} came, not asked for")
        return graph

    def snapshot_since(self, library: str, since_version: int) -> Snapshot | GraphDelta:
        """What the graph gained since `since_version` (a version whose whole graph the caller holds: put it on
        that with `apply_delta`), or the whole graph when the change is more than added records and nodes."""
        graph = self._graph(kpb.GraphSnapshotRequest(library=library, since_version=since_version))
        if isinstance(graph, GraphDelta) and graph.since_version != since_version:
            raise DataLoss(f"graph of {library!r}: the change since {graph.since_version} came for {since_version}")
        return graph

    def _graph(self, request: kpb.GraphSnapshotRequest) -> Snapshot | GraphDelta:
        library = request.library
        info = None
        models: list[ModelNode] = []
        datasets: list[DatasetNode] = []
        parts: list[InteractionColumns] = []
        similarities: list[SimilarityRecord] = []
        version = since = None
        model_ids: list[str] | None = None
        dataset_ids: list[str] | None = None
        for chunk in self.stream("GraphSnapshot", request, timeout=300):
            if version is None:
                version, since = chunk.graph_version, chunk.since_version
            elif chunk.graph_version != version or chunk.since_version != since:
                raise DataLoss(f"graph snapshot of {library!r} mixed versions {version} and {chunk.graph_version}")
            if chunk.HasField("library"):
                info = library_from_pb(chunk.library)
            models.extend(model_from_pb(m) for m in chunk.models)
            datasets.extend(dataset_from_pb(d) for d in chunk.datasets)
            if chunk.HasField("interactions"):
                if model_ids is None:
                    model_ids = [m.model_id for m in models]
                    dataset_ids = [d.dataset_id for d in datasets]
                parts.append(interactions_from_columns(chunk.interactions, model_ids, dataset_ids or []))
            similarities.extend(similarity_from_pb(s) for s in chunk.similarities)
        if info is None:
            raise DataLoss(f"graph snapshot of {library!r} arrived without its library header")
        ids = ([m.model_id for m in models], [d.dataset_id for d in datasets])
        interactions = InteractionColumns.concat(parts) if parts else InteractionColumns.empty(*ids)
        if since:
            return GraphDelta(since, info, models, datasets, interactions)
        return Snapshot(info, models, datasets, interactions, similarities)

    def log_query(self, record: QueryRecord, answer: Iterable[RankedModel]) -> None:
        self.call("LogQuery", log_query_to_pb(record, answer))

    def get_query(self, query_id: str) -> QueryRecord:
        return query_from_pb(self.call("GetQuery", kpb.GetQueryRequest(query_id=query_id)))

    def delete_library(self, name: str) -> None:
        self.call("DeleteLibrary", kpb.DeleteLibraryRequest(name=name))

    def list_queries(self, library: str = "", limit: int = 100) -> list[QueryRecord]:
        response = self.call("ListQueries", kpb.ListQueriesRequest(library=library, limit=limit))
        return [query_from_pb(q) for q in response.queries]

    def purge_queries(self, older_than_unix: float = 0.0) -> int:
        return int(self.call("PurgeQueries", kpb.PurgeQueriesRequest(older_than_unix=older_than_unix)).purged)


class RecommenderClient(ServiceClient):
    def __init__(self, target: str, *, timeout: float = 60.0, credentials: ClientCredentials | None = None):
        super().__init__(
            "recommender",
            target,
            recommender_pb2_grpc.RecommenderStub,
            full_service="modsnet.v1.Recommender",
            retry_methods=("Recommend", "SelectProbes", "EstimatorInfo"),
            timeout=timeout,
            credentials=credentials,
        )

    def recommend(
        self,
        library: str,
        features: dict[str, float],
        *,
        feature_set: str = "",
        modality: str = "",
        k: int,
        constraints: Constraints | None = None,
        probe_budget: int = 0,
        dataset_id: str = "",
        probes: Iterable[ProbeRecord] = (),
        objective: Objective | None = None,
        profile: str = "",
        graph_version: int = 0,
    ) -> Ranking:
        """`graph_version`: the library's version the caller knows (0: none); the answer is at least that new."""
        request = rpb.RecommendRequest(
            library=library,
            features=features_to_pb(feature_set, features, modality),
            k=k,
            constraints=constraints_to_pb(constraints) if constraints is not None else None,
            probe_budget=probe_budget,
            dataset_id=dataset_id,
            probes=[probe_to_pb(p) for p in probes],
            objective=objective_to_pb(objective) if objective is not None else None,
            profile=profile,
            graph_version=graph_version,
        )
        return ranking_from_pb(self.call("Recommend", request))

    def select_probes(
        self,
        library: str,
        features: dict[str, float],
        *,
        feature_set: str = "",
        modality: str = "",
        budget: int,
        dataset_id: str = "",
        measured: Iterable[ProbeRecord] = (),
        tried: Iterable[str] = (),
        graph_version: int = 0,
    ) -> ProbeChoice:
        """The next models worth probing on the query, best first, at most `budget` of them, given the probes
        `measured` on it so far and the models `tried` without a result (`graph_version`: as `recommend`'s)."""
        request = rpb.SelectProbesRequest(
            library=library,
            features=features_to_pb(feature_set, features, modality),
            budget=budget,
            dataset_id=dataset_id,
            measured=[probe_to_pb(p) for p in measured],
            tried=list(tried),
            graph_version=graph_version,
        )
        return probe_choice_from_pb(self.call("SelectProbes", request))

    def train(self, library: str) -> rpb.EstimatorInfoResponse:
        return self.call("Train", rpb.TrainRequest(library=library), timeout=3600)

    def estimator_info(self, library: str) -> rpb.EstimatorInfoResponse:
        return self.call("EstimatorInfo", rpb.EstimatorInfoRequest(library=library))
