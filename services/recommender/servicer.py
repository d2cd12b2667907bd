"""Recommender gRPC servicer: protobuf in, core call, protobuf out."""

from __future__ import annotations

from modsnet.data.graph import RankedModel, Ranking
from modsnet.runtime.convert import (
    constraints_from_pb,
    objective_from_pb,
    probe_choice_to_pb,
    probe_from_pb,
    ranking_to_pb,
)
from modsnet.v1 import recommender_pb2 as rpb
from modsnet.v1 import recommender_pb2_grpc

from .core import Answer, EstimatorInfo, RecommenderCore


def _ranking(result: Answer) -> Ranking:
    """The core's ranking as the shared record that crosses the wire."""
    return Ranking(
        models=[
            RankedModel(
                rank=r.rank,
                model_id=r.prediction.model_id,
                predicted_score=r.prediction.score,
                uncertainty=r.prediction.uncertainty,
                cost=r.model.cost,
                evidence=r.prediction.evidence,
                metadata=r.model.metadata,
                explanation=r.prediction.explanation,
                on_front=r.on_front,
                objective_value=r.objective_value,
            )
            for r in result.models
        ],
        graph_version=result.graph_version,
        estimator=result.estimator,
        path=result.path,
        probes_used=result.probes_used,
        excluded_by_constraints=result.excluded_by_constraints,
        recommendation=result.recommendation,
        removals=result.removals,
        objective=result.objective,
        profile=result.profile,
        constraints=result.constraints,
    )


def _info_to_pb(info: EstimatorInfo) -> rpb.EstimatorInfoResponse:
    return rpb.EstimatorInfoResponse(
        library=info.library,
        estimator=info.estimator,
        graph_version=info.graph_version,
        datasets=info.datasets,
        models=info.models,
        interactions=info.interactions,
        trained_unix=info.trained_unix,
        train_seconds=info.train_seconds,
        feature_names=info.feature_names,
        origin=info.origin,
        trained_version=info.trained_version,
        backend=info.backend,
    )


class RecommenderServicer(recommender_pb2_grpc.RecommenderServicer):
    def __init__(self, core: RecommenderCore):
        self.core = core

    def Recommend(self, request: rpb.RecommendRequest, context: object) -> rpb.RecommendResponse:
        result = self.core.recommend(
            request.library,
            dict(request.features.values),
            k=request.k or 5,
            constraints=constraints_from_pb(request.constraints),
            probe_budget=request.probe_budget,
            dataset_id=request.dataset_id,
            probes=[probe_from_pb(p) for p in request.probes],
            objective=objective_from_pb(request.objective),
            profile=request.profile,
            known_version=request.graph_version,
        )
        return ranking_to_pb(_ranking(result))

    def SelectProbes(self, request: rpb.SelectProbesRequest, context: object) -> rpb.SelectProbesResponse:
        choice = self.core.select_probes(
            request.library,
            dict(request.features.values),
            budget=request.budget,
            dataset_id=request.dataset_id,
            measured=[probe_from_pb(p) for p in request.measured],
            tried=list(request.tried),
            known_version=request.graph_version,
        )
        return probe_choice_to_pb(choice)

    def Train(self, request: rpb.TrainRequest, context: object) -> rpb.EstimatorInfoResponse:
        return _info_to_pb(self.core.train(request.library))

    def EstimatorInfo(self, request: rpb.EstimatorInfoRequest, context: object) -> rpb.EstimatorInfoResponse:
        return _info_to_pb(self.core.info(request.library))
