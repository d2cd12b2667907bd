from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PutBlobHeader(_message.Message):
    __slots__ = ("expected_sha256", "size_hint", "name")
    EXPECTED_SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_HINT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    expected_sha256: str
    size_hint: int
    name: str
    def __init__(self, expected_sha256: _Optional[str] = ..., size_hint: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class PutBlobRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: PutBlobHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[PutBlobHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class BlobInfo(_message.Message):
    __slots__ = ("blob_id", "size", "created_unix")
    BLOB_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    blob_id: str
    size: int
    created_unix: float
    def __init__(self, blob_id: _Optional[str] = ..., size: _Optional[int] = ..., created_unix: _Optional[float] = ...) -> None: ...

class GetBlobRequest(_message.Message):
    __slots__ = ("blob_id", "offset")
    BLOB_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    blob_id: str
    offset: int
    def __init__(self, blob_id: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class BlobChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class StatBlobRequest(_message.Message):
    __slots__ = ("blob_id",)
    BLOB_ID_FIELD_NUMBER: _ClassVar[int]
    blob_id: str
    def __init__(self, blob_id: _Optional[str] = ...) -> None: ...

class DeleteBlobRequest(_message.Message):
    __slots__ = ("blob_id",)
    BLOB_ID_FIELD_NUMBER: _ClassVar[int]
    blob_id: str
    def __init__(self, blob_id: _Optional[str] = ...) -> None: ...

class DeleteBlobResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class SetPointerRequest(_message.Message):
    __slots__ = ("name", "blob_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BLOB_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    blob_id: str
    def __init__(self, name: _Optional[str] = ..., blob_id: _Optional[str] = ...) -> None: ...

class SetPointerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetPointerRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetPointerResponse(_message.Message):
    __slots__ = ("blob_id",)
    BLOB_ID_FIELD_NUMBER: _ClassVar[int]
    blob_id: str
    def __init__(self, blob_id: _Optional[str] = ...) -> None: ...
