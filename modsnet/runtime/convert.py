"""Conversions between the shared records (`modsnet.data.graph`) and their protobuf messages.

Servicers and clients both use these, so a record crosses a service boundary through exactly one pair of
functions; the cores never see a message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from modsnet.data.graph import (
    PROVENANCES,
    QUERY_DATASET,
    AuditEntry,
    Constraints,
    Cost,
    DatasetNode,
    Evidence,
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
    Recommendation,
    Removal,
    SimilarityRecord,
)
from modsnet.data.probe_scale import META_KEY as PROBE_SCALE_KEY
from modsnet.data.probe_scale import ProbeScale
from modsnet.data.profiles import Profile
from modsnet.runtime.errors import DataLoss, InvalidArgument
from modsnet.v1 import common_pb2 as pb
from modsnet.v1 import knowledge_pb2 as kpb
from modsnet.v1 import recommender_pb2 as rpb


def cost_to_pb(cost: Cost) -> pb.Cost:
    return pb.Cost(
        train_seconds=cost.train_seconds,
        inference_seconds=cost.inference_seconds,
        memory_bytes=int(cost.memory_bytes),
    )


def cost_from_pb(msg: pb.Cost) -> Cost:
    return Cost(msg.train_seconds, msg.inference_seconds, float(msg.memory_bytes))


def library_to_pb(info: LibraryInfo) -> pb.Library:
    meta = info.meta
    return pb.Library(
        name=info.name,
        description=str(meta.get("description", "")),
        modality=str(meta.get("modality", "")),
        task=str(meta.get("task", "")),
        metric=str(meta.get("metric", "")),
        higher_is_better=bool(meta.get("higher_is_better", True)),
        version=str(meta.get("version", "")),
        source=str(meta.get("source", "")),
        models=info.models,
        datasets=info.datasets,
        interactions=info.interactions,
        graph_version=info.graph_version,
        bundle_blob_id=info.bundle_blob_id,
        imported_unix=info.imported_unix,
        probe_scale=_probe_scale_to_pb(meta.get(PROBE_SCALE_KEY)),
    )


def _probe_scale_to_pb(value: Any) -> pb.ProbeScale | None:
    if value is None:
        return None
    scale = ProbeScale.from_meta(value)
    return pb.ProbeScale(
        shift=scale.shift,
        sd=scale.sd,
        pairs=scale.pairs,
        datasets=scale.datasets,
        family_shift=scale.family_shift,
        level_sd=scale.level_sd,
        own_sd=scale.own_sd,
    )


def library_from_pb(msg: pb.Library) -> LibraryInfo:
    meta = {
        "name": msg.name,
        "description": msg.description,
        "modality": msg.modality,
        "task": msg.task,
        "metric": msg.metric,
        "higher_is_better": msg.higher_is_better,
        "version": msg.version,
        "source": msg.source,
    }
    if msg.HasField("probe_scale"):
        scale = msg.probe_scale
        meta[PROBE_SCALE_KEY] = ProbeScale(
            scale.shift,
            scale.sd,
            scale.pairs,
            scale.datasets,
            dict(scale.family_shift),
            scale.level_sd if scale.HasField("level_sd") else None,
            scale.own_sd if scale.HasField("own_sd") else None,
        ).to_meta()
    return LibraryInfo(
        msg.name,
        meta,
        msg.models,
        msg.datasets,
        msg.interactions,
        msg.graph_version,
        msg.bundle_blob_id,
        msg.imported_unix,
    )


def model_to_pb(node: ModelNode) -> pb.Model:
    return pb.Model(
        library=node.library,
        model_id=node.model_id,
        metadata=node.metadata,
        cost=cost_to_pb(node.cost),
        interactions=node.interactions,
        artifact_blob_id=node.artifact_blob_id,
    )


def model_from_pb(msg: pb.Model) -> ModelNode:
    return ModelNode(
        msg.library, msg.model_id, dict(msg.metadata), cost_from_pb(msg.cost), msg.interactions, msg.artifact_blob_id
    )


def dataset_to_pb(node: DatasetNode, modality: str = "") -> pb.Dataset:
    return pb.Dataset(
        library=node.library,
        dataset_id=node.dataset_id,
        metadata=node.metadata,
        features=features_to_pb(node.feature_set, node.features, modality),
        fingerprint=node.fingerprint,
        interactions=node.interactions,
    )


def dataset_from_pb(msg: pb.Dataset) -> DatasetNode:
    return DatasetNode(
        library=msg.library,
        dataset_id=msg.dataset_id,
        metadata=dict(msg.metadata),
        features=dict(msg.features.values),
        feature_set=msg.features.feature_set,
        fingerprint=msg.fingerprint,
        interactions=msg.interactions,
    )


def interaction_to_pb(rec: InteractionRecord) -> pb.Interaction:
    return pb.Interaction(
        model_id=rec.model_id,
        dataset_id=rec.dataset_id,
        score=rec.score,
        cost=cost_to_pb(rec.cost),
        provenance=rec.provenance,
    )


def interaction_from_pb(msg: pb.Interaction) -> InteractionRecord:
    return InteractionRecord(msg.model_id, msg.dataset_id, msg.score, cost_from_pb(msg.cost), msg.provenance)


def interaction_columns(
    records: InteractionColumns, model_index: dict[str, int], dataset_index: dict[str, int]
) -> kpb.InteractionColumns:
    """A slice of a snapshot's interactions on the wire: positions in the snapshot's streams of nodes."""
    m_map = np.array([model_index[m] for m in records.model_ids], dtype=np.int64)
    d_map = np.array([dataset_index[d] for d in records.dataset_ids], dtype=np.int64)
    empty = np.zeros(0, np.int64)
    return kpb.InteractionColumns(
        model_index=(m_map[records.model_index] if len(m_map) else empty).tolist(),
        dataset_index=(d_map[records.dataset_index] if len(d_map) else empty).tolist(),
        score=records.score.tolist(),
        train_seconds=records.train_seconds.tolist(),
        inference_seconds=records.inference_seconds.tolist(),
        memory_bytes=records.memory_bytes.tolist(),
        provenance=records.provenance.tolist(),
    )


def interactions_from_columns(
    columns: kpb.InteractionColumns, model_ids: list[str], dataset_ids: list[str]
) -> InteractionColumns:
    """The wire's columns as `InteractionColumns` over the streamed node order (DataLoss on a bad position)."""
    m_idx = np.array(columns.model_index, dtype=np.int64)
    d_idx = np.array(columns.dataset_index, dtype=np.int64)
    prov = np.array(columns.provenance, dtype=np.int64)
    for name, idx, bound in (("model", m_idx, len(model_ids)), ("dataset", d_idx, len(dataset_ids))):
        if len(idx) and (idx.min() < 0 or idx.max() >= bound):
            raise DataLoss(f"graph snapshot: an interaction points at {name} {int(idx.max())} of {bound}")
    if len(prov) and (prov.min() < 0 or prov.max() >= len(PROVENANCES)):
        raise DataLoss(f"graph snapshot: provenance code {int(prov.max())} is unknown")
    return InteractionColumns(
        model_ids,
        dataset_ids,
        m_idx,
        d_idx,
        np.array(columns.score, dtype=np.float64),
        np.array(columns.train_seconds, dtype=np.float64),
        np.array(columns.inference_seconds, dtype=np.float64),
        np.array(columns.memory_bytes, dtype=np.float64),
        prov,
    )


def audit_to_pb(entry: AuditEntry) -> kpb.AuditEntry:
    return kpb.AuditEntry(
        unix=entry.unix,
        principal=entry.principal,
        action=entry.action,
        library=entry.library,
        request_id=entry.request_id,
        records=entry.records,
        note=entry.note,
    )


def audit_from_pb(msg: kpb.AuditEntry) -> AuditEntry:
    return AuditEntry(msg.unix, msg.principal, msg.action, msg.library, msg.request_id, msg.records, msg.note)


def similarity_to_pb(rec: SimilarityRecord) -> pb.DatasetSimilarity:
    return pb.DatasetSimilarity(dataset_a=rec.dataset_a, dataset_b=rec.dataset_b, distance=rec.distance)


def similarity_from_pb(msg: pb.DatasetSimilarity) -> SimilarityRecord:
    return SimilarityRecord(msg.dataset_a, msg.dataset_b, msg.distance)


def query_to_pb(rec: QueryRecord) -> kpb.LoggedQuery:
    return kpb.LoggedQuery(
        query_id=rec.query_id,
        library=rec.library,
        fingerprint=rec.fingerprint,
        filename=rec.filename,
        features=features_to_pb(rec.feature_set, rec.features, rec.modality),
        answer_model_ids=rec.answer_model_ids,
        graph_version=rec.graph_version,
        logged_unix=rec.logged_unix,
    )


def log_query_to_pb(record: QueryRecord, answer: Iterable[RankedModel]) -> kpb.LogQueryRequest:
    return kpb.LogQueryRequest(
        query_id=record.query_id,
        library=record.library,
        fingerprint=record.fingerprint,
        filename=record.filename,
        features=features_to_pb(record.feature_set, record.features, record.modality),
        answer=ranked_models_to_pb(answer),
        graph_version=record.graph_version,
    )


def log_query_from_pb(msg: kpb.LogQueryRequest) -> QueryRecord:
    """The record a LogQuery request asks to keep (its answer's model ids in ranked order)."""
    return _query_record(msg, [m.model_id for m in msg.answer])


def query_from_pb(msg: kpb.LoggedQuery) -> QueryRecord:
    return _query_record(msg, list(msg.answer_model_ids), logged_unix=msg.logged_unix)


def _query_record(
    msg: kpb.LogQueryRequest | kpb.LoggedQuery, answer_model_ids: list[str], *, logged_unix: float = 0.0
) -> QueryRecord:
    # The two messages share every field but how the answer is given and when it was logged.
    return QueryRecord(
        query_id=msg.query_id,
        library=msg.library,
        fingerprint=msg.fingerprint,
        filename=msg.filename,
        feature_set=msg.features.feature_set,
        features=dict(msg.features.values),
        modality=msg.features.modality,
        answer_model_ids=answer_model_ids,
        graph_version=msg.graph_version,
        logged_unix=logged_unix,
    )


def probe_to_pb(rec: ProbeRecord) -> pb.ProbeResult:
    return pb.ProbeResult(
        model_id=rec.model_id, kind=rec.probe, value=rec.value, seconds=rec.seconds, detail=rec.detail, whole=rec.whole
    )


def probe_from_pb(msg: pb.ProbeResult) -> ProbeRecord:
    """A probe of the query: the message names no dataset, the searched data is no node."""
    return ProbeRecord(msg.model_id, QUERY_DATASET, msg.kind, msg.value, msg.seconds, msg.detail, whole=msg.whole)


def probe_choice_to_pb(rec: ProbeChoice) -> rpb.SelectProbesResponse:
    return rpb.SelectProbesResponse(
        model_ids=rec.model_ids,
        graph_version=rec.graph_version,
        stop=rec.stop,
        reason=rec.reason,
        expected_gain=rec.expected_gain,
    )


def probe_choice_from_pb(msg: rpb.SelectProbesResponse) -> ProbeChoice:
    return ProbeChoice(list(msg.model_ids), msg.graph_version, msg.stop, msg.reason, msg.expected_gain)


INT64_MAX = 2**63 - 1


def constraints_to_pb(rec: Constraints) -> pb.Constraints:
    return pb.Constraints(
        max_train_seconds=rec.max_train_seconds,
        max_inference_seconds=rec.max_inference_seconds,
        # The record holds a float: int64's largest value comes back as 2**63, one past the field's range.
        max_memory_bytes=min(int(rec.max_memory_bytes), INT64_MAX),
        exclude_models=sorted(rec.exclude_models),
        require_metadata=rec.require_metadata,
    )


def constraints_from_pb(msg: pb.Constraints) -> Constraints:
    return Constraints(
        max_train_seconds=msg.max_train_seconds,
        max_inference_seconds=msg.max_inference_seconds,
        max_memory_bytes=float(msg.max_memory_bytes),
        exclude_models=frozenset(msg.exclude_models),
        require_metadata=dict(msg.require_metadata),
    )


def ranked_to_pb(rec: RankedModel) -> pb.RankedModel:
    return pb.RankedModel(
        rank=rec.rank,
        model_id=rec.model_id,
        predicted_score=rec.predicted_score,
        uncertainty=rec.uncertainty,
        cost=cost_to_pb(rec.cost),
        evidence=[pb.Evidence(dataset_id=e.dataset_id, similarity=e.similarity, score=e.score) for e in rec.evidence],
        metadata=rec.metadata,
        explanation=rec.explanation,
        on_front=rec.on_front,
        objective_value=rec.objective_value,
    )


def ranked_from_pb(msg: pb.RankedModel) -> RankedModel:
    return RankedModel(
        rank=msg.rank,
        model_id=msg.model_id,
        predicted_score=msg.predicted_score,
        uncertainty=msg.uncertainty,
        cost=cost_from_pb(msg.cost),
        evidence=[Evidence(e.dataset_id, e.similarity, e.score) for e in msg.evidence],
        metadata=dict(msg.metadata),
        explanation=msg.explanation,
        on_front=msg.on_front,
        objective_value=msg.objective_value,
    )


def recommendation_to_pb(rec: Recommendation | None) -> pb.Recommendation | None:
    """None stays None: an unset field on the wire."""
    if rec is None:
        return None
    return pb.Recommendation(model_id=rec.model_id, measured=rec.measured, score=rec.score, reason=rec.reason)


def recommendation_from_pb(msg: pb.Recommendation) -> Recommendation:
    return Recommendation(model_id=msg.model_id, measured=msg.measured, score=msg.score, reason=msg.reason)


def ranking_to_pb(rec: Ranking) -> rpb.RecommendResponse:
    return rpb.RecommendResponse(
        models=ranked_models_to_pb(rec.models),
        graph_version=rec.graph_version,
        estimator=rec.estimator,
        path=rec.path,
        probes_used=rec.probes_used,
        excluded_by_constraints=rec.excluded_by_constraints,
        recommendation=recommendation_to_pb(rec.recommendation),
        removals=[removal_to_pb(r) for r in rec.removals],
        objective=objective_to_pb(rec.objective),
        profile=rec.profile,
        constraints=constraints_to_pb(rec.constraints) if rec.constraints is not None else None,
    )


def ranking_from_pb(msg: rpb.RecommendResponse) -> Ranking:
    return Ranking(
        models=[ranked_from_pb(m) for m in msg.models],
        graph_version=msg.graph_version,
        estimator=msg.estimator,
        path=msg.path,
        probes_used=msg.probes_used,
        excluded_by_constraints=msg.excluded_by_constraints,
        recommendation=recommendation_from_pb(msg.recommendation) if msg.HasField("recommendation") else None,
        removals=[removal_from_pb(r) for r in msg.removals],
        objective=objective_from_pb(msg.objective),
        profile=msg.profile,
        constraints=constraints_from_pb(msg.constraints) if msg.HasField("constraints") else None,
    )


def ranked_models_to_pb(models: Iterable[RankedModel]) -> list[pb.RankedModel]:
    return [ranked_to_pb(m) for m in models]


def features_to_pb(feature_set: str, values: dict[str, float], modality: str = "") -> pb.DatasetFeatures:
    return pb.DatasetFeatures(feature_set=feature_set, values=values, modality=modality)


# Objective kinds and costs: the record's names against the wire's enum values.
_OBJECTIVE_KINDS = {
    "score": pb.Objective.SCORE,
    "score-per-cost": pb.Objective.SCORE_PER_COST,
    "pareto": pb.Objective.PARETO,
}
_OBJECTIVE_COSTS = {
    "": pb.Objective.COST_UNSPECIFIED,
    "train_seconds": pb.Objective.TRAIN_SECONDS,
    "inference_seconds": pb.Objective.INFERENCE_SECONDS,
    "memory_bytes": pb.Objective.MEMORY_BYTES,
}


def objective_to_pb(rec: Objective) -> pb.Objective:
    return pb.Objective(kind=_OBJECTIVE_KINDS[rec.kind], cost=_OBJECTIVE_COSTS[rec.cost])


def objective_from_pb(msg: pb.Objective) -> Objective:
    """The objective a request asks for; InvalidArgument naming the field for a value this version does not
    know (an open enum lets any number through) or a ranking by cost without a cost."""
    kinds = {v: k for k, v in _OBJECTIVE_KINDS.items()}
    costs = {v: k for k, v in _OBJECTIVE_COSTS.items()}
    if msg.kind not in kinds:
        names = ", ".join(pb.Objective.Kind.Name(v) for v in kinds)
        raise InvalidArgument(f"objective.kind: {msg.kind} is not one of {names}")
    if msg.cost not in costs:
        names = ", ".join(pb.Objective.CostKind.Name(v) for v in costs if v)
        raise InvalidArgument(f"objective.cost: {msg.cost} is not one of {names}")
    kind = kinds[msg.kind]
    if kind == "score":
        return Objective()  # a cost beside SCORE ranks nothing
    if not costs[msg.cost]:
        names = ", ".join(pb.Objective.CostKind.Name(v) for v in costs if v)
        raise InvalidArgument(f"objective.cost: {pb.Objective.Kind.Name(msg.kind)} ranks by a cost; set one of {names}")
    return Objective(kind, costs[msg.cost])


def removal_to_pb(rec: Removal) -> pb.Removal:
    return pb.Removal(
        reason=rec.reason,
        source=rec.source,
        removed=rec.removed,
        better=rec.better,
        best_score=rec.best_score,
        model_ids=rec.model_ids,
        explanation=rec.explanation,
    )


def removal_from_pb(msg: pb.Removal) -> Removal:
    return Removal(
        msg.reason, msg.source, msg.removed, msg.better, msg.best_score, list(msg.model_ids), msg.explanation
    )


def profile_to_pb(profile: Profile) -> pb.Profile:
    return pb.Profile(
        name=profile.name, description=profile.description, constraints=constraints_to_pb(profile.constraints)
    )


def profile_from_pb(msg: pb.Profile) -> Profile:
    limits = constraints_from_pb(msg.constraints)
    return Profile(
        msg.name, msg.description, limits.max_train_seconds, limits.max_inference_seconds, limits.max_memory_bytes
    )
