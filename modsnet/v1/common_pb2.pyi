from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Cost(_message.Message):
    __slots__ = ("train_seconds", "inference_seconds", "memory_bytes")
    TRAIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    train_seconds: float
    inference_seconds: float
    memory_bytes: int
    def __init__(self, train_seconds: _Optional[float] = ..., inference_seconds: _Optional[float] = ..., memory_bytes: _Optional[int] = ...) -> None: ...

class Constraints(_message.Message):
    __slots__ = ("max_train_seconds", "max_inference_seconds", "max_memory_bytes", "exclude_models", "require_metadata")
    class RequireMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MAX_TRAIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_INFERENCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_MODELS_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_METADATA_FIELD_NUMBER: _ClassVar[int]
    max_train_seconds: float
    max_inference_seconds: float
    max_memory_bytes: int
    exclude_models: _containers.RepeatedScalarFieldContainer[str]
    require_metadata: _containers.ScalarMap[str, str]
    def __init__(self, max_train_seconds: _Optional[float] = ..., max_inference_seconds: _Optional[float] = ..., max_memory_bytes: _Optional[int] = ..., exclude_models: _Optional[_Iterable[str]] = ..., require_metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DatasetFeatures(_message.Message):
    __slots__ = ("feature_set", "values", "modality")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    FEATURE_SET_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    feature_set: str
    values: _containers.ScalarMap[str, float]
    modality: str
    def __init__(self, feature_set: _Optional[str] = ..., values: _Optional[_Mapping[str, float]] = ..., modality: _Optional[str] = ...) -> None: ...

class Evidence(_message.Message):
    __slots__ = ("dataset_id", "similarity", "score")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    similarity: float
    score: float
    def __init__(self, dataset_id: _Optional[str] = ..., similarity: _Optional[float] = ..., score: _Optional[float] = ...) -> None: ...

class RankedModel(_message.Message):
    __slots__ = ("rank", "model_id", "predicted_score", "uncertainty", "cost", "evidence", "metadata", "explanation", "on_front", "objective_value")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RANK_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_SCORE_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    ON_FRONT_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_VALUE_FIELD_NUMBER: _ClassVar[int]
    rank: int
    model_id: str
    predicted_score: float
    uncertainty: float
    cost: Cost
    evidence: _containers.RepeatedCompositeFieldContainer[Evidence]
    metadata: _containers.ScalarMap[str, str]
    explanation: str
    on_front: bool
    objective_value: float
    def __init__(self, rank: _Optional[int] = ..., model_id: _Optional[str] = ..., predicted_score: _Optional[float] = ..., uncertainty: _Optional[float] = ..., cost: _Optional[_Union[Cost, _Mapping]] = ..., evidence: _Optional[_Iterable[_Union[Evidence, _Mapping]]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., explanation: _Optional[str] = ..., on_front: _Optional[bool] = ..., objective_value: _Optional[float] = ...) -> None: ...

class Objective(_message.Message):
    __slots__ = ("kind", "cost")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SCORE: _ClassVar[Objective.Kind]
        SCORE_PER_COST: _ClassVar[Objective.Kind]
        PARETO: _ClassVar[Objective.Kind]
    SCORE: Objective.Kind
    SCORE_PER_COST: Objective.Kind
    PARETO: Objective.Kind
    class CostKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        COST_UNSPECIFIED: _ClassVar[Objective.CostKind]
        TRAIN_SECONDS: _ClassVar[Objective.CostKind]
        INFERENCE_SECONDS: _ClassVar[Objective.CostKind]
        MEMORY_BYTES: _ClassVar[Objective.CostKind]
    COST_UNSPECIFIED: Objective.CostKind
    TRAIN_SECONDS: Objective.CostKind
    INFERENCE_SECONDS: Objective.CostKind
    MEMORY_BYTES: Objective.CostKind
    KIND_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    kind: Objective.Kind
    cost: Objective.CostKind
    def __init__(self, kind: _Optional[_Union[Objective.Kind, str]] = ..., cost: _Optional[_Union[Objective.CostKind, str]] = ...) -> None: ...

class Removal(_message.Message):
    __slots__ = ("reason", "source", "removed", "better", "best_score", "model_ids", "explanation")
    REASON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    BETTER_FIELD_NUMBER: _ClassVar[int]
    BEST_SCORE_FIELD_NUMBER: _ClassVar[int]
    MODEL_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    reason: str
    source: str
    removed: int
    better: int
    best_score: float
    model_ids: _containers.RepeatedScalarFieldContainer[str]
    explanation: str
    def __init__(self, reason: _Optional[str] = ..., source: _Optional[str] = ..., removed: _Optional[int] = ..., better: _Optional[int] = ..., best_score: _Optional[float] = ..., model_ids: _Optional[_Iterable[str]] = ..., explanation: _Optional[str] = ...) -> None: ...

class Profile(_message.Message):
    __slots__ = ("name", "description", "constraints")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    constraints: Constraints
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., constraints: _Optional[_Union[Constraints, _Mapping]] = ...) -> None: ...

class ProbeResult(_message.Message):
    __slots__ = ("model_id", "kind", "value", "seconds", "detail", "whole")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    WHOLE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    kind: str
    value: float
    seconds: float
    detail: str
    whole: bool
    def __init__(self, model_id: _Optional[str] = ..., kind: _Optional[str] = ..., value: _Optional[float] = ..., seconds: _Optional[float] = ..., detail: _Optional[str] = ..., whole: _Optional[bool] = ...) -> None: ...

class Recommendation(_message.Message):
    __slots__ = ("model_id", "measured", "score", "reason")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MEASURED_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    measured: bool
    score: float
    reason: str
    def __init__(self, model_id: _Optional[str] = ..., measured: _Optional[bool] = ..., score: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class Library(_message.Message):
    __slots__ = ("name", "description", "modality", "task", "metric", "higher_is_better", "version", "source", "models", "datasets", "interactions", "graph_version", "bundle_blob_id", "imported_unix", "probe_scale")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    HIGHER_IS_BETTER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_BLOB_ID_FIELD_NUMBER: _ClassVar[int]
    IMPORTED_UNIX_FIELD_NUMBER: _ClassVar[int]
    PROBE_SCALE_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    modality: str
    task: str
    metric: str
    higher_is_better: bool
    version: str
    source: str
    models: int
    datasets: int
    interactions: int
    graph_version: int
    bundle_blob_id: str
    imported_unix: float
    probe_scale: ProbeScale
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., modality: _Optional[str] = ..., task: _Optional[str] = ..., metric: _Optional[str] = ..., higher_is_better: _Optional[bool] = ..., version: _Optional[str] = ..., source: _Optional[str] = ..., models: _Optional[int] = ..., datasets: _Optional[int] = ..., interactions: _Optional[int] = ..., graph_version: _Optional[int] = ..., bundle_blob_id: _Optional[str] = ..., imported_unix: _Optional[float] = ..., probe_scale: _Optional[_Union[ProbeScale, _Mapping]] = ...) -> None: ...

class ProbeScale(_message.Message):
    __slots__ = ("shift", "sd", "pairs", "datasets", "family_shift", "level_sd", "own_sd")
    class FamilyShiftEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SHIFT_FIELD_NUMBER: _ClassVar[int]
    SD_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    FAMILY_SHIFT_FIELD_NUMBER: _ClassVar[int]
    LEVEL_SD_FIELD_NUMBER: _ClassVar[int]
    OWN_SD_FIELD_NUMBER: _ClassVar[int]
    shift: float
    sd: float
    pairs: int
    datasets: int
    family_shift: _containers.ScalarMap[str, float]
    level_sd: float
    own_sd: float
    def __init__(self, shift: _Optional[float] = ..., sd: _Optional[float] = ..., pairs: _Optional[int] = ..., datasets: _Optional[int] = ..., family_shift: _Optional[_Mapping[str, float]] = ..., level_sd: _Optional[float] = ..., own_sd: _Optional[float] = ...) -> None: ...

class Interaction(_message.Message):
    __slots__ = ("model_id", "dataset_id", "score", "cost", "provenance")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    dataset_id: str
    score: float
    cost: Cost
    provenance: str
    def __init__(self, model_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., score: _Optional[float] = ..., cost: _Optional[_Union[Cost, _Mapping]] = ..., provenance: _Optional[str] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("library", "model_id", "metadata", "cost", "interactions", "artifact_blob_id")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_BLOB_ID_FIELD_NUMBER: _ClassVar[int]
    library: str
    model_id: str
    metadata: _containers.ScalarMap[str, str]
    cost: Cost
    interactions: int
    artifact_blob_id: str
    def __init__(self, library: _Optional[str] = ..., model_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., cost: _Optional[_Union[Cost, _Mapping]] = ..., interactions: _Optional[int] = ..., artifact_blob_id: _Optional[str] = ...) -> None: ...

class Dataset(_message.Message):
    __slots__ = ("library", "dataset_id", "metadata", "features", "fingerprint", "interactions")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    library: str
    dataset_id: str
    metadata: _containers.ScalarMap[str, str]
    features: DatasetFeatures
    fingerprint: str
    interactions: int
    def __init__(self, library: _Optional[str] = ..., dataset_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., features: _Optional[_Union[DatasetFeatures, _Mapping]] = ..., fingerprint: _Optional[str] = ..., interactions: _Optional[int] = ...) -> None: ...

class DatasetSimilarity(_message.Message):
    __slots__ = ("dataset_a", "dataset_b", "distance")
    DATASET_A_FIELD_NUMBER: _ClassVar[int]
    DATASET_B_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    dataset_a: str
    dataset_b: str
    distance: float
    def __init__(self, dataset_a: _Optional[str] = ..., dataset_b: _Optional[str] = ..., distance: _Optional[float] = ...) -> None: ...

class ListLibrariesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListLibrariesResponse(_message.Message):
    __slots__ = ("libraries",)
    LIBRARIES_FIELD_NUMBER: _ClassVar[int]
    libraries: _containers.RepeatedCompositeFieldContainer[Library]
    def __init__(self, libraries: _Optional[_Iterable[_Union[Library, _Mapping]]] = ...) -> None: ...
