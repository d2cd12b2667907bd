"""The Python client of ModsNet: search by exemplar file, libraries, feedback.

    from modsnet.client import Client
    client = Client(query="localhost:50051", knowledge="localhost:50053", storage="localhost:50054")
    answer = client.search("data.csv", k=5)

Search goes through the Query service; library administration (import, export) goes to Storage and
Knowledge directly, as the design's data flow has it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from modsnet.data.bundle import bundle_members, pack_path, read_bundle, write_bundle, zip_members
from modsnet.data.graph import LibraryInfo, ModelNode
from modsnet.runtime.channels import ServiceClient, chunked
from modsnet.runtime.errors import InvalidArgument, NotFound
from modsnet.runtime.stubs import CHUNK, KnowledgeClient, RecommenderClient, StorageClient
from modsnet.v1 import common_pb2 as pb
from modsnet.v1 import knowledge_pb2 as kpb
from modsnet.v1 import query_pb2 as qpb
from modsnet.v1 import query_pb2_grpc
from modsnet.v1 import recommender_pb2 as rpb

DEFAULT_PROBES = 5
"""Models a search probes on the user's data unless told otherwise (each costs a bounded real measurement)."""

Progress = Callable[[int, int], None]  # (bytes sent, total bytes)


class QueryClient(ServiceClient):
    def __init__(self, target: str, *, timeout: float = 600.0):
        super().__init__(
            "query",
            target,
            query_pb2_grpc.QueryStub,
            full_service="modsnet.v1.Query",
            retry_methods=("ListLibraries",),
            timeout=timeout,
        )


def _file_chunks(path: Path, progress: Progress | None) -> Iterator[bytes]:
    total = path.stat().st_size
    sent = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            sent += len(chunk)
            if progress is not None:
                progress(sent, total)
            yield chunk


def zip_folder(folder: Path, target: Path) -> Path:
    """Zip a folder's files (not links, not hidden files) in a stable order, stored uncompressed when
    already compressed (images), deflated otherwise."""
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if path.is_symlink() or not path.is_file() or any(p.startswith(".") for p in relative.parts):
                continue
            packed = path.suffix.lower() in (".png", ".jpg", ".jpeg", ".zip", ".gz", ".rasx", ".brml")
            archive.write(path, relative.as_posix(), zipfile.ZIP_STORED if packed else zipfile.ZIP_DEFLATED)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class Client:
    def __init__(self, *, query: str, knowledge: str, storage: str, recommender: str | None = None):
        self.query = QueryClient(query)
        self.knowledge = KnowledgeClient(knowledge)
        self.storage = StorageClient(storage)
        self.recommender = RecommenderClient(recommender) if recommender else None

    def search(
        self,
        path: str | os.PathLike[str],
        *,
        library: str = "",
        k: int = 5,
        target: str = "",
        constraints: pb.Constraints | None = None,
        probe_budget: int = DEFAULT_PROBES,
        modality: str = "",
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> qpb.SearchResponse:
        file = Path(path)
        if file.is_dir():
            # A folder (of images, texts or scans) travels as one zip; its subfolders are the labels.
            with tempfile.TemporaryDirectory() as tmp:
                archive = zip_folder(file, Path(tmp) / f"{file.name}.zip")
                return self.search(
                    archive,
                    library=library,
                    k=k,
                    target=target,
                    constraints=constraints,
                    probe_budget=probe_budget,
                    modality=modality,
                    progress=progress,
                    timeout=timeout,
                )
        if not file.is_file():
            raise InvalidArgument(f"{file}: no such file or folder")
        header = qpb.SearchRequest(
            header=qpb.SearchHeader(
                library=library,
                k=k,
                target_column=target,
                constraints=constraints,
                probe_budget=probe_budget,
                filename=file.name,
                modality=modality,
                expected_sha256=_sha256(file),
            )
        )
        messages = chunked(header, _file_chunks(file, progress), lambda c: qpb.SearchRequest(chunk=c))
        return self.query.call("Search", messages, timeout=timeout)

    def list_libraries(self) -> list[LibraryInfo]:
        return self.knowledge.list_libraries()

    def report_performance(
        self, query_id: str, model_id: str, score: float, cost: pb.Cost | None = None
    ) -> qpb.ReportPerformanceResponse:
        return self.query.call(
            "ReportPerformance",
            qpb.ReportPerformanceRequest(query_id=query_id, model_id=model_id, score=score, cost=cost),
        )

    def import_library(self, path: str | os.PathLike[str], *, replace: bool = False) -> kpb.ImportLibraryResponse:
        """Upload a bundle (folder or archive) to Storage, then have Knowledge import it, all or nothing."""
        data = pack_path(path)
        blob = self.storage.put_bytes(data, name=Path(path).name)
        return self.knowledge.import_library(blob.blob_id, replace=replace)

    def export_library(self, name: str, path: str | os.PathLike[str]) -> Path:
        """Write a library as a bundle: a folder, or an archive when `path` ends in .tar.gz / .tgz / .zip."""
        response = self.knowledge.export_library(name)
        data = self.storage.get_bytes(response.blob_id)
        target = Path(path)
        suffixes = "".join(target.suffixes[-2:]).lower()
        if suffixes.endswith((".tar.gz", ".tgz")):
            target.write_bytes(data)
        elif suffixes.endswith(".zip"):
            target.write_bytes(zip_members(bundle_members(read_bundle(data, label=name))))
        else:
            write_bundle(read_bundle(data, label=name), target)
        return target

    def find_model(self, model_id: str, library: str = "") -> ModelNode:
        """A model by id, in `library` or in whichever single library has it."""
        if library:
            return self.knowledge.get_model(library, model_id)
        found = []
        for info in self.knowledge.list_libraries():
            try:
                found.append(self.knowledge.get_model(info.name, model_id))
            except NotFound:
                continue
        if not found:
            raise NotFound(f"no library has a model {model_id!r}")
        if len(found) > 1:
            names = ", ".join(m.library for m in found)
            raise InvalidArgument(f"model {model_id!r} is in several libraries ({names}): name one with --library")
        return found[0]

    def download_model(self, model_id: str, path: str | os.PathLike[str] | None = None, *, library: str = "") -> Path:
        """Fetch a model's runnable artifact (checksum verified) to `path` (default: its file name, here)."""
        model = self.find_model(model_id, library)
        if not model.artifact_blob_id:
            raise NotFound(f"model {model_id!r} of library {model.library!r} has no runnable artifact")
        target = Path(path) if path else Path(PurePosixPath(model.metadata["artifact"]).name)
        if target.is_dir():
            target = target / PurePosixPath(model.metadata["artifact"]).name
        data = self.storage.get_bytes(model.artifact_blob_id)
        partial = target.with_name(target.name + ".part")
        partial.write_bytes(data)
        partial.replace(target)  # a reader never sees half a file
        return target

    def train(self, library: str) -> rpb.EstimatorInfoResponse:
        return self._recommender().train(library)

    def estimator_info(self, library: str) -> rpb.EstimatorInfoResponse:
        return self._recommender().estimator_info(library)

    def _recommender(self) -> RecommenderClient:
        if self.recommender is None:
            raise InvalidArgument("this client has no recommender address")
        return self.recommender

    def close(self) -> None:
        for client in (self.query, self.knowledge, self.storage, self.recommender):
            if client is not None:
                client.close()
