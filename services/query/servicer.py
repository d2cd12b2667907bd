"""Query gRPC servicer: protobuf in, core call, protobuf out."""

from __future__ import annotations

from collections.abc import Iterator

from modsnet.runtime.convert import (
    constraints_from_pb,
    constraints_to_pb,
    cost_from_pb,
    features_to_pb,
    library_to_pb,
    model_to_pb,
    objective_from_pb,
    objective_to_pb,
    probe_to_pb,
    profile_to_pb,
    ranked_models_to_pb,
    recommendation_to_pb,
    removal_to_pb,
)
from modsnet.runtime.errors import InvalidArgument
from modsnet.v1 import common_pb2 as pb
from modsnet.v1 import query_pb2 as qpb
from modsnet.v1 import query_pb2_grpc

from .core import QueryCore, SearchOptions


class QueryServicer(query_pb2_grpc.QueryServicer):
    def __init__(self, core: QueryCore):
        self.core = core

    def Search(self, request_iterator: Iterator[qpb.SearchRequest], context: object) -> qpb.SearchResponse:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("Search: the first message must be a header")
        h = first.header

        def chunks() -> Iterator[bytes]:
            for message in request_iterator:
                if message.WhichOneof("part") != "chunk":
                    raise InvalidArgument("Search: only file chunks may follow the header")
                yield message.chunk

        options = SearchOptions(
            library=h.library,
            k=h.k,
            target_column=h.target_column,
            constraints=constraints_from_pb(h.constraints) if h.HasField("constraints") else None,
            probe_budget=h.probe_budget,
            filename=h.filename,
            modality=h.modality,
            expected_sha256=h.expected_sha256,
            objective=objective_from_pb(h.objective),
            profile=h.profile,
        )
        result = self.core.search(options, chunks())
        d = result.dataset
        answer = result.answer
        return qpb.SearchResponse(
            query_id=result.query_id,
            library=result.library.name,
            models=ranked_models_to_pb(answer.models),
            dataset=qpb.DatasetSummary(
                fingerprint=d.fingerprint,
                filename=d.filename,
                modality=d.modality,
                rows=d.rows,
                columns=d.columns,
                target_column=d.target_column,
                classes=d.classes,
                features=features_to_pb(d.feature_set, d.features, d.modality),
                known_dataset_id=d.known_dataset_id,
            ),
            metric=str(result.library.meta.get("metric", "")),
            estimator=answer.estimator,
            graph_version=answer.graph_version,
            path=answer.path,
            probes_used=answer.probes_used,
            excluded_by_constraints=answer.excluded_by_constraints,
            probes=[probe_to_pb(p) for p in result.probes],
            recommendation=recommendation_to_pb(answer.recommendation),
            removals=[removal_to_pb(r) for r in answer.removals],
            objective=objective_to_pb(answer.objective),
            profile=answer.profile,
            constraints=constraints_to_pb(answer.constraints) if answer.constraints is not None else None,
            timings=[qpb.StageTiming(stage=t.stage, layer=t.layer, seconds=t.seconds) for t in result.timings],
            probing_note=result.probing,
        )

    def ListLibraries(self, request: pb.ListLibrariesRequest, context: object) -> pb.ListLibrariesResponse:
        return pb.ListLibrariesResponse(libraries=[library_to_pb(i) for i in self.core.list_libraries()])

    def ListProfiles(self, request: qpb.ListProfilesRequest, context: object) -> qpb.ListProfilesResponse:
        return qpb.ListProfilesResponse(profiles=[profile_to_pb(p) for p in self.core.list_profiles()])

    def FindModel(self, request: qpb.FindModelRequest, context: object) -> pb.Model:
        return model_to_pb(self.core.find_model(request.model_id, request.library))

    def DownloadModel(self, request: qpb.DownloadModelRequest, context: object) -> Iterator[qpb.DownloadModelResponse]:
        info, chunks = self.core.artifact(request.model_id, request.library)
        yield qpb.DownloadModelResponse(
            header=qpb.ArtifactHeader(
                library=info.library,
                model_id=info.model_id,
                filename=info.filename,
                sha256=info.sha256,
                size=info.size,
            )
        )
        for chunk in chunks:
            yield qpb.DownloadModelResponse(chunk=chunk)

    def ReportPerformance(
        self, request: qpb.ReportPerformanceRequest, context: object
    ) -> qpb.ReportPerformanceResponse:
        feedback = self.core.report_performance(
            request.query_id, request.model_id, request.score, cost_from_pb(request.cost), request.request_id
        )
        return qpb.ReportPerformanceResponse(
            dataset_id=feedback.dataset_id,
            graph_version=feedback.graph_version,
            request_id=feedback.request_id,
            quarantined=bool(feedback.quarantine),
            quarantine_reason=feedback.quarantine,
        )
