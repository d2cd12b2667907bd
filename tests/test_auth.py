"""Authentication and scopes: the four services with authentication on (mTLS between them, certificates from
`modsnet.offline.certs`, bearer tokens from an auth file), on loopback ports.

Every RPC of every service is called three ways: with no credential (UNAUTHENTICATED), with a token that
lacks the method's scope (PERMISSION_DENIED) and with one that has it (anything but those two: the empty
request may well be INVALID_ARGUMENT or NOT_FOUND). A search then runs end to end with a `search` token,
the query service calling the others under its own certificate.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from synthetic import make_table

from modsnet.client import Client
from modsnet.offline.certs import make_all
from modsnet.runtime import auth
from modsnet.runtime.errors import PermissionDenied, Unauthenticated
from modsnet.runtime.server import ServiceServer
from modsnet.v1 import common_pb2 as pb
from modsnet.v1 import knowledge_pb2, query_pb2, recommender_pb2, storage_pb2
from services.knowledge.config import KnowledgeConfig
from services.knowledge.server import create_server as knowledge_server
from services.query.config import QueryConfig
from services.query.server import create_server as query_server
from services.recommender.config import RecommenderConfig
from services.recommender.server import create_server as recommender_server
from services.storage.config import StorageConfig
from services.storage.server import create_server as storage_server

SERVICES = {
    "query": query_pb2.DESCRIPTOR.services_by_name["Query"],
    "knowledge": knowledge_pb2.DESCRIPTOR.services_by_name["Knowledge"],
    "recommender": recommender_pb2.DESCRIPTOR.services_by_name["Recommender"],
    "storage": storage_pb2.DESCRIPTOR.services_by_name["Storage"],
}
ALL_METHODS = [(service, method) for service, d in SERVICES.items() for method in d.methods]
# One token per user scope; the services carry `internal` by their certificates.
TOKEN_SCOPES = {"searcher": ["search"], "reporter": ["feedback"], "operator": ["admin"]}


@dataclass
class Secured:
    certs: Path
    addresses: dict[str, str]
    tokens: dict[str, str]  # holder -> token
    servers: dict[str, ServiceServer]

    def channel(self, service: str, identity: str | None = "admin") -> grpc.Channel:
        """A TLS channel to `service`, presenting `identity`'s client certificate (None: none)."""
        ca = (self.certs / "ca.pem").read_bytes()
        if identity is None:
            credentials = grpc.ssl_channel_credentials(ca)
        else:
            key = (self.certs / f"{identity}-key.pem").read_bytes()
            credentials = grpc.ssl_channel_credentials(ca, key, (self.certs / f"{identity}.pem").read_bytes())
        return grpc.secure_channel(self.addresses[service], credentials)

    def client(self, holder: str) -> Client:
        return Client(
            query=self.addresses["query"],
            knowledge=self.addresses["knowledge"],
            storage=self.addresses["storage"],
            recommender=self.addresses["recommender"],
            token=self.tokens[holder],
            ca=self.certs / "ca.pem",
            cert=self.certs / "admin.pem",
            key=self.certs / "admin-key.pem",
        )


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, synth_bundle: Path) -> Iterator[Secured]:
    root = tmp_path_factory.mktemp("auth")
    certs = make_all(root / "certs")
    tokens = {holder: auth.new_token() for holder in TOKEN_SCOPES}
    entries = [json.loads(auth.token_entry(h, TOKEN_SCOPES[h], t)) for h, t in tokens.items()]
    auth_file = root / "auth.yaml"
    auth_file.write_text(json.dumps({"tokens": entries}))
    home = root / "home"

    def tls(name: str) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "tls_cert": str(certs / f"{name}.pem"),
            "tls_key": str(certs / f"{name}-key.pem"),
            "tls_ca": str(certs / "ca.pem"),
            "auth_file": str(auth_file),
        }

    servers: dict[str, ServiceServer] = {}
    addresses: dict[str, str] = {}

    def start(name: str, server: ServiceServer) -> str:
        servers[name] = server
        addresses[name] = f"127.0.0.1:{server.start()}"
        return addresses[name]

    try:
        storage = start("storage", storage_server(StorageConfig(home=home, **tls("storage"))))
        knowledge = start(
            "knowledge", knowledge_server(KnowledgeConfig(home=home, storage_addr=storage, **tls("knowledge")))
        )
        start(
            "recommender",
            recommender_server(
                RecommenderConfig(knowledge_addr=knowledge, storage_addr=storage, estimator="knn", **tls("recommender"))
            ),
        )
        query = QueryConfig(
            knowledge_addr=knowledge,
            recommender_addr=addresses["recommender"],
            storage_addr=storage,
            home=home,
            tls_require_client_cert=False,  # the public API: users come with tokens
            **tls("query"),
        )
        start("query", query_server(query))
        running = Secured(certs, addresses, tokens, servers)
        admin = running.client("operator")
        try:
            admin.import_library(synth_bundle)
        finally:
            admin.close()
        yield running
    finally:
        for name in ("query", "recommender", "knowledge", "storage"):
            if name in servers:
                servers[name].stop(0.5)


def call(
    channel: grpc.Channel, service: str, method: Any, metadata: tuple[tuple[str, str], ...] = ()
) -> grpc.StatusCode:
    """Call `method` with an empty request (of its streaming shape); the status code it ends with."""
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    path = f"/{SERVICES[service].full_name}/{method.name}"
    kwargs = {"request_serializer": request_class.SerializeToString, "response_deserializer": response_class.FromString}
    request = request_class()
    try:
        if method.client_streaming:
            channel.stream_unary(path, **kwargs)(iter([request]), timeout=20, metadata=metadata)
        elif method.server_streaming:
            list(channel.unary_stream(path, **kwargs)(request, timeout=20, metadata=metadata))
        else:
            channel.unary_unary(path, **kwargs)(request, timeout=20, metadata=metadata)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def lacking(needed: frozenset[str]) -> str:
    """A token holder whose scopes (admin implies search and feedback) give none of `needed`."""
    for holder, scopes in TOKEN_SCOPES.items():
        if not auth.Principal(holder, frozenset(scopes)).may(needed):
            return holder
    raise AssertionError(f"every token may call a method needing {needed}")


def test_the_scope_table_covers_every_rpc_of_every_service() -> None:
    methods = {f"/{SERVICES[s].full_name}/{m.name}" for s, m in ALL_METHODS}
    assert methods - set(auth.METHOD_SCOPES) == set(), "RPCs with no row in auth.METHOD_SCOPES"
    assert set(auth.METHOD_SCOPES) - methods == set(), "rows of auth.METHOD_SCOPES that name no RPC"
    # A method nobody listed is closed to all but administrators.
    assert auth.required_scopes("/modsnet.v1.Knowledge/SomeFutureDelete") == frozenset({auth.ADMIN})


@pytest.mark.parametrize(("service", "method"), ALL_METHODS, ids=[f"{s}.{m.name}" for s, m in ALL_METHODS])
def test_every_rpc_refuses_no_credentials_and_a_missing_scope_and_admits_its_scope(
    secured: Secured, service: str, method: Any
) -> None:
    needed = auth.required_scopes(f"/{SERVICES[service].full_name}/{method.name}")
    # The query API takes plain TLS; the others need a client certificate to connect, and the `admin`
    # certificate names no one in the auth file: without a token the caller is no one.
    channel = secured.channel(service, None if service == "query" else "admin")
    try:
        assert call(channel, service, method) == grpc.StatusCode.UNAUTHENTICATED
        assert call(channel, service, method, bearer("msn_not-a-token")) == grpc.StatusCode.UNAUTHENTICATED
        denied = call(channel, service, method, bearer(secured.tokens[lacking(needed)]))
        assert denied == grpc.StatusCode.PERMISSION_DENIED
        holder = next((h for h, s in TOKEN_SCOPES.items() if auth.Principal(h, frozenset(s)).may(needed)), None)
        admitted = call(channel, service, method, bearer(secured.tokens[holder])) if holder else None
    finally:
        channel.close()
    if holder is None:  # internal only: the calling service's certificate is what admits it
        with secured.channel(service, "query") as internal:
            admitted = call(internal, service, method)
    # Past the door, the empty request meets the service's own checks.
    assert admitted in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)


def test_only_services_may_name_the_principal_they_act_for(secured: Secured) -> None:
    method = SERVICES["knowledge"].methods_by_name["ListLibraries"]
    forged = (*bearer(secured.tokens["searcher"]), (auth.PRINCIPAL_HEADER, "operator"))
    with secured.channel("knowledge") as channel:
        assert call(channel, "knowledge", method, forged) == grpc.StatusCode.PERMISSION_DENIED
    with secured.channel("knowledge", "query") as channel:
        assert call(channel, "knowledge", method, ((auth.PRINCIPAL_HEADER, "searcher"),)) == grpc.StatusCode.OK


def test_an_internal_service_refuses_a_caller_without_a_client_certificate(secured: Secured) -> None:
    with secured.channel("knowledge", None) as channel:
        code = call(
            channel,
            "knowledge",
            SERVICES["knowledge"].methods_by_name["ListLibraries"],
            bearer(secured.tokens["operator"]),
        )
    assert code == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails: mTLS is required


def test_health_stays_open_without_credentials(secured: Secured) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with secured.channel("query", None) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_a_search_with_a_search_token_runs_end_to_end_over_mtls(secured: Secured, tmp_path: Path) -> None:
    exemplar = tmp_path / "query.csv"
    make_table(200, 6, 2, 7).to_csv(exemplar, index=False)
    searcher = secured.client("searcher")
    try:
        answer = searcher.search(exemplar, k=3, probe_budget=0)
        assert len(answer.models) == 3 and answer.query_id
        with pytest.raises(PermissionDenied, match="feedback"):
            searcher.report_performance(answer.query_id, answer.models[0].model_id, 0.8)
        with pytest.raises(PermissionDenied):
            searcher.delete_library("synth")
    finally:
        searcher.close()
    reporter = secured.client("reporter")
    try:
        recorded = reporter.report_performance(answer.query_id, answer.models[0].model_id, 0.8, pb.Cost())
        assert recorded.graph_version > 0
        with pytest.raises(PermissionDenied):
            reporter.list_libraries()
    finally:
        reporter.close()
    anonymous = Client(query=secured.addresses["query"], ca=secured.certs / "ca.pem")
    try:
        with pytest.raises(Unauthenticated):
            anonymous.list_libraries()
    finally:
        anonymous.close()


def test_the_auth_file_is_checked_when_read(tmp_path: Path) -> None:
    from modsnet.runtime.errors import ConfigError

    bad = tmp_path / "auth.yaml"
    bad.write_text("tokens:\n  - {name: eve, sha256: abc, scopes: [search]}\n")
    with pytest.raises(ConfigError, match=r"tokens\[0\].*sha256"):
        auth.AuthTable.load(bad)
    bad.write_text(f"tokens:\n  - {{name: eve, sha256: {'0' * 64}, scopes: [root]}}\n")
    with pytest.raises(ConfigError, match="unknown scope 'root'"):
        auth.AuthTable.load(bad)
    token = auth.new_token()
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"tokens": [json.loads(auth.token_entry("ann", ["search"], token))]}))
    table = auth.AuthTable.load(good)
    assert table.tokens[auth.hash_token(token)].name == "ann"
    assert token not in good.read_text()  # only the hash is stored


def test_only_an_administrator_imports_so_only_an_administrator_brings_artifacts_in(secured: Secured) -> None:
    """Artifacts of an imported library run as probes: with authentication on, no user and no service (not
    even the query service, which holds the upload) can import one."""
    method = SERVICES["knowledge"].methods_by_name["ImportLibrary"]
    with secured.channel("knowledge") as channel:
        for holder in ("searcher", "reporter"):
            assert (
                call(channel, "knowledge", method, bearer(secured.tokens[holder])) == grpc.StatusCode.PERMISSION_DENIED
            )
    for service in ("query", "recommender", "storage"):
        with secured.channel("knowledge", service) as channel:
            assert call(channel, "knowledge", method) == grpc.StatusCode.PERMISSION_DENIED


def test_the_cli_makes_a_token_and_authenticates_with_one(secured: Secured, capfd: pytest.CaptureFixture[str]) -> None:
    from modsnet import cli

    assert cli.main(["auth", "token", "--name", "bob", "--scopes", "search,feedback"]) == 0
    printed = capfd.readouterr()
    entry = json.loads(printed.out.strip().removeprefix("- "))
    token = printed.err.split("it is not stored anywhere): ")[1].split()[0]
    assert entry == {"name": "bob", "sha256": auth.hash_token(token), "scopes": ["search", "feedback"]}

    where = ["--query-addr", secured.addresses["query"], "--ca", str(secured.certs / "ca.pem")]
    assert cli.main([*where, "--token", secured.tokens["searcher"], "library", "list", "--json"]) == 0
    assert [lib["name"] for lib in json.loads(capfd.readouterr().out)] == ["synth"]
    assert cli.main([*where, "--token", secured.tokens["reporter"], "library", "list"]) == 1
    assert "lacks the scope search" in capfd.readouterr().err


def test_a_service_and_its_metrics_bind_loopback_unless_told() -> None:
    config = QueryConfig(knowledge_addr="k:1", recommender_addr="r:1", storage_addr="s:1")
    assert (config.host, config.metrics_host) == ("127.0.0.1", "127.0.0.1")
    server = ServiceServer("probe")
    try:
        server.start()
        assert server._address.startswith("127.0.0.1:")
    finally:
        server.stop(0)
