"""Fuzzing every RPC of the four services with generated messages, over real gRPC on an embedded cluster.

For each method of each service (read from the descriptors in `modsnet.v1`, so a new RPC is fuzzed without
a change here) messages are generated field by field: numbers including NaN, ±inf, huge and negative
values, strings that are ids of the cluster's library, models, datasets, queries and blobs as well as empty,
odd and huge ones, repeated and map fields, nested messages. Streaming uploads (Search, PutBlob) get a
header and chunks of valid, mutated or random files, or a stream out of order; ImportLibrary gets blobs
of mutated bundles. Every call must end OK or with a status that blames the request (`ALLOWED`), never
INTERNAL, UNKNOWN, UNAVAILABLE or a missed deadline, and every service must answer its health check SERVING
afterwards; after a write, every library must still export as a valid bundle. RPCs that write or delete
run on a cluster of their own, whose library is imported again after a case deletes it. The estimator is
kNN ($MODSNET_ESTIMATOR chooses another): these tests are about what a request can do to the services, not
about the estimator's quality.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fuzzing import fuzz_settings, mutated, zip_bytes
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import given
from hypothesis import strategies as st
from synthetic import make_table, write_library

from modsnet.data.bundle import read_bundle
from modsnet.embedded import EmbeddedCluster
from modsnet.runtime.errors import NotFound
from modsnet.v1 import (
    common_pb2,
    knowledge_pb2,
    knowledge_pb2_grpc,
    query_pb2,
    query_pb2_grpc,
    recommender_pb2,
    recommender_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
)

ALLOWED = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
CALL_SECONDS = 60.0  # far above any real call here: a call that needs it has hung
SERVICES = {
    "query": (query_pb2, query_pb2_grpc.QueryStub, "Query"),
    "knowledge": (knowledge_pb2, knowledge_pb2_grpc.KnowledgeStub, "Knowledge"),
    "recommender": (recommender_pb2, recommender_pb2_grpc.RecommenderStub, "Recommender"),
    "storage": (storage_pb2, storage_pb2_grpc.StorageStub, "Storage"),
}
METHODS = [
    (service, method)
    for service, (module, _, name) in SERVICES.items()
    for method in module.DESCRIPTOR.services_by_name[name].methods
]
# RPCs that write or delete: each target of these runs on a cluster of its own.
WRITES = {
    "ImportLibrary", "AddInteractions", "LogQuery", "DeleteLibrary", "PurgeQueries", "ReportPerformance",
    "DeleteBlob", "SetPointer", "Train", "PutBlob", "ExportLibrary",
}  # fmt: skip
CASES = 8  # per RPC in `make test`
# Failures that belong to another part of issue 12 (validated atomic writes; GetBlob past the end): kept
# running, not fixed here; remove the mark when that part lands.
KNOWN: dict[str, str] = {}  # RPC -> why its fuzzing is expected to fail (none today)


# ----------------------------------------------------------------------------------------------- the cluster


class Target:
    """A running embedded cluster with one library, a logged search, an artifact, and the ids they hold."""

    def __init__(self, home: Path, bundle: Path, query_csv: Path):
        self.bundle = bundle
        self.cluster = EmbeddedCluster(
            home, import_builtins=False, estimator=os.environ.get("MODSNET_ESTIMATOR", "knn")
        ).start()
        self.cluster.client.import_library(bundle)
        search = self.cluster.client.search(query_csv, k=3)
        self.channels = {name: grpc.insecure_channel(address) for name, address in self.cluster.addresses.items()}
        self.stubs = {name: SERVICES[name][1](channel) for name, channel in self.channels.items()}
        blobs = sorted(p.name for p in (home / "blobs").rglob("*") if p.is_file() and len(p.name) == 64)
        # Ids that exist, by the field names that hold them (so most requests get past the first lookup).
        self.ids: dict[str, list[str]] = {
            "library": ["synth"],
            "name": ["synth", "fuzzlib"],
            "query_id": [search.query_id],
            "model_id": [m.model_id for m in search.models] + [f"m{j}" for j in range(6)],
            "dataset_id": [f"d{i}" for i in range(10)],
            "blob_id": blobs,
            "fingerprint": [search.dataset.fingerprint],
        }
        self.ids[""] = sorted({i for values in self.ids.values() for i in values})

    def rebuild(self) -> None:
        """Import the library again when a case deleted it, so the next case has something to hit."""
        if "synth" not in {lib.name for lib in self.cluster.client.list_libraries()}:
            self.cluster.client.import_library(self.bundle)

    def assert_healthy(self) -> None:
        for name, channel in self.channels.items():
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert status.status == health_pb2.HealthCheckResponse.SERVING, name

    def assert_exports(self, *, blobs_deleted: bool = False) -> None:
        """Every library exports, and the export reads back as a valid bundle: no write left it unexportable.

        `blobs_deleted`: a case deleted blobs, so an export that needs a deleted artifact is NOT_FOUND.
        """
        client = self.cluster.client
        assert client.knowledge is not None and client.storage is not None
        for library in client.list_libraries():
            try:
                exported = client.knowledge.export_library(library.name)
            except NotFound:
                if blobs_deleted:
                    continue
                raise
            read_bundle(client.storage.get_bytes(exported.blob_id), label=f"export of {library.name}")

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
        self.cluster.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The library bundle (with an artifact for DownloadModel) and a CSV to search with."""
    folder = tmp_path_factory.mktemp("fuzz-files")
    bundle = write_library(folder / "synth")
    models = (bundle / "models.csv").read_text().splitlines()
    models = [models[0] + ",artifact", *(f"{row}," for row in models[1:])]
    models[1] += "m0.json"
    (bundle / "models.csv").write_text("\n".join(models) + "\n")
    (bundle / "artifacts").mkdir()
    (bundle / "artifacts" / "m0.json").write_text('{"kind": "constant"}')
    query_csv = folder / "query.csv"
    make_table(80, 4, 2, 7).to_csv(query_csv, index=False)
    return bundle, query_csv


@pytest.fixture(scope="module")
def shared_target(tmp_path_factory: pytest.TempPathFactory, files: tuple[Path, Path]) -> Iterator[Target]:
    target = Target(tmp_path_factory.mktemp("fuzz-shared"), *files)
    yield target
    target.close()


@pytest.fixture
def target(request: pytest.FixtureRequest, tmp_path: Path, files: tuple[Path, Path]) -> Iterator[Target]:
    method = request.node.callspec.params["method"][1]
    if method not in WRITES:
        yield request.getfixturevalue("shared_target")
        return
    own = Target(tmp_path / "home", *files)
    yield own
    own.close()


# ----------------------------------------------------------------------------------------------- messages

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
ODD_STRINGS = ["", " ", "../../etc/passwd", "a\x00b", "SYNTH", "synth\n", "%s%n", "é✓", "*", "x" * 100_000]


def scalars(field: FieldDescriptor, ids: dict[str, list[str]]) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        known = st.sampled_from(ids.get(field.name) or ids[""])
        return st.one_of(known, known, st.sampled_from(ids[""]), st.sampled_from(ODD_STRINGS), st.text(max_size=40))
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        odd = st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, -1.0, 0.0, 5e-324, 0.5, 1e9])
        return st.one_of(odd, st.floats(width=32 if kind == FieldDescriptor.TYPE_FLOAT else 64))
    if kind == FieldDescriptor.TYPE_ENUM:
        return st.one_of(st.sampled_from([v.number for v in field.enum_type.values]), st.integers(-3, 50))
    low, high = _INT_RANGES[kind]
    return st.one_of(
        st.sampled_from([v for v in (-1, 0, 1, 3, 100, low, high) if low <= v <= high]), st.integers(low, high)
    )


@st.composite
def messages(draw: st.DrawFn, cls: type[Message], ids: dict[str, list[str]], depth: int = 0) -> Message:
    """A message of `cls` with a random subset of its fields set to random values (nested up to 3 deep)."""
    message = cls()
    chosen_oneofs = {oneof.name: draw(st.sampled_from([None, *oneof.fields])) for oneof in cls.DESCRIPTOR.oneofs}
    for field in cls.DESCRIPTOR.fields:
        oneof = field.containing_oneof
        if oneof is not None and chosen_oneofs.get(oneof.name) is not field:
            continue
        if oneof is None and not draw(st.integers(0, 3)):  # a field left unset a quarter of the time
            continue
        nested = field.message_type
        if nested is not None and nested.GetOptions().map_entry:
            key, value = nested.fields_by_name["key"], nested.fields_by_name["value"]
            if value.message_type is not None:
                continue  # no map of messages in these protos
            entries = draw(st.dictionaries(scalars(key, ids), scalars(value, ids), max_size=4))
            getattr(message, field.name).update(entries)
        elif nested is not None:
            if depth >= 3:
                continue
            child = messages(nested._concrete_class, ids, depth + 1)
            if field.is_repeated:
                for value in draw(st.lists(child, max_size=3)):
                    getattr(message, field.name).add().CopyFrom(value)
            else:
                getattr(message, field.name).CopyFrom(draw(child))
        elif field.is_repeated:
            getattr(message, field.name).extend(draw(st.lists(scalars(field, ids), max_size=4)))
        else:
            setattr(message, field.name, draw(scalars(field, ids)))
    return message


def _chunks(data: bytes, pieces: int) -> list[bytes]:
    step = max(1, math.ceil(len(data) / pieces))
    return [data[i : i + step] for i in range(0, len(data), step)] or [b""]


def _csv() -> bytes:
    buffer = io.StringIO()
    make_table(60, 3, 2, 11).to_csv(buffer, index=False)
    return buffer.getvalue().encode()


UPLOADS = [_csv(), b"2theta intensity\n" + b"".join(b"%d %d\n" % (10 + i, 100 + (i % 7) * 30) for i in range(60))]


def upload_stream(draw: st.DrawFn, method: MethodDescriptor, ids: dict[str, list[str]]) -> tuple[list[Message], bool]:
    """A client stream: a fuzzed header then chunks of a file (valid, mutated or random), or any messages.

    Also says whether the stream claims a checksum its bytes do not have (DATA_LOSS is then the answer).
    """
    request = method.input_type._concrete_class
    header_field = request.DESCRIPTOR.oneofs[0].fields[0]
    if not draw(st.integers(0, 4), label="well formed"):
        stream = draw(st.lists(messages(request, ids), max_size=4), label="stream")
        first = stream[0] if stream else None
        claims = first is not None and first.WhichOneof("part") == header_field.name
        return stream, claims and bool(getattr(first, header_field.name).expected_sha256)
    header = draw(messages(header_field.message_type._concrete_class, ids), label="header")
    data = draw(mutated(UPLOADS), label="file")
    if draw(st.booleans(), label="true sha256"):
        header.expected_sha256 = hashlib.sha256(data).hexdigest()
    pieces = _chunks(data, draw(st.integers(1, 3), label="pieces"))
    wrong = bool(header.expected_sha256) and header.expected_sha256 != hashlib.sha256(data).hexdigest()
    return [request(**{header_field.name: header}), *(request(chunk=piece) for piece in pieces)], wrong


def import_request(draw: st.DrawFn, target: Target, bundle: bytes) -> Message:
    """ImportLibrary of a stored mutated bundle (named fuzzlib), or of any blob id."""
    if draw(st.booleans(), label="stored bundle"):
        content = draw(mutated([bundle]), label="bundle")
        blob_id = target.cluster.client.storage.put_bytes(content).blob_id
        return knowledge_pb2.ImportLibraryRequest(blob_id=blob_id, replace=draw(st.booleans(), label="replace"))
    return draw(messages(knowledge_pb2.ImportLibraryRequest, target.ids), label="request")


def call(
    target: Target, service: str, method: MethodDescriptor, request: Any, also: frozenset[grpc.StatusCode] = frozenset()
) -> grpc.StatusCode:
    """Make the call (reading any response stream to its end) and return its status (ALLOWED, or `also`)."""
    stub_method = getattr(target.stubs[service], method.name)
    try:
        if method.client_streaming:
            stub_method(iter(request), timeout=CALL_SECONDS)
        elif method.server_streaming:
            for _ in stub_method(request, timeout=CALL_SECONDS):
                pass
        else:
            stub_method(request, timeout=CALL_SECONDS)
    except grpc.RpcError as exc:
        assert exc.code() in ALLOWED | also, f"{service}.{method.name}: {exc.code().name}: {exc.details()}"
        return exc.code()
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def bundle_zip(files: tuple[Path, Path]) -> bytes:
    """The library as a zip, renamed fuzzlib (the seed of ImportLibrary's mutated bundles)."""
    folder = files[0]
    members = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    members["library.yaml"] = members["library.yaml"].replace(b"name: synth", b"name: fuzzlib")
    return zip_bytes(members)


def _param(service: str, method: MethodDescriptor) -> Any:
    marks = [pytest.mark.xfail(reason=KNOWN[method.name], strict=False)] if method.name in KNOWN else []
    return pytest.param((service, method.name), marks=marks, id=f"{service}.{method.name}")


@pytest.mark.parametrize("method", [_param(s, m) for s, m in METHODS])
@fuzz_settings(CASES, hang_seconds=2 * CALL_SECONDS)
@given(data=st.data())
def test_fuzz_request(target: Target, bundle_zip: bytes, method: tuple[str, str], data: st.DataObject) -> None:
    service, name = method
    descriptor = SERVICES[service][0].DESCRIPTOR.services_by_name[SERVICES[service][2]].methods_by_name[name]
    also: frozenset[grpc.StatusCode] = frozenset()
    if name == "ImportLibrary":
        request: Any = import_request(data.draw, target, bundle_zip)
    elif descriptor.client_streaming:
        request, wrong_checksum = upload_stream(data.draw, descriptor, target.ids)
        if wrong_checksum:  # bytes that do not match their stated checksum arrived corrupt
            also = frozenset({grpc.StatusCode.DATA_LOSS})
    else:
        request = data.draw(messages(descriptor.input_type._concrete_class, target.ids), label="request")
    call(target, service, descriptor, request, also)
    target.assert_healthy()
    if name in WRITES:
        target.assert_exports(blobs_deleted=name == "DeleteBlob")
    target.rebuild()


# ----------------------------------------------------------------------------------------------- found by fuzzing


def test_a_feedback_with_a_negative_infinite_cost_leaves_the_library_exportable(
    tmp_path: Path, files: tuple[Path, Path]
) -> None:
    target = Target(tmp_path / "home", *files)
    try:
        request = query_pb2.ReportPerformanceRequest(
            query_id=target.ids["query_id"][0],
            model_id=target.ids["model_id"][0],
            score=0.5,
            cost=common_pb2.Cost(train_seconds=-math.inf),
        )
        call(
            target,
            "query",
            SERVICES["query"][0].DESCRIPTOR.services_by_name["Query"].methods_by_name["ReportPerformance"],
            request,
        )
        target.assert_exports()
    finally:
        target.close()


@pytest.mark.parametrize(
    "dataset",
    [
        common_pb2.Dataset(dataset_id=""),
        common_pb2.Dataset(dataset_id="d9", metadata={"m3": "a\x00b"}),  # a NUL byte: no CSV reads it back
        common_pb2.Dataset(dataset_id="d9", metadata={" ": "x"}),  # a blank column name
        common_pb2.Dataset(dataset_id="d9", metadata={"dataset_id": "d1"}),  # would rename the row
    ],
    ids=["empty id", "NUL in metadata", "blank metadata name", "metadata named dataset_id"],
)
def test_a_new_dataset_that_export_could_not_write_is_refused_and_the_library_stays_exportable(
    tmp_path: Path, files: tuple[Path, Path], dataset: common_pb2.Dataset
) -> None:
    target = Target(tmp_path / "home", *files)
    try:
        request = knowledge_pb2.AddInteractionsRequest(library="synth", new_datasets=[dataset])
        method = SERVICES["knowledge"][0].DESCRIPTOR.services_by_name["Knowledge"].methods_by_name["AddInteractions"]
        with pytest.raises(grpc.RpcError) as refused:
            target.stubs["knowledge"].AddInteractions(request, timeout=CALL_SECONDS)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method.name
        target.assert_exports()
    finally:
        target.close()


def test_a_search_with_the_largest_memory_constraint_is_not_internal(tmp_path: Path, files: tuple[Path, Path]) -> None:
    target = Target(tmp_path / "home", *files)
    try:
        header = query_pb2.SearchHeader(constraints=common_pb2.Constraints(max_memory_bytes=2**63 - 1))
        stream = [query_pb2.SearchRequest(header=header), query_pb2.SearchRequest(chunk=UPLOADS[0])]
        method = SERVICES["query"][0].DESCRIPTOR.services_by_name["Query"].methods_by_name["Search"]
        call(target, "query", method, stream)
    finally:
        target.close()
