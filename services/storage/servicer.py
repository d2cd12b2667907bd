"""Storage gRPC servicer: protobuf in, core call, protobuf out. Nothing else lives here."""

from __future__ import annotations

from collections.abc import Iterator

from modsnet.runtime.errors import InvalidArgument
from modsnet.v1 import storage_pb2 as pb
from modsnet.v1 import storage_pb2_grpc

from .backends.base import BlobInfo
from .core import StorageCore

GET_MESSAGE_BYTES = 4 * 1024 * 1024  # below the 8 MiB message limit of every channel


def _info(info: BlobInfo) -> pb.BlobInfo:
    return pb.BlobInfo(blob_id=info.blob_id, size=info.size, created_unix=info.created_unix)


class StorageServicer(storage_pb2_grpc.StorageServicer):
    def __init__(self, core: StorageCore):
        self.core = core

    def PutBlob(self, request_iterator: Iterator[pb.PutBlobRequest], context: object) -> pb.BlobInfo:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("PutBlob: the first message must be a header")
        header = first.header

        def chunks() -> Iterator[bytes]:
            for message in request_iterator:
                if message.WhichOneof("part") != "chunk":
                    raise InvalidArgument("PutBlob: only chunks may follow the header")
                yield message.chunk

        info = self.core.put(chunks(), expected_sha256=header.expected_sha256, size_hint=header.size_hint)
        return _info(info)

    def GetBlob(self, request: pb.GetBlobRequest, context: object) -> Iterator[pb.BlobChunk]:
        # Backends read in 1 MiB pieces; fewer, larger messages cut per-message overhead on big blobs.
        pending: list[bytes] = []
        size = 0
        for data in self.core.get(request.blob_id, request.offset):
            pending.append(data)
            size += len(data)
            if size >= GET_MESSAGE_BYTES:
                yield pb.BlobChunk(data=b"".join(pending))
                pending, size = [], 0
        if pending:
            yield pb.BlobChunk(data=b"".join(pending))

    def StatBlob(self, request: pb.StatBlobRequest, context: object) -> pb.BlobInfo:
        return _info(self.core.stat(request.blob_id))

    def DeleteBlob(self, request: pb.DeleteBlobRequest, context: object) -> pb.DeleteBlobResponse:
        return pb.DeleteBlobResponse(deleted=self.core.delete(request.blob_id))

    def SetPointer(self, request: pb.SetPointerRequest, context: object) -> pb.SetPointerResponse:
        self.core.set_pointer(request.name, request.blob_id)
        return pb.SetPointerResponse()

    def GetPointer(self, request: pb.GetPointerRequest, context: object) -> pb.GetPointerResponse:
        return pb.GetPointerResponse(blob_id=self.core.get_pointer(request.name))
