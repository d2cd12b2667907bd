"""Authentication and scopes: who may call which RPC, and TLS for the channels between services.

Off unless configured (the embedded default is one user on loopback). When a service is given an auth file
or verifies client certificates (mTLS), every call but health and reflection must come with credentials:
- a bearer token (metadata `authorization: Bearer TOKEN`), looked up by its sha256 in the auth file, which
  holds no token in clear (a Kubernetes Secret can be mounted as that file);
- or a client certificate the server verified against its CA; its common name is the identity. The four
  service names get the `internal` scope unless the auth file says otherwise; other names get the scopes
  the file lists for them, and a certificate of an unlisted name authenticates no one.
A missing or unknown credential is UNAUTHENTICATED; a known one without the method's scope is
PERMISSION_DENIED. `METHOD_SCOPES` is the one table of what each RPC needs; a method not in it needs
`admin`, so a new RPC is closed until someone opens it here.

A service acts for its caller downstream under its own identity (its certificate or its `service_token`);
it names the caller in metadata `x-modsnet-principal`, which a server believes only from a principal with
the `internal` scope (anyone else sending it is refused). The handler of a call reads who is acting with
`current_principal()`.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml

from modsnet.runtime.errors import ConfigError, PermissionDenied, Unauthenticated

SEARCH = "search"  # search, libraries, model metadata and artifacts, the reads a search makes
FEEDBACK = "feedback"  # reports of measured performance
ADMIN = "admin"  # import, export, delete, purge, the query log, training, blobs
INTERNAL = "internal"  # what the services call on each other
SCOPES = (SEARCH, FEEDBACK, ADMIN, INTERNAL)
# An administrator may also do what a user does; `internal` implies nothing (a service has its own table rows).
IMPLIED = {ADMIN: frozenset({SEARCH, FEEDBACK})}

SERVICE_IDENTITIES = ("query", "recommender", "knowledge", "storage")  # certificate names of the services
PRINCIPAL_HEADER = "x-modsnet-principal"
AUTHORIZATION_HEADER = "authorization"

_S, _F, _A, _I = frozenset({SEARCH}), frozenset({FEEDBACK}), frozenset({ADMIN}), frozenset({INTERNAL})

METHOD_SCOPES: dict[str, frozenset[str]] = {
    # Query: the public API.
    "/modsnet.v1.Query/Search": _S,
    "/modsnet.v1.Query/ListLibraries": _S,
    "/modsnet.v1.Query/FindModel": _S,
    "/modsnet.v1.Query/DownloadModel": _S,
    "/modsnet.v1.Query/ReportPerformance": _F,
    "/modsnet.v1.Query/ListProfiles": _S,
    # Knowledge: reads a search client may make, the services' own calls, administration.
    "/modsnet.v1.Knowledge/ListLibraries": _S | _I,
    "/modsnet.v1.Knowledge/GetModel": _S | _I,
    "/modsnet.v1.Knowledge/GetDataset": _S | _I,
    "/modsnet.v1.Knowledge/FindDataset": _S | _I,
    "/modsnet.v1.Knowledge/GraphVersion": _S | _I,
    "/modsnet.v1.Knowledge/AddInteractions": _F | _I,
    "/modsnet.v1.Knowledge/AddFeedback": _F | _I,  # the query service's feedback, in one call
    "/modsnet.v1.Knowledge/GraphSnapshot": _I | _A,
    "/modsnet.v1.Knowledge/LogQuery": _I,
    "/modsnet.v1.Knowledge/GetQuery": _A | _I,  # the query service reads a logged search to accept feedback
    "/modsnet.v1.Knowledge/ListQueries": _A,
    "/modsnet.v1.Knowledge/PurgeQueries": _A,
    "/modsnet.v1.Knowledge/ImportLibrary": _A,  # never internal: only an administrator brings artifacts in
    "/modsnet.v1.Knowledge/ExportLibrary": _A,
    "/modsnet.v1.Knowledge/DeleteLibrary": _A,
    "/modsnet.v1.Knowledge/DeleteInteraction": _A,  # retract a feedback (audited)
    "/modsnet.v1.Knowledge/ConfirmInteraction": _A,  # let a quarantined feedback be learned from (audited)
    "/modsnet.v1.Knowledge/ListAudit": _A,
    # Recommender.
    "/modsnet.v1.Recommender/Recommend": _S | _I,
    "/modsnet.v1.Recommender/SelectProbes": _S | _I,
    "/modsnet.v1.Recommender/EstimatorInfo": _S | _I,
    "/modsnet.v1.Recommender/Train": _A,
    # Storage: blobs hold uploads, bundles and checkpoints, so no user reads them directly.
    "/modsnet.v1.Storage/PutBlob": _A | _I,
    "/modsnet.v1.Storage/GetBlob": _A | _I,
    "/modsnet.v1.Storage/StatBlob": _A | _I,
    "/modsnet.v1.Storage/GetPointer": _A | _I,
    "/modsnet.v1.Storage/SetPointer": _A | _I,
    "/modsnet.v1.Storage/DeleteBlob": _A,
}
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")  # probes and tools need no credentials

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

_principal: contextvars.ContextVar[str | None] = contextvars.ContextVar("modsnet_principal", default=None)


def required_scopes(method: str) -> frozenset[str]:
    """The scopes any one of which lets a caller call `method` (full name, /package.Service/Method)."""
    return METHOD_SCOPES.get(method, _A)


def is_open(method: str) -> bool:
    return method.startswith(OPEN_SERVICES)


def current_principal() -> str | None:
    """Who the call being handled acts for (None when authentication is off and no service named anyone)."""
    return _principal.get()


@contextlib.contextmanager
def acting_for(name: str | None) -> Iterator[None]:
    """Publish who the call being handled acts for, outside a gRPC call (the query service's HTTP face): its
    calls to the other services then name that principal, as `CallGuard.call` makes them do for gRPC."""
    token = _principal.set(name)
    try:
        yield
    finally:
        _principal.reset(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A random bearer token (256 bits); only its hash goes into the auth file."""
    return "msn_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str]

    def may(self, needed: frozenset[str]) -> bool:
        held = set(self.scopes)
        for scope in self.scopes:
            held |= IMPLIED.get(scope, frozenset())
        return bool(held & needed)


@dataclass(frozen=True)
class AuthTable:
    """Who is who: token hashes and certificate names, each with its scopes (the auth file, parsed)."""

    tokens: Mapping[str, Principal] = field(default_factory=dict)  # sha256 hex of the token -> principal
    certificates: Mapping[str, Principal] = field(default_factory=dict)  # certificate common name -> principal

    @classmethod
    def default(cls) -> AuthTable:
        return cls({}, {n: Principal(n, frozenset({INTERNAL})) for n in SERVICE_IDENTITIES})

    @classmethod
    def load(cls, path: str | Path) -> AuthTable:
        """Read an auth file (YAML or JSON):

        tokens:
          - {name: alice, sha256: <64 hex>, scopes: [search, feedback]}
        certificates:            # optional; the services' names default to [internal]
          - {name: ops-laptop, scopes: [admin]}
        """
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML 1.1 reads JSON too
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"auth file {path}: cannot read it ({str(exc).splitlines()[0]})") from None
        if data is None:
            data = {}
        if not isinstance(data, dict) or set(data) - {"tokens", "certificates"}:
            raise ConfigError(f"auth file {path}: expected a mapping with 'tokens' and 'certificates' lists")
        tokens: dict[str, Principal] = {}
        for i, entry in enumerate(data.get("tokens") or []):
            where = f"auth file {path}, tokens[{i}]"
            principal = _principal_of(entry, where, {"name", "sha256", "scopes"})
            digest = str(entry.get("sha256", "")).lower()
            if not _SHA256.match(digest):
                raise ConfigError(f"{where}: 'sha256' must be the 64 hex digits of the token's sha256")
            if digest in tokens:
                raise ConfigError(f"{where}: the same token hash is listed twice")
            tokens[digest] = principal
        certificates = dict(cls.default().certificates)
        for i, entry in enumerate(data.get("certificates") or []):
            principal = _principal_of(entry, f"auth file {path}, certificates[{i}]", {"name", "scopes"})
            certificates[principal.name] = principal
        return cls(tokens, certificates)


def _principal_of(entry: Any, where: str, keys: set[str]) -> Principal:
    if not isinstance(entry, dict) or set(entry) - keys:
        raise ConfigError(f"{where}: expected a mapping with keys {', '.join(sorted(keys))}")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}: 'name' must be 1-128 letters, digits or ._@:-")
    scopes = entry.get("scopes")
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        raise ConfigError(f"{where}: 'scopes' must be a non-empty list of {', '.join(SCOPES)}")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ConfigError(f"{where}: unknown scope {unknown[0]!r} (scopes: {', '.join(SCOPES)})")
    return Principal(name, frozenset(scopes))


class CallGuard:
    """Authenticates and authorizes each call (when `table` is given) and publishes who acts for it."""

    def __init__(self, table: AuthTable | None):
        self.table = table

    @contextlib.contextmanager
    def call(self, method: str, context: grpc.ServicerContext) -> Iterator[None]:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        forwarded = metadata.get(PRINCIPAL_HEADER) or None
        acting = forwarded
        if self.table is not None and not is_open(method):
            caller = self.authenticate(metadata, context)
            if forwarded is not None and not caller.may(_I):
                raise PermissionDenied(f"{caller.name} may not act for another principal ({PRINCIPAL_HEADER})")
            needed = required_scopes(method)
            if not caller.may(needed):
                raise PermissionDenied(
                    f"{caller.name} lacks the scope {' or '.join(sorted(needed))} that {method.lstrip('/')} needs"
                )
            acting = forwarded or caller.name
        token = _principal.set(acting)
        try:
            yield
        finally:
            _principal.reset(token)

    def authenticate(self, metadata: Mapping[str, str], context: grpc.ServicerContext) -> Principal:
        assert self.table is not None
        header = metadata.get(AUTHORIZATION_HEADER)
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("the authorization metadata must be 'Bearer TOKEN'")
            principal = self.table.tokens.get(hash_token(token.strip()))
            if principal is None:
                raise Unauthenticated("unknown bearer token")
            return principal
        names = (context.auth_context() or {}).get("x509_common_name") or []
        if names:
            name = names[0].decode("utf-8", "replace")
            principal = self.table.certificates.get(name)
            if principal is None:
                raise Unauthenticated(f"client certificate {name!r} is not listed in the auth file; send a token")
            return principal
        raise Unauthenticated("no credentials: send 'authorization: Bearer TOKEN' or a client certificate")


# ----------------------------------------------------------------------------------------------- TLS


def _read(path: str | os.PathLike[str] | None, what: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class ClientCredentials:
    """How a client reaches a service: TLS (verifying the server with `ca`, or the system roots when `tls`),
    optionally its own certificate (mTLS), and a bearer token sent with every call."""

    token: str | None = None
    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    tls: bool = False

    @classmethod
    def from_files(
        cls,
        *,
        token: str | None = None,
        ca: str | os.PathLike[str] | None = None,
        cert: str | os.PathLike[str] | None = None,
        key: str | os.PathLike[str] | None = None,
        tls: bool = False,
    ) -> ClientCredentials:
        if bool(cert) != bool(key):
            raise ConfigError("a client certificate needs its key, and a key its certificate")
        return cls(
            token or None,
            _read(ca, "CA certificate"),
            _read(cert, "certificate"),
            _read(key, "private key"),
            tls,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        if not (self.tls or self.ca or self.cert):
            return None
        return grpc.ssl_channel_credentials(self.ca, self.key, self.cert)

    def metadata(self) -> list[tuple[str, str]]:
        """Metadata of every call: the token, and who the service making the call acts for."""
        pairs = [(AUTHORIZATION_HEADER, f"Bearer {self.token}")] if self.token else []
        acting = current_principal()
        if acting:
            pairs.append((PRINCIPAL_HEADER, acting))
        return pairs


@dataclass(frozen=True)
class Security:
    """A service's TLS and authentication settings, files read: what its server accepts and what its
    clients of the other services present."""

    cert: bytes | None = None
    key: bytes | None = None
    ca: bytes | None = None
    require_client_cert: bool = True
    table: AuthTable | None = None
    service_token: str | None = None

    @classmethod
    def from_config(cls, config: Any) -> Security:
        """From a `CommonConfig`'s tls_* / auth_file / service_token settings."""
        cert = _read(config.tls_cert, "TLS certificate")
        key = _read(config.tls_key, "TLS private key")
        if bool(cert) != bool(key):
            raise ConfigError("TLS needs both MODSNET_TLS_CERT and MODSNET_TLS_KEY")
        ca = _read(config.tls_ca, "CA certificate")
        mtls = bool(ca and cert and config.tls_require_client_cert)
        table = AuthTable.load(config.auth_file) if config.auth_file else AuthTable.default() if mtls else None
        return cls(cert, key, ca, bool(config.tls_require_client_cert), table, config.service_token or None)

    @property
    def enabled(self) -> bool:
        return self.table is not None

    def server_credentials(self) -> grpc.ServerCredentials | None:
        if not self.cert or not self.key:
            return None
        verify = self.ca is not None and self.require_client_cert
        return grpc.ssl_server_credentials([(self.key, self.cert)], self.ca if verify else None, verify)

    def client(self) -> ClientCredentials:
        """What this service presents to the others: its certificate (mTLS) and/or its service token."""
        return ClientCredentials(
            self.service_token, self.ca, self.cert if self.ca else None, self.key if self.ca else None
        )


def token_entry(name: str, scopes: list[str], token: str) -> str:
    """The auth-file entry (YAML) of a token: its name, hash and scopes, never the token itself."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ConfigError(f"scopes must be some of {', '.join(SCOPES)}, not {','.join(unknown) or 'none'}")
    if not _NAME.match(name):
        raise ConfigError("a token's name must be 1-128 letters, digits or ._@:-")
    return json.dumps({"name": name, "sha256": hash_token(token), "scopes": scopes})
