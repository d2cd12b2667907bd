"""The Python client of ModsNet: search by exemplar file, libraries, models, feedback.

    from modsnet.client import Client
    client = Client(query="localhost:50051")
    answer = client.search("data.csv", k=5)
    print(answer.recommendation.model_id, answer.recommendation.reason)

A platform client needs the query address alone: search, the library list, a model's metadata, its
artifact download and feedback all go through the Query service. Library administration is not part of
the public API (yet) and goes to the service that owns it, so only an administrator gives those addresses
(see `Client`).
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath

from modsnet.data.bundle import bundle_members, pack_path, read_bundle, write_bundle, zip_members
from modsnet.data.graph import AuditEntry, LibraryInfo, ModelNode, QueryRecord
from modsnet.data.profiles import Profile, objective_named
from modsnet.runtime.auth import ClientCredentials
from modsnet.runtime.channels import ServiceClient, chunked
from modsnet.runtime.convert import library_from_pb, model_from_pb, objective_to_pb, profile_from_pb
from modsnet.runtime.errors import Busy, ConfigError, DataLoss, InvalidArgument, Unreachable
from modsnet.runtime.stubs import (
    CHUNK,
    DEFAULT_PROBES,
    EVALUATION_POINTER,
    KnowledgeClient,
    RecommenderClient,
    StorageClient,
)
from modsnet.v1 import common_pb2 as pb
from modsnet.v1 import knowledge_pb2 as kpb
from modsnet.v1 import query_pb2 as qpb
from modsnet.v1 import query_pb2_grpc
from modsnet.v1 import recommender_pb2 as rpb

BUSY_PATIENCE_SECONDS = 120.0  # how long a search without a timeout keeps retrying a busy service
RECONNECT_PATIENCE_SECONDS = 5.0  # how long a search retries a query service it cannot reach

Progress = Callable[[int, int], None]  # (bytes sent, total bytes)


class QueryClient(ServiceClient):
    def __init__(self, target: str, *, timeout: float = 600.0, credentials: ClientCredentials | None = None):
        super().__init__(
            "query",
            target,
            query_pb2_grpc.QueryStub,
            full_service="modsnet.v1.Query",
            # ReportPerformance too: each report carries its request id, so a retry is applied once.
            retry_methods=("ListLibraries", "ListProfiles", "FindModel", "DownloadModel", "ReportPerformance"),
            timeout=timeout,
            credentials=credentials,
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


def _verified(header: qpb.ArtifactHeader, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The chunks, then DataLoss if they do not add up to the size and sha256 the header announced."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        yield chunk
    if size != header.size or digest.hexdigest() != header.sha256:
        raise DataLoss(
            f"artifact of model {header.model_id!r} arrived corrupt ({size} of {header.size} bytes, "
            f"sha256 {digest.hexdigest()}, expected {header.sha256})"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class Client:
    """A client of the platform. `query` is all a user needs; the other addresses serve administration.

    Through Query (one address): `search`, `list_libraries`, `find_model`, `download_model`,
    `read_artifact`, `report_performance`.

    Still on their own services, because the Query API has no such call: administration is a different
    audience with different rights, and moving it behind the public address is a decision of its own.
    - knowledge (and storage for the bundle's bytes): `import_library`, `export_library`;
    - knowledge: `delete_library`, `list_queries`, `purge_queries` (the search log holds users' uploads'
      fingerprints and file names: not for every client);
    - recommender: `train`, `estimator_info`.
    A call whose address was not given raises ConfigError naming it.

    Where authentication is on (docs/security.md), `token` is sent with every call (a token with the
    `search` scope searches, `feedback` reports, `admin` administers); `tls` (the system's roots) or `ca`
    (a CA certificate file) turn TLS on, and `cert`/`key` present a client certificate.
    """

    def __init__(
        self,
        *,
        query: str,
        knowledge: str | None = None,
        storage: str | None = None,
        recommender: str | None = None,
        token: str | None = None,
        tls: bool = False,
        ca: str | os.PathLike[str] | None = None,
        cert: str | os.PathLike[str] | None = None,
        key: str | os.PathLike[str] | None = None,
    ):
        creds = ClientCredentials.from_files(token=token, ca=ca, cert=cert, key=key, tls=tls)
        self.query = QueryClient(query, credentials=creds)
        self.knowledge = KnowledgeClient(knowledge, credentials=creds) if knowledge else None
        self.storage = StorageClient(storage, credentials=creds) if storage else None
        self.recommender = RecommenderClient(recommender, credentials=creds) if recommender else None

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
        objective: str | pb.Objective = "score",
        pareto_cost: str = "",
        profile: str = "",
    ) -> qpb.SearchResponse:
        """Search by exemplar: upload `path` (a file, or a folder sent as one zip), probe up to
        `probe_budget` models on it, and get the top-`k` models of the library.

        The answer holds the ranked `models`, the `probes` measured on the data and the `recommendation`:
        the one model to take with what was measured (`model_id`, `measured`, `score`, `reason`), the best
        probed model when a probe measured better than every prediction, else the top-1.

        `objective`: "score" (the best predicted score, the default), "per-train-seconds",
        "per-inference-seconds", "per-memory" (best score per unit of that cost) or "pareto" (the Pareto front
        of score against `pareto_cost`: "train-seconds", "inference-seconds" (default) or "memory"), or a
        `pb.Objective`. `profile`: a hardware profile (`list_profiles`) whose limits combine with
        `constraints`, the stricter winning. The answer's `removals` say what each limit (and the objective)
        kept out, and how many of those were predicted better than the top pick.
        """
        if not isinstance(objective, pb.Objective):
            objective = objective_to_pb(objective_named(objective, pareto_cost))
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
                    objective=objective,
                    profile=profile,
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
                objective=objective,
                profile=profile,
            )
        )
        # A busy service (`Busy`: its uploads and their queue are full) says when to retry; the file is sent
        # again then, until `timeout` (else BUSY_PATIENCE_SECONDS) is spent.
        give_up = time.monotonic() + (timeout if timeout is not None else BUSY_PATIENCE_SECONDS)
        # A query service that was just restarted is found again by the channel within its reconnect backoff
        # (about 2 s, modsnet.runtime.channels); until then a call fails at once without reaching it.
        reconnect_until = time.monotonic() + RECONNECT_PATIENCE_SECONDS
        while True:
            messages = chunked(header, _file_chunks(file, progress), lambda c: qpb.SearchRequest(chunk=c))
            left = give_up - time.monotonic() if timeout is not None else None
            try:
                return self.query.call("Search", messages, timeout=left)
            except Busy as busy:
                pause = busy.retry_after * random.uniform(0.5, 1.5)  # jitter: refused clients do not return together
                if time.monotonic() + pause >= give_up:
                    raise
                time.sleep(pause)
            except Unreachable:
                if time.monotonic() + 0.5 >= min(give_up, reconnect_until):
                    raise
                time.sleep(0.5)

    def list_libraries(self) -> list[LibraryInfo]:
        response = self.query.call("ListLibraries", pb.ListLibrariesRequest())
        return [library_from_pb(lib) for lib in response.libraries]

    def list_profiles(self) -> list[Profile]:
        """The hardware profiles a search may name (the service's), sorted by name."""
        response = self.query.call("ListProfiles", qpb.ListProfilesRequest())
        return [profile_from_pb(p) for p in response.profiles]

    def find_model(self, model_id: str, library: str = "") -> ModelNode:
        """A model by id, in `library` or in whichever single library has it."""
        return model_from_pb(self.query.call("FindModel", qpb.FindModelRequest(model_id=model_id, library=library)))

    def download_model(self, model_id: str, path: str | os.PathLike[str] | None = None, *, library: str = "") -> Path:
        """Fetch a model's runnable artifact (checksum verified) to `path` (default: its file name, here)."""
        header, chunks = self._artifact(model_id, library)
        # A bare file name whatever the server sent: a download never writes outside the folder asked for.
        name = PurePosixPath(header.filename).name
        name = name if name not in ("", ".", "..") else header.model_id
        target = Path(path) if path else Path(name)
        if target.is_dir():
            target = target / name
        partial = target.with_name(target.name + ".part")
        try:
            with open(partial, "wb") as handle:
                for chunk in _verified(header, chunks):
                    handle.write(chunk)
            partial.replace(target)  # a reader never sees half a file
        finally:
            partial.unlink(missing_ok=True)
        return target

    def read_artifact(self, model_id: str, library: str = "") -> bytes:
        """A model's runnable artifact in memory (checksum verified)."""
        header, chunks = self._artifact(model_id, library)
        return b"".join(_verified(header, chunks))

    def _artifact(self, model_id: str, library: str) -> tuple[qpb.ArtifactHeader, Iterator[bytes]]:
        stream = self.query.stream("DownloadModel", qpb.DownloadModelRequest(model_id=model_id, library=library))
        first = next(stream, None)
        if first is None or first.WhichOneof("part") != "header":
            raise DataLoss(f"download of model {model_id!r}: the stream did not start with its header")
        return first.header, (m.chunk for m in stream)

    def report_performance(
        self, query_id: str, model_id: str, score: float, cost: pb.Cost | None = None, *, request_id: str = ""
    ) -> qpb.ReportPerformanceResponse:
        """Report a measured score. One request id per call (a new uuid unless given), the same on every retry
        the channel makes, so the service stores the report once; the response says whether it is quarantined."""
        request = qpb.ReportPerformanceRequest(
            query_id=query_id, model_id=model_id, score=score, cost=cost, request_id=request_id or str(uuid.uuid4())
        )
        return self.query.call("ReportPerformance", request)

    # -- administration: on the owning services (see the class docstring) -------------------------------

    def import_library(self, path: str | os.PathLike[str], *, replace: bool = False) -> kpb.ImportLibraryResponse:
        """Upload a bundle (folder or archive) to Storage, then have Knowledge import it, all or nothing.

        The response's `warnings` name the columns of models.csv / datasets.csv the estimators ignore.
        """
        data = pack_path(path)
        blob = self._storage().put_bytes(data, name=Path(path).name)
        return self._knowledge().import_library(blob.blob_id, replace=replace, request_id=str(uuid.uuid4()))

    def export_library(self, name: str, path: str | os.PathLike[str]) -> Path:
        """Write a library as a bundle: a folder, or an archive when `path` ends in .tar.gz / .tgz / .zip."""
        response = self._knowledge().export_library(name)
        data = self._storage().get_bytes(response.blob_id)
        target = Path(path)
        suffixes = "".join(target.suffixes[-2:]).lower()
        if suffixes.endswith((".tar.gz", ".tgz")):
            target.write_bytes(data)
        elif suffixes.endswith(".zip"):
            target.write_bytes(zip_members(bundle_members(read_bundle(data, label=name))))
        else:
            write_bundle(read_bundle(data, label=name), target)
        return target

    def delete_library(self, name: str) -> None:
        self._knowledge().delete_library(name)

    def list_queries(self, library: str = "", limit: int = 100) -> list[QueryRecord]:
        return self._knowledge().list_queries(library, limit)

    def purge_queries(self, older_than_unix: float = 0.0) -> int:
        return self._knowledge().purge_queries(older_than_unix)

    def retract_feedback(self, library: str, request_id: str, note: str = "") -> kpb.DeleteInteractionResponse:
        """Remove the records a report (or any write) stored, by its request id; audited with who and when."""
        return self._knowledge().retract(library, request_id, note)

    def confirm_feedback(self, library: str, request_id: str, note: str = "") -> kpb.ConfirmInteractionResponse:
        """Release a quarantined report to learning; audited."""
        return self._knowledge().confirm(library, request_id, note)

    def audit_log(self, library: str, limit: int = 100) -> list[AuditEntry]:
        return self._knowledge().audit_log(library, limit)

    def train(self, library: str) -> rpb.EstimatorInfoResponse:
        return self._recommender().train(library)

    def estimator_info(self, library: str) -> rpb.EstimatorInfoResponse:
        return self._recommender().estimator_info(library)

    def store_evaluation(self, library: str, report_json: str) -> str:
        """Keep `modsnet eval`'s report as the library's latest (the web app's evaluation view shows it).

        Returns its blob id."""
        blob = self._storage().put_bytes(report_json.encode(), name=f"evaluation-{library}.json")
        self._storage().set_pointer(EVALUATION_POINTER.format(library=library), blob.blob_id)
        return str(blob.blob_id)

    def _knowledge(self) -> KnowledgeClient:
        if self.knowledge is None:
            raise ConfigError("library administration goes to the knowledge service: give a knowledge address")
        return self.knowledge

    def _storage(self) -> StorageClient:
        if self.storage is None:
            raise ConfigError("a library's bundle travels through the storage service: give a storage address")
        return self.storage

    def _recommender(self) -> RecommenderClient:
        if self.recommender is None:
            raise ConfigError("estimator administration goes to the recommender service: give a recommender address")
        return self.recommender

    def close(self) -> None:
        for client in (self.query, self.knowledge, self.storage, self.recommender):
            if client is not None:
                client.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
