from modsnet.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecommendRequest(_message.Message):
    __slots__ = ("library", "features", "k", "constraints", "probe_budget", "dataset_id", "probes", "objective", "profile", "graph_version")
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    PROBE_BUDGET_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    PROBES_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    library: str
    features: _common_pb2.DatasetFeatures
    k: int
    constraints: _common_pb2.Constraints
    probe_budget: int
    dataset_id: str
    probes: _containers.RepeatedCompositeFieldContainer[_common_pb2.ProbeResult]
    objective: _common_pb2.Objective
    profile: str
    graph_version: int
    def __init__(self, library: _Optional[str] = ..., features: _Optional[_Union[_common_pb2.DatasetFeatures, _Mapping]] = ..., k: _Optional[int] = ..., constraints: _Optional[_Union[_common_pb2.Constraints, _Mapping]] = ..., probe_budget: _Optional[int] = ..., dataset_id: _Optional[str] = ..., probes: _Optional[_Iterable[_Union[_common_pb2.ProbeResult, _Mapping]]] = ..., objective: _Optional[_Union[_common_pb2.Objective, _Mapping]] = ..., profile: _Optional[str] = ..., graph_version: _Optional[int] = ...) -> None: ...

class SelectProbesRequest(_message.Message):
    __slots__ = ("library", "features", "budget", "dataset_id", "measured", "tried", "graph_version")
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    MEASURED_FIELD_NUMBER: _ClassVar[int]
    TRIED_FIELD_NUMBER: _ClassVar[int]
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    library: str
    features: _common_pb2.DatasetFeatures
    budget: int
    dataset_id: str
    measured: _containers.RepeatedCompositeFieldContainer[_common_pb2.ProbeResult]
    tried: _containers.RepeatedScalarFieldContainer[str]
    graph_version: int
    def __init__(self, library: _Optional[str] = ..., features: _Optional[_Union[_common_pb2.DatasetFeatures, _Mapping]] = ..., budget: _Optional[int] = ..., dataset_id: _Optional[str] = ..., measured: _Optional[_Iterable[_Union[_common_pb2.ProbeResult, _Mapping]]] = ..., tried: _Optional[_Iterable[str]] = ..., graph_version: _Optional[int] = ...) -> None: ...

class SelectProbesResponse(_message.Message):
    __slots__ = ("model_ids", "graph_version", "stop", "reason", "expected_gain")
    MODEL_IDS_FIELD_NUMBER: _ClassVar[int]
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_GAIN_FIELD_NUMBER: _ClassVar[int]
    model_ids: _containers.RepeatedScalarFieldContainer[str]
    graph_version: int
    stop: bool
    reason: str
    expected_gain: float
    def __init__(self, model_ids: _Optional[_Iterable[str]] = ..., graph_version: _Optional[int] = ..., stop: _Optional[bool] = ..., reason: _Optional[str] = ..., expected_gain: _Optional[float] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("models", "graph_version", "estimator", "path", "probes_used", "excluded_by_constraints", "recommendation", "removals", "objective", "profile", "constraints")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    ESTIMATOR_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PROBES_USED_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_BY_CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_FIELD_NUMBER: _ClassVar[int]
    REMOVALS_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[_common_pb2.RankedModel]
    graph_version: int
    estimator: str
    path: str
    probes_used: int
    excluded_by_constraints: int
    recommendation: _common_pb2.Recommendation
    removals: _containers.RepeatedCompositeFieldContainer[_common_pb2.Removal]
    objective: _common_pb2.Objective
    profile: str
    constraints: _common_pb2.Constraints
    def __init__(self, models: _Optional[_Iterable[_Union[_common_pb2.RankedModel, _Mapping]]] = ..., graph_version: _Optional[int] = ..., estimator: _Optional[str] = ..., path: _Optional[str] = ..., probes_used: _Optional[int] = ..., excluded_by_constraints: _Optional[int] = ..., recommendation: _Optional[_Union[_common_pb2.Recommendation, _Mapping]] = ..., removals: _Optional[_Iterable[_Union[_common_pb2.Removal, _Mapping]]] = ..., objective: _Optional[_Union[_common_pb2.Objective, _Mapping]] = ..., profile: _Optional[str] = ..., constraints: _Optional[_Union[_common_pb2.Constraints, _Mapping]] = ...) -> None: ...

class TrainRequest(_message.Message):
    __slots__ = ("library",)
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    library: str
    def __init__(self, library: _Optional[str] = ...) -> None: ...

class EstimatorInfoRequest(_message.Message):
    __slots__ = ("library",)
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    library: str
    def __init__(self, library: _Optional[str] = ...) -> None: ...

class EstimatorInfoResponse(_message.Message):
    __slots__ = ("library", "estimator", "graph_version", "datasets", "models", "interactions", "trained_unix", "train_seconds", "feature_names", "origin", "trained_version", "backend")
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    ESTIMATOR_FIELD_NUMBER: _ClassVar[int]
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    TRAINED_UNIX_FIELD_NUMBER: _ClassVar[int]
    TRAIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    TRAINED_VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    library: str
    estimator: str
    graph_version: int
    datasets: int
    models: int
    interactions: int
    trained_unix: float
    train_seconds: float
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    origin: str
    trained_version: int
    backend: str
    def __init__(self, library: _Optional[str] = ..., estimator: _Optional[str] = ..., graph_version: _Optional[int] = ..., datasets: _Optional[int] = ..., models: _Optional[int] = ..., interactions: _Optional[int] = ..., trained_unix: _Optional[float] = ..., train_seconds: _Optional[float] = ..., feature_names: _Optional[_Iterable[str]] = ..., origin: _Optional[str] = ..., trained_version: _Optional[int] = ..., backend: _Optional[str] = ...) -> None: ...
