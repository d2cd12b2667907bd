from modsnet.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImportLibraryRequest(_message.Message):
    __slots__ = ("blob_id", "replace", "request_id")
    BLOB_ID_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    blob_id: str
    replace: bool
    request_id: str
    def __init__(self, blob_id: _Optional[str] = ..., replace: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class ImportLibraryResponse(_message.Message):
    __slots__ = ("library", "unchanged", "warnings")
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    library: _common_pb2.Library
    unchanged: bool
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, library: _Optional[_Union[_common_pb2.Library, _Mapping]] = ..., unchanged: _Optional[bool] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class ExportLibraryRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ExportLibraryResponse(_message.Message):
    __slots__ = ("blob_id", "library")
    BLOB_ID_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    blob_id: str
    library: _common_pb2.Library
    def __init__(self, blob_id: _Optional[str] = ..., library: _Optional[_Union[_common_pb2.Library, _Mapping]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("library", "model_id")
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    library: str
    model_id: str
    def __init__(self, library: _Optional[str] = ..., model_id: _Optional[str] = ...) -> None: ...

class GetDatasetRequest(_message.Message):
    __slots__ = ("library", "dataset_id")
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    library: str
    dataset_id: str
    def __init__(self, library: _Optional[str] = ..., dataset_id: _Optional[str] = ...) -> None: ...

class FindDatasetRequest(_message.Message):
    __slots__ = ("fingerprint", "library")
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    fingerprint: str
    library: str
    def __init__(self, fingerprint: _Optional[str] = ..., library: _Optional[str] = ...) -> None: ...

class AddInteractionsRequest(_message.Message):
    __slots__ = ("library", "new_datasets", "interactions", "request_id")
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    NEW_DATASETS_FIELD_NUMBER: _ClassVar[int]
    INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    library: str
    new_datasets: _containers.RepeatedCompositeFieldContainer[_common_pb2.Dataset]
    interactions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Interaction]
    request_id: str
    def __init__(self, library: _Optional[str] = ..., new_datasets: _Optional[_Iterable[_Union[_common_pb2.Dataset, _Mapping]]] = ..., interactions: _Optional[_Iterable[_Union[_common_pb2.Interaction, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class AddInteractionsResponse(_message.Message):
    __slots__ = ("graph_version", "added", "request_id", "quarantine")
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    QUARANTINE_FIELD_NUMBER: _ClassVar[int]
    graph_version: int
    added: int
    request_id: str
    quarantine: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, graph_version: _Optional[int] = ..., added: _Optional[int] = ..., request_id: _Optional[str] = ..., quarantine: _Optional[_Iterable[str]] = ...) -> None: ...

class AddFeedbackRequest(_message.Message):
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

class AddFeedbackResponse(_message.Message):
    __slots__ = ("dataset_id", "graph_version", "request_id", "quarantine")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    QUARANTINE_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    graph_version: int
    request_id: str
    quarantine: str
    def __init__(self, dataset_id: _Optional[str] = ..., graph_version: _Optional[int] = ..., request_id: _Optional[str] = ..., quarantine: _Optional[str] = ...) -> None: ...

class DeleteInteractionRequest(_message.Message):
    __slots__ = ("library", "request_id", "note")
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    library: str
    request_id: str
    note: str
    def __init__(self, library: _Optional[str] = ..., request_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class DeleteInteractionResponse(_message.Message):
    __slots__ = ("graph_version", "removed")
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    graph_version: int
    removed: int
    def __init__(self, graph_version: _Optional[int] = ..., removed: _Optional[int] = ...) -> None: ...

class ConfirmInteractionRequest(_message.Message):
    __slots__ = ("library", "request_id", "note")
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    library: str
    request_id: str
    note: str
    def __init__(self, library: _Optional[str] = ..., request_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class ConfirmInteractionResponse(_message.Message):
    __slots__ = ("graph_version", "confirmed")
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_FIELD_NUMBER: _ClassVar[int]
    graph_version: int
    confirmed: int
    def __init__(self, graph_version: _Optional[int] = ..., confirmed: _Optional[int] = ...) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("library", "limit")
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    library: str
    limit: int
    def __init__(self, library: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("unix", "principal", "action", "library", "request_id", "records", "note")
    UNIX_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    unix: float
    principal: str
    action: str
    library: str
    request_id: str
    records: int
    note: str
    def __init__(self, unix: _Optional[float] = ..., principal: _Optional[str] = ..., action: _Optional[str] = ..., library: _Optional[str] = ..., request_id: _Optional[str] = ..., records: _Optional[int] = ..., note: _Optional[str] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ...) -> None: ...

class GraphSnapshotRequest(_message.Message):
    __slots__ = ("library", "since_version")
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    SINCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    library: str
    since_version: int
    def __init__(self, library: _Optional[str] = ..., since_version: _Optional[int] = ...) -> None: ...

class GraphSnapshotChunk(_message.Message):
    __slots__ = ("graph_version", "library", "models", "datasets", "interactions", "similarities", "since_version")
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    SIMILARITIES_FIELD_NUMBER: _ClassVar[int]
    SINCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    graph_version: int
    library: _common_pb2.Library
    models: _containers.RepeatedCompositeFieldContainer[_common_pb2.Model]
    datasets: _containers.RepeatedCompositeFieldContainer[_common_pb2.Dataset]
    interactions: InteractionColumns
    similarities: _containers.RepeatedCompositeFieldContainer[_common_pb2.DatasetSimilarity]
    since_version: int
    def __init__(self, graph_version: _Optional[int] = ..., library: _Optional[_Union[_common_pb2.Library, _Mapping]] = ..., models: _Optional[_Iterable[_Union[_common_pb2.Model, _Mapping]]] = ..., datasets: _Optional[_Iterable[_Union[_common_pb2.Dataset, _Mapping]]] = ..., interactions: _Optional[_Union[InteractionColumns, _Mapping]] = ..., similarities: _Optional[_Iterable[_Union[_common_pb2.DatasetSimilarity, _Mapping]]] = ..., since_version: _Optional[int] = ...) -> None: ...

class InteractionColumns(_message.Message):
    __slots__ = ("model_index", "dataset_index", "score", "train_seconds", "inference_seconds", "memory_bytes", "provenance")
    MODEL_INDEX_FIELD_NUMBER: _ClassVar[int]
    DATASET_INDEX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TRAIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    model_index: _containers.RepeatedScalarFieldContainer[int]
    dataset_index: _containers.RepeatedScalarFieldContainer[int]
    score: _containers.RepeatedScalarFieldContainer[float]
    train_seconds: _containers.RepeatedScalarFieldContainer[float]
    inference_seconds: _containers.RepeatedScalarFieldContainer[float]
    memory_bytes: _containers.RepeatedScalarFieldContainer[float]
    provenance: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, model_index: _Optional[_Iterable[int]] = ..., dataset_index: _Optional[_Iterable[int]] = ..., score: _Optional[_Iterable[float]] = ..., train_seconds: _Optional[_Iterable[float]] = ..., inference_seconds: _Optional[_Iterable[float]] = ..., memory_bytes: _Optional[_Iterable[float]] = ..., provenance: _Optional[_Iterable[int]] = ...) -> None: ...

class GraphVersionRequest(_message.Message):
    __slots__ = ("library",)
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    library: str
    def __init__(self, library: _Optional[str] = ...) -> None: ...

class GraphVersionResponse(_message.Message):
    __slots__ = ("graph_version", "bundle_blob_id")
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_BLOB_ID_FIELD_NUMBER: _ClassVar[int]
    graph_version: int
    bundle_blob_id: str
    def __init__(self, graph_version: _Optional[int] = ..., bundle_blob_id: _Optional[str] = ...) -> None: ...

class LogQueryRequest(_message.Message):
    __slots__ = ("query_id", "library", "fingerprint", "filename", "features", "answer", "graph_version")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    library: str
    fingerprint: str
    filename: str
    features: _common_pb2.DatasetFeatures
    answer: _containers.RepeatedCompositeFieldContainer[_common_pb2.RankedModel]
    graph_version: int
    def __init__(self, query_id: _Optional[str] = ..., library: _Optional[str] = ..., fingerprint: _Optional[str] = ..., filename: _Optional[str] = ..., features: _Optional[_Union[_common_pb2.DatasetFeatures, _Mapping]] = ..., answer: _Optional[_Iterable[_Union[_common_pb2.RankedModel, _Mapping]]] = ..., graph_version: _Optional[int] = ...) -> None: ...

class LogQueryResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetQueryRequest(_message.Message):
    __slots__ = ("query_id",)
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    def __init__(self, query_id: _Optional[str] = ...) -> None: ...

class LoggedQuery(_message.Message):
    __slots__ = ("query_id", "library", "fingerprint", "filename", "features", "answer_model_ids", "graph_version", "logged_unix")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    ANSWER_MODEL_IDS_FIELD_NUMBER: _ClassVar[int]
    GRAPH_VERSION_FIELD_NUMBER: _ClassVar[int]
    LOGGED_UNIX_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    library: str
    fingerprint: str
    filename: str
    features: _common_pb2.DatasetFeatures
    answer_model_ids: _containers.RepeatedScalarFieldContainer[str]
    graph_version: int
    logged_unix: float
    def __init__(self, query_id: _Optional[str] = ..., library: _Optional[str] = ..., fingerprint: _Optional[str] = ..., filename: _Optional[str] = ..., features: _Optional[_Union[_common_pb2.DatasetFeatures, _Mapping]] = ..., answer_model_ids: _Optional[_Iterable[str]] = ..., graph_version: _Optional[int] = ..., logged_unix: _Optional[float] = ...) -> None: ...

class DeleteLibraryRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteLibraryResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListQueriesRequest(_message.Message):
    __slots__ = ("library", "limit")
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    library: str
    limit: int
    def __init__(self, library: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListQueriesResponse(_message.Message):
    __slots__ = ("queries",)
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    queries: _containers.RepeatedCompositeFieldContainer[LoggedQuery]
    def __init__(self, queries: _Optional[_Iterable[_Union[LoggedQuery, _Mapping]]] = ...) -> None: ...

class PurgeQueriesRequest(_message.Message):
    __slots__ = ("older_than_unix",)
    OLDER_THAN_UNIX_FIELD_NUMBER: _ClassVar[int]
    older_than_unix: float
    def __init__(self, older_than_unix: _Optional[float] = ...) -> None: ...

class PurgeQueriesResponse(_message.Message):
    __slots__ = ("purged",)
    PURGED_FIELD_NUMBER: _ClassVar[int]
    purged: int
    def __init__(self, purged: _Optional[int] = ...) -> None: ...
