"""Knowledge gRPC servicer: protobuf in, core call, protobuf out."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from modsnet.data.graph import (
    DatasetNode,
    InteractionColumns,
    LibraryInfo,
    ModelNode,
    SimilarityRecord,
    interaction_columns_of,
)
from modsnet.runtime.auth import current_principal
from modsnet.runtime.convert import (
    audit_to_pb,
    cost_from_pb,
    dataset_from_pb,
    dataset_to_pb,
    interaction_columns,
    interaction_from_pb,
    library_to_pb,
    log_query_from_pb,
    model_to_pb,
    query_to_pb,
    similarity_to_pb,
)
from modsnet.v1 import common_pb2 as pb
from modsnet.v1 import knowledge_pb2 as kpb
from modsnet.v1 import knowledge_pb2_grpc

from .core import KnowledgeCore

SNAPSHOT_BATCH = 5000  # nodes per streamed chunk: well under the message size limit
INTERACTION_BATCH = 100_000  # columnar records per chunk (about 4 MB)


def principal() -> str:
    """Who is acting, for the audit log: the authenticated caller (or the one a service acts for), else "anonymous"."""
    return current_principal() or "anonymous"


class KnowledgeServicer(knowledge_pb2_grpc.KnowledgeServicer):
    def __init__(self, core: KnowledgeCore):
        self.core = core

    def ImportLibrary(self, request: kpb.ImportLibraryRequest, context: object) -> kpb.ImportLibraryResponse:
        result = self.core.import_library(request.blob_id, replace=request.replace, request_id=request.request_id)
        return kpb.ImportLibraryResponse(
            library=library_to_pb(result.library), unchanged=result.unchanged, warnings=result.warnings
        )

    def ExportLibrary(self, request: kpb.ExportLibraryRequest, context: object) -> kpb.ExportLibraryResponse:
        blob_id, info = self.core.export_library(request.name)
        return kpb.ExportLibraryResponse(blob_id=blob_id, library=library_to_pb(info))

    def ListLibraries(self, request: pb.ListLibrariesRequest, context: object) -> pb.ListLibrariesResponse:
        return pb.ListLibrariesResponse(libraries=[library_to_pb(i) for i in self.core.list_libraries()])

    def GetModel(self, request: kpb.GetModelRequest, context: object) -> pb.Model:
        return model_to_pb(self.core.get_model(request.library, request.model_id))

    def GetDataset(self, request: kpb.GetDatasetRequest, context: object) -> pb.Dataset:
        return dataset_to_pb(self.core.get_dataset(request.library, request.dataset_id))

    def FindDataset(self, request: kpb.FindDatasetRequest, context: object) -> pb.Dataset:
        return dataset_to_pb(self.core.find_dataset(request.fingerprint, request.library))

    def AddInteractions(self, request: kpb.AddInteractionsRequest, context: object) -> kpb.AddInteractionsResponse:
        result = self.core.add_interactions(
            request.library,
            [dataset_from_pb(d) for d in request.new_datasets],
            [interaction_from_pb(i) for i in request.interactions],
            request.request_id,
        )
        return kpb.AddInteractionsResponse(
            graph_version=result.graph_version,
            added=result.added,
            request_id=result.request_id,
            quarantine=result.quarantine,
        )

    def AddFeedback(self, request: kpb.AddFeedbackRequest, context: object) -> kpb.AddFeedbackResponse:
        result = self.core.add_feedback(
            request.query_id, request.model_id, request.score, cost_from_pb(request.cost), request.request_id
        )
        return kpb.AddFeedbackResponse(
            dataset_id=result.dataset_id,
            graph_version=result.graph_version,
            request_id=result.request_id,
            quarantine=result.quarantine,
        )

    def DeleteInteraction(
        self, request: kpb.DeleteInteractionRequest, context: grpc.ServicerContext
    ) -> kpb.DeleteInteractionResponse:
        version, removed = self.core.retract(request.library, request.request_id, principal(), request.note)
        return kpb.DeleteInteractionResponse(graph_version=version, removed=removed)

    def ConfirmInteraction(
        self, request: kpb.ConfirmInteractionRequest, context: grpc.ServicerContext
    ) -> kpb.ConfirmInteractionResponse:
        version, confirmed = self.core.confirm(request.library, request.request_id, principal(), request.note)
        return kpb.ConfirmInteractionResponse(graph_version=version, confirmed=confirmed)

    def ListAudit(self, request: kpb.ListAuditRequest, context: object) -> kpb.ListAuditResponse:
        entries = self.core.audit_log(request.library, request.limit or 100)
        return kpb.ListAuditResponse(entries=[audit_to_pb(e) for e in entries])

    def GraphSnapshot(self, request: kpb.GraphSnapshotRequest, context: object) -> Iterator[kpb.GraphSnapshotChunk]:
        delta = self.core.delta(request.library, request.since_version) if request.since_version else None
        if delta is not None:  # the change since the caller's version: a few records after a feedback
            yield from _chunks(delta.since_version, delta.library, delta.models, delta.datasets, delta.interactions, [])
            return
        snap = self.core.snapshot(request.library)
        yield from _chunks(0, snap.library, snap.models, snap.datasets, interaction_columns_of(snap), snap.similarities)

    def GraphVersion(self, request: kpb.GraphVersionRequest, context: object) -> kpb.GraphVersionResponse:
        version, bundle_blob_id = self.core.graph_head(request.library)
        return kpb.GraphVersionResponse(graph_version=version, bundle_blob_id=bundle_blob_id)

    def LogQuery(self, request: kpb.LogQueryRequest, context: object) -> kpb.LogQueryResponse:
        self.core.log_query(log_query_from_pb(request))
        return kpb.LogQueryResponse()

    def GetQuery(self, request: kpb.GetQueryRequest, context: object) -> kpb.LoggedQuery:
        return query_to_pb(self.core.get_query(request.query_id))

    def DeleteLibrary(self, request: kpb.DeleteLibraryRequest, context: object) -> kpb.DeleteLibraryResponse:
        self.core.delete_library(request.name)
        return kpb.DeleteLibraryResponse()

    def ListQueries(self, request: kpb.ListQueriesRequest, context: object) -> kpb.ListQueriesResponse:
        records = self.core.list_queries(request.library, request.limit or 100)
        return kpb.ListQueriesResponse(queries=[query_to_pb(r) for r in records])

    def PurgeQueries(self, request: kpb.PurgeQueriesRequest, context: object) -> kpb.PurgeQueriesResponse:
        return kpb.PurgeQueriesResponse(purged=self.core.purge_queries(request.older_than_unix or None))


def _chunks(
    since_version: int,
    library: LibraryInfo,
    models: list[ModelNode],
    datasets: list[DatasetNode],
    interactions: InteractionColumns,
    similarities: list[SimilarityRecord],
) -> Iterator[kpb.GraphSnapshotChunk]:
    """A whole graph (since_version 0) or a change since a version, as the stream of chunks the proto describes."""
    version = library.graph_version
    yield kpb.GraphSnapshotChunk(graph_version=version, since_version=since_version, library=library_to_pb(library))
    modality = str(library.meta.get("modality", ""))
    for start in range(0, len(models), SNAPSHOT_BATCH):
        batch = models[start : start + SNAPSHOT_BATCH]
        yield kpb.GraphSnapshotChunk(
            graph_version=version, since_version=since_version, models=[model_to_pb(m) for m in batch]
        )
    for start in range(0, len(datasets), SNAPSHOT_BATCH):
        batch_d = datasets[start : start + SNAPSHOT_BATCH]
        yield kpb.GraphSnapshotChunk(
            graph_version=version, since_version=since_version, datasets=[dataset_to_pb(d, modality) for d in batch_d]
        )
    model_index = {m.model_id: i for i, m in enumerate(models)}
    dataset_index = {d.dataset_id: i for i, d in enumerate(datasets)}
    for start in range(0, len(interactions), INTERACTION_BATCH):
        records = interactions[start : start + INTERACTION_BATCH]
        yield kpb.GraphSnapshotChunk(
            graph_version=version,
            since_version=since_version,
            interactions=interaction_columns(records, model_index, dataset_index),
        )
    for start in range(0, len(similarities), SNAPSHOT_BATCH):
        batch_s = similarities[start : start + SNAPSHOT_BATCH]
        yield kpb.GraphSnapshotChunk(
            graph_version=version, since_version=since_version, similarities=[similarity_to_pb(x) for x in batch_s]
        )
