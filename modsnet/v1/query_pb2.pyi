from modsnet.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListProfilesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListProfilesResponse(_message.Message):
    __slots__ = ("profiles",)
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    profiles: _containers.RepeatedCompositeFieldContainer[_common_pb2.Profile]
    def __init__(self, profiles: _Optional[_Iterable[_Union[_common_pb2.Profile, _Mapping]]] = ...) -> None: ...

class SearchHeader(_message.Message):
    __slots__ = ("library", "k", "target_column", "constraints", "probe_budget", "filename", "modality", "expected_sha256", "objective", "profile")
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    TARGET_COLUMN_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    PROBE_BUDGET_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SHA256_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    library: str
    k: int
    target_column: str
    constraints: _common_pb2.Constraints
    probe_budget: int
    filename: str
    modality: str
    expected_sha256: str
    objective: _common_pb2.Objective
    profile: str
    def __init__(self, library: _Optional[str] = ..., k: _Optional[int] = ..., target_column: _Optional[str] = ..., constraints: _Optional[_Union[_common_pb2.Constraints, _Mapping]] = ..., probe_budget: _Optional[int] = ..., filename: _Optional[str] = ..., modality: _Optional[str] = ..., expected_sha256: _Optional[str] = ..., objective: _Optional[_Union[_common_pb2.Objective, _Mapping]] = ..., profile: _Optional[str] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: SearchHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[SearchHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class DatasetSummary(_message.Message):
    __slots__ = ("fingerprint", "filename", "modality", "rows", "columns", "target_column", "classes", "features", "known_dataset_id")
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    TARGET_COLUMN_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    KNOWN_DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    fingerprint: str
    filename: str
    modality: str
    rows: int
    columns: int
    target_column: str
    classes: int
    features: _common_pb2.DatasetFeatures
    known_dataset_id: str
    def __init__(self, fingerprint: _Optional[str] = ..., filename: _Optional[str] = ..., modality: _Optional[str] = ..., rows: _Optional[int] = ..., columns: _Optional[int] = ..., target_column: _Optional[str] = ..., classes: _Optional[int] = ..., features: _Optional[_Union[_common_pb2.DatasetFeatures, _Mapping]] = ..., known_dataset_id: _Optional[str] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("query_id", "library", "models", "dataset", "metric", "estimator", "graph_version", "path", "probes_used", "excluded_by_constraints", "probes", "recommendation", "removals", "objective", "profile", "constraints", "timings", "probing_note")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    ESTIMATOR_FIELD_NUMBER: _ClassVar[int]
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PROBES_USED_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_BY_CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    PROBES_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_FIELD_NUMBER: _ClassVar[int]
    REMOVALS_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    PROBING_NOTE_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    library: str
    models: _containers.RepeatedCompositeFieldContainer[_common_pb2.RankedModel]
    dataset: DatasetSummary
    metric: str
    estimator: str
    graph_version: int
    path: str
    probes_used: int
    excluded_by_constraints: int
    probes: _containers.RepeatedCompositeFieldContainer[_common_pb2.ProbeResult]
    recommendation: _common_pb2.Recommendation
    removals: _containers.RepeatedCompositeFieldContainer[_common_pb2.Removal]
    objective: _common_pb2.Objective
    profile: str
    constraints: _common_pb2.Constraints
    timings: _containers.RepeatedCompositeFieldContainer[StageTiming]
    probing_note: str
    def __init__(self, query_id: _Optional[str] = ..., library: _Optional[str] = ..., models: _Optional[_Iterable[_Union[_common_pb2.RankedModel, _Mapping]]] = ..., dataset: _Optional[_Union[DatasetSummary, _Mapping]] = ..., metric: _Optional[str] = ..., estimator: _Optional[str] = ..., graph_version: _Optional[int] = ..., path: _Optional[str] = ..., probes_used: _Optional[int] = ..., excluded_by_constraints: _Optional[int] = ..., probes: _Optional[_Iterable[_Union[_common_pb2.ProbeResult, _Mapping]]] = ..., recommendation: _Optional[_Union[_common_pb2.Recommendation, _Mapping]] = ..., removals: _Optional[_Iterable[_Union[_common_pb2.Removal, _Mapping]]] = ..., objective: _Optional[_Union[_common_pb2.Objective, _Mapping]] = ..., profile: _Optional[str] = ..., constraints: _Optional[_Union[_common_pb2.Constraints, _Mapping]] = ..., timings: _Optional[_Iterable[_Union[StageTiming, _Mapping]]] = ..., probing_note: _Optional[str] = ...) -> None: ...

class StageTiming(_message.Message):
    __slots__ = ("stage", "layer", "seconds")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    stage: str
    layer: str
    seconds: float
    def __init__(self, stage: _Optional[str] = ..., layer: _Optional[str] = ..., seconds: _Optional[float] = ...) -> None: ...

class ReportPerformanceRequest(_message.Message):
    __slots__ = ("query_id", "model_id", "score", "cost", "request_id")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    model_id: str
    score: float
    cost: _common_pb2.Cost
    request_id: str
    def __init__(self, query_id: _Optional[str] = ..., model_id: _Optional[str] = ..., score: _Optional[float] = ..., cost: _Optional[_Union[_common_pb2.Cost, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ReportPerformanceResponse(_message.Message):
    __slots__ = ("dataset_id", "graph_version", "request_id", "quarantined", "quarantine_reason")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_FIELD_NUMBER: _ClassVar[int]
    QUARANTINE_REASON_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    graph_version: int
    request_id: str
    quarantined: bool
    quarantine_reason: str
    def __init__(self, dataset_id: _Optional[str] = ..., graph_version: _Optional[int] = ..., request_id: _Optional[str] = ..., quarantined: _Optional[bool] = ..., quarantine_reason: _Optional[str] = ...) -> None: ...

class FindModelRequest(_message.Message):
    __slots__ = ("model_id", "library")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    library: str
    def __init__(self, model_id: _Optional[str] = ..., library: _Optional[str] = ...) -> None: ...

class DownloadModelRequest(_message.Message):
    __slots__ = ("model_id", "library")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    library: str
    def __init__(self, model_id: _Optional[str] = ..., library: _Optional[str] = ...) -> None: ...

class ArtifactHeader(_message.Message):
    __slots__ = ("library", "model_id", "filename", "sha256", "size")
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    library: str
    model_id: str
    filename: str
    sha256: str
    size: int
    def __init__(self, library: _Optional[str] = ..., model_id: _Optional[str] = ..., filename: _Optional[str] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class DownloadModelResponse(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: ArtifactHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[ArtifactHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...
