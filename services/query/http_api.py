"""The query service's HTTP/JSON face and the web app: a WSGI app on its own port, in the same process, on the
same `QueryCore` as the gRPC servicer (nothing is implemented twice: this module only translates HTTP to core
calls and records to JSON, as `servicer.py` translates protobuf).

Routes are described by `web/openapi.yaml` (served at /api/openapi.json); the page is plain HTML/CSS/JS under
`web/static/`, and the charting library is plotly.js as the pinned PyPI `plotly` package ships it, served from
the installed package (no CDN: the page works offline). Errors are JSON `{"error": "..."}` with the status of
the domain error (`STATUS`); a search refused for load is 429 with Retry-After. With authentication on, every
/api route but the OpenAPI document needs `Authorization: Bearer TOKEN` with the scope the matching gRPC method
needs (`METHOD_SCOPES`), checked against the same auth file.

The server is Werkzeug's threaded WSGI server (a thread per request, as gRPC's thread pool): an upload is read
from the socket as the core consumes it, so a large file streams to the spool, never into memory.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import logging
import math
import mimetypes
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from pathlib import Path, PurePosixPath
from typing import IO, Any

import yaml
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from modsnet.data.graph import Constraints, Cost, Objective
from modsnet.data.profiles import COST_NAMES, OBJECTIVE_NAMES, Profile, objective_name, objective_named, profile_named
from modsnet.runtime.auth import Principal, Security, acting_for, hash_token, required_scopes
from modsnet.runtime.errors import Busy, InvalidArgument, ModsnetError, NotFound, Unauthenticated
from modsnet.runtime.stubs import DEFAULT_PROBES

from .core import QueryCore, SearchOptions, SearchResult
from .insight import LibraryInsight, library_summary

log = logging.getLogger(__name__)

WEB = Path(__file__).resolve().parent / "web"
STATIC = WEB / "static"
CHUNK = 256 * 1024
MODALITIES = ("tabular", "text", "image", "xrd")

# Domain error -> HTTP status. DATA_LOSS here is the client's checksum disagreeing with its own upload.
STATUS = {
    "INVALID_ARGUMENT": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "FAILED_PRECONDITION": 409,
    "RESOURCE_EXHAUSTED": 413,
    "DATA_LOSS": 422,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}

# Each route needs the scopes of the gRPC method that does the same (one table: METHOD_SCOPES).
SEARCH_METHOD = "/modsnet.v1.Query/Search"
READ_METHOD = "/modsnet.v1.Query/ListLibraries"
PROFILES_METHOD = "/modsnet.v1.Query/ListProfiles"
MODEL_METHOD = "/modsnet.v1.Query/FindModel"
DOWNLOAD_METHOD = "/modsnet.v1.Query/DownloadModel"
FEEDBACK_METHOD = "/modsnet.v1.Query/ReportPerformance"


def plotly_js() -> Path | None:
    """plotly.min.js as the installed `plotly` package ships it (None when the package is absent)."""
    try:
        path = Path(str(importlib.resources.files("plotly") / "package_data" / "plotly.min.js"))
    except ModuleNotFoundError:
        return None
    return path if path.is_file() else None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps({"error": message}), status=status, mimetype="application/json", headers=headers)


def _json(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value, allow_nan=False), status=status, mimetype="application/json")


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


# ----------------------------------------------------------------------------------------------- parameters


def _int(args: Any, name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(f"{name}: {raw[:40]!r} is not an integer") from None
    if not low <= value <= high:
        raise InvalidArgument(f"{name}: {value} must be between {low} and {high}")
    return value


def _float(args: Any, name: str) -> float:
    raw = args.get(name)
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise InvalidArgument(f"{name}: {raw[:40]!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise InvalidArgument(f"{name}: {raw[:40]!r} must be a finite number >= 0")
    return value


def _text(args: Any, name: str, limit: int = 256) -> str:
    value = str(args.get(name) or "")
    if len(value) > limit or any(ord(c) < 32 for c in value):
        raise InvalidArgument(f"{name}: at most {limit} characters, no control characters")
    return value


def _choice(args: Any, name: str, allowed: Iterable[str]) -> str:
    """A parameter with a fixed set of values, "" when absent; present, it must be one of them (empty too)."""
    value = _text(args, name)
    if name in args and value not in allowed:
        raise InvalidArgument(f"{name}: {value!r} must be one of {', '.join(allowed)}")
    return value


def search_options(args: Any, filename: str) -> SearchOptions:
    modality = _choice(args, "modality", MODALITIES)
    exclude = frozenset(x.strip() for x in _text(args, "exclude", 65536).split(",") if x.strip())
    constraints = Constraints(
        max_train_seconds=_float(args, "max_train_seconds"),
        max_inference_seconds=_float(args, "max_inference_seconds"),
        max_memory_bytes=_float(args, "max_memory_bytes"),
        exclude_models=exclude,
    )
    sha = _text(args, "sha256").lower()
    if sha and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
        raise InvalidArgument("sha256: must be 64 hex digits")
    # Checked here, before the upload is read, with the field named as the query string spells it.
    objective, pareto_cost = _choice(args, "objective", OBJECTIVE_NAMES), _choice(args, "pareto_cost", COST_NAMES)
    profile = _text(args, "profile")
    if "profile" in args and not profile:
        raise InvalidArgument("profile: empty; leave it out for no profile")
    if pareto_cost and objective != "pareto":
        raise InvalidArgument(f"pareto_cost: goes with objective=pareto, not {objective or 'score'!r}")
    try:
        profile_named(profile)
    except InvalidArgument as exc:
        raise InvalidArgument(f"profile: {exc.message}") from None
    return SearchOptions(
        library=_text(args, "library"),
        k=_int(args, "k", 5, 1, 1000),
        target_column=_text(args, "target_column", 1024),
        constraints=constraints if constraints != Constraints() else None,
        probe_budget=_int(args, "probe_budget", DEFAULT_PROBES, 0, 1000),
        filename=filename,
        modality=modality,
        expected_sha256=sha,
        objective=objective_named(objective, pareto_cost),
        profile=profile,
    )


# ----------------------------------------------------------------------------------------------- JSON of records


def search_json(result: SearchResult) -> dict[str, Any]:
    answer = result.answer
    measured = {p.model_id: p for p in result.probes}
    d = result.dataset
    meta = result.library.meta
    return {
        "query_id": result.query_id,
        "library": result.library.name,
        "metric": str(meta.get("metric", "")),
        "higher_is_better": bool(meta.get("higher_is_better", True)),
        "estimator": answer.estimator,
        "graph_version": answer.graph_version,
        "path": answer.path,
        "probes_used": answer.probes_used,
        "probing_note": result.probing,
        "excluded_by_constraints": answer.excluded_by_constraints,
        "dataset": {
            "fingerprint": d.fingerprint,
            "filename": d.filename,
            "modality": d.modality,
            "rows": d.rows,
            "columns": d.columns,
            "target_column": d.target_column,
            "classes": d.classes,
            "known_dataset_id": d.known_dataset_id,
        },
        "models": [
            {
                "rank": m.rank,
                "model_id": m.model_id,
                "predicted_score": _finite(m.predicted_score),
                "uncertainty": _finite(m.uncertainty),
                "probe": _probe_json(measured[m.model_id]) if m.model_id in measured else None,
                "cost": asdict(m.cost),
                "evidence": [
                    {"dataset_id": e.dataset_id, "similarity": _finite(e.similarity), "score": _finite(e.score)}
                    for e in m.evidence
                ],
                "metadata": dict(m.metadata),
                "explanation": m.explanation,
                "on_front": m.on_front,
                "objective_value": _finite(m.objective_value),
            }
            for m in answer.models
        ],
        "probes": [_probe_json(p) for p in result.probes],
        "recommendation": (
            None
            if answer.recommendation is None
            else {
                "model_id": answer.recommendation.model_id,
                "measured": answer.recommendation.measured,
                "score": _finite(answer.recommendation.score),
                "reason": answer.recommendation.reason,
            }
        ),
        "objective": objective_json(answer.objective),
        "profile": answer.profile,
        "constraints": None if answer.constraints is None else constraints_json(answer.constraints),
        "removals": [
            {
                "reason": r.reason,
                "source": r.source,
                "removed": r.removed,
                "better": r.better,
                "best_score": _finite(r.best_score),
                "model_ids": list(r.model_ids),
                "explanation": r.explanation,
            }
            for r in answer.removals
        ],
    }


_COST_OF_FIELD = {v: k for k, v in COST_NAMES.items()}


def objective_json(objective: Objective) -> dict[str, str]:
    """The objective as the API names it: `name` (an OBJECTIVE_NAMES entry), the pareto `cost` ("" unless
    pareto), and `label`, the name people read (`pareto (inference-seconds)`)."""
    cost = _COST_OF_FIELD.get(objective.cost, objective.cost)
    name = f"per-{cost}" if objective.kind == "score-per-cost" else objective.kind
    return {"name": name, "cost": cost if objective.kind == "pareto" else "", "label": objective_name(objective)}


def constraints_json(c: Constraints) -> dict[str, Any]:
    return {
        "max_train_seconds": c.max_train_seconds,
        "max_inference_seconds": c.max_inference_seconds,
        "max_memory_bytes": c.max_memory_bytes,
        "exclude_models": sorted(c.exclude_models),
        "require_metadata": dict(c.require_metadata),
    }


def profile_json(p: Profile) -> dict[str, Any]:
    return {
        "name": p.name,
        "description": p.description,
        "max_train_seconds": p.max_train_seconds,
        "max_inference_seconds": p.max_inference_seconds,
        "max_memory_bytes": p.max_memory_bytes,
    }


def _probe_json(p: Any) -> dict[str, Any]:
    return {
        "model_id": p.model_id,
        "probe": p.probe,
        "value": _finite(p.value),
        "seconds": p.seconds,
        "detail": p.detail,
    }


# ----------------------------------------------------------------------------------------------- uploads


def _read_chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            return
        yield chunk


@contextlib.contextmanager
def _upload(request: Request, limit: int) -> Iterator[tuple[str, Iterator[bytes]]]:
    """The uploaded exemplar as (filename, chunks): a raw body (filename from ?filename=), or multipart/form-data
    with one `file` part (a file) or several (a folder, each part named by its relative path, zipped here as
    the SDK zips a folder)."""
    if request.content_length is not None and request.content_length > limit + 1024 * 1024:
        raise RequestEntityTooLarge(f"the upload is larger than the limit of {limit} bytes")
    if request.mimetype != "multipart/form-data":
        yield _text(request.args, "filename") or "upload", _read_chunks(request.stream)
        return
    request.max_form_memory_size = 1024 * 1024
    request.max_content_length = limit + 1024 * 1024
    parts = request.files.getlist("file")
    if not parts:
        raise InvalidArgument("file: a multipart upload needs at least one part named 'file'")
    if len(parts) == 1:
        part = parts[0]
        yield (
            _text(request.args, "filename") or PurePosixPath(part.filename or "upload").name,
            _read_chunks(part.stream),
        )
        return
    folder = _text(request.args, "filename") or "folder"
    with tempfile.TemporaryFile(prefix="folder-") as spool:
        with zipfile.ZipFile(spool, "w") as archive:
            for i, part in enumerate(parts):
                name = PurePosixPath((part.filename or "").replace("\\", "/"))
                if not part.filename or name.is_absolute() or ".." in name.parts:
                    raise InvalidArgument(f"file[{i}]: {part.filename!r} is not a relative path inside the folder")
                with archive.open(zipfile.ZipInfo(str(name)), "w") as member:
                    shutil.copyfileobj(part.stream, member, CHUNK)
        spool.seek(0)
        yield (folder if folder.endswith(".zip") else f"{folder}.zip"), _read_chunks(spool)


# ----------------------------------------------------------------------------------------------- the app


class HttpApi:
    """The WSGI app: routes to core calls."""

    def __init__(self, core: QueryCore, insight: LibraryInsight, security: Security):
        self.core = core
        self.insight = insight
        self.security = security
        self.openapi = yaml.safe_load((WEB / "openapi.yaml").read_text(encoding="utf-8"))
        self._openapi_json = json.dumps(self.openapi)
        self.plotly = plotly_js()
        r = Rule
        self.routes = Map(
            [
                r("/", endpoint="index"),
                r("/static/<path:name>", endpoint="static"),
                r("/api/openapi.json", endpoint="openapi"),
                r("/api/libraries", endpoint="libraries", methods=["GET"]),
                r("/api/profiles", endpoint="profiles", methods=["GET"]),
                r("/api/libraries/<library>", endpoint="library", methods=["GET"]),
                r("/api/libraries/<library>/matrix", endpoint="matrix", methods=["GET"]),
                r("/api/libraries/<library>/evaluation", endpoint="evaluation", methods=["GET"]),
                r("/api/libraries/<library>/models/<path:model_id>/artifact", endpoint="artifact", methods=["GET"]),
                r("/api/libraries/<library>/models/<path:model_id>", endpoint="model", methods=["GET"]),
                r("/api/libraries/<library>/datasets/<path:dataset_id>", endpoint="dataset", methods=["GET"]),
                r("/api/search", endpoint="search", methods=["POST"]),
                r("/api/feedback", endpoint="feedback", methods=["POST"]),
                r("/api/xrd/peaks", endpoint="xrd_peaks", methods=["POST"]),
            ],
            strict_slashes=False,
        )
        self.scopes = {
            "libraries": READ_METHOD,
            "profiles": PROFILES_METHOD,
            "library": READ_METHOD,
            "matrix": READ_METHOD,
            "evaluation": READ_METHOD,
            "model": MODEL_METHOD,
            "dataset": READ_METHOD,
            "artifact": DOWNLOAD_METHOD,
            "search": SEARCH_METHOD,
            "xrd_peaks": SEARCH_METHOD,
            "feedback": FEEDBACK_METHOD,
        }

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self.dispatch(request)
        except HTTPException as exc:
            response = _error(exc.code or 400, exc.description or exc.name)
        except Busy as exc:
            response = _error(429, exc.message, {"Retry-After": str(max(1, math.ceil(exc.retry_after)))})
        except ModsnetError as exc:
            response = _error(STATUS.get(exc.code, 500), exc.message)
        except Exception:  # a bug: logged with its traceback here, a plain message to the client
            log.exception("HTTP %s %s failed", request.method, request.path)
            response = _error(500, "internal error (logged by the query service)")
        finally:
            # Whatever the handler left unread is drained (bounded), so the client sees the answer, not a reset.
            with contextlib.suppress(Exception):
                request.stream.read(64 * 1024 * 1024)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        adapter = self.routes.bind_to_environ(request.environ)
        endpoint, values = adapter.match()
        method = self.scopes.get(endpoint)
        principal = self.authenticate(request, method) if method else None
        with acting_for(principal.name if principal else None):
            handler: Callable[..., Response] = getattr(self, f"on_{endpoint}")
            return handler(request, **values)

    def authenticate(self, request: Request, method: str) -> Principal | None:
        table = self.security.table
        if table is None:
            return None
        header = request.headers.get("Authorization")
        if not header:
            raise Unauthenticated("no credentials: send 'Authorization: Bearer TOKEN'")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer TOKEN'")
        principal = table.tokens.get(hash_token(token.strip()))
        if principal is None:
            raise Unauthenticated("unknown bearer token")
        needed = required_scopes(method)
        if not principal.may(needed):
            from modsnet.runtime.errors import PermissionDenied

            raise PermissionDenied(f"{principal.name} lacks the scope {' or '.join(sorted(needed))} this needs")
        return principal

    # -- the page -----------------------------------------------------------------------------------

    def on_index(self, request: Request) -> Response:
        return self._file(STATIC / "index.html", "text/html; charset=utf-8")

    def on_static(self, request: Request, name: str) -> Response:
        if name == "vendor/plotly.min.js":
            if self.plotly is None:
                raise NotFound("plotly.js is not installed (pip install the pinned `plotly`)")
            return self._file(self.plotly, "text/javascript; charset=utf-8", cache=True)
        path = (STATIC / name).resolve()
        if STATIC.resolve() not in path.parents or not path.is_file():
            raise NotFound(f"no file {name!r}")
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind.endswith("javascript"):
            kind += "; charset=utf-8"
        return self._file(path, kind)

    def _file(self, path: Path, kind: str, cache: bool = False) -> Response:
        response = Response(path.read_bytes(), mimetype=None, content_type=kind)
        # The vendored library changes only with its pinned version; the app's own files are revalidated.
        response.headers["Cache-Control"] = "public, max-age=86400" if cache else "no-cache"
        return response

    def on_openapi(self, request: Request) -> Response:
        return Response(self._openapi_json, mimetype="application/json")

    # -- reads --------------------------------------------------------------------------------------

    def on_libraries(self, request: Request) -> Response:
        return _json({"libraries": [library_summary(i) for i in self.core.list_libraries()]})

    def on_profiles(self, request: Request) -> Response:
        return _json({"profiles": [profile_json(p) for p in self.core.list_profiles()]})

    def on_library(self, request: Request, library: str) -> Response:
        return _json(self.insight.library(library))

    def on_matrix(self, request: Request, library: str) -> Response:
        return _json(self.insight.matrix(library))

    def on_evaluation(self, request: Request, library: str) -> Response:
        return _json(self.insight.evaluation(library))

    def on_model(self, request: Request, library: str, model_id: str) -> Response:
        return _json(self.insight.model(library, model_id))

    def on_dataset(self, request: Request, library: str, dataset_id: str) -> Response:
        return _json(self.insight.dataset(library, dataset_id))

    def on_artifact(self, request: Request, library: str, model_id: str) -> Response:
        info, chunks = self.core.artifact(model_id, library)
        first = next(chunks, b"")  # a missing blob fails here, before the 200 is sent

        def body() -> Iterator[bytes]:
            yield first
            yield from chunks

        response = Response(body(), mimetype="application/octet-stream", direct_passthrough=True)
        response.headers["Content-Length"] = str(info.size)
        response.headers["Content-Disposition"] = f'attachment; filename="{info.filename.replace(chr(34), "")}"'
        response.headers["X-Checksum-Sha256"] = info.sha256
        return response

    # -- writes -------------------------------------------------------------------------------------

    def on_search(self, request: Request) -> Response:
        with _upload(request, self.core.max_upload_bytes) as (filename, chunks):
            options = search_options(request.args, filename)
            result = self.core.search(options, chunks)
        return _json(search_json(result))

    def on_feedback(self, request: Request) -> Response:
        body = self._json_body(request)
        query_id = body.get("query_id")
        model_id = body.get("model_id")
        score = body.get("score")
        for name, value in (("query_id", query_id), ("model_id", model_id)):
            if not isinstance(value, str) or not value or len(value) > 256:
                raise InvalidArgument(f"{name}: a non-empty string of at most 256 characters is required")
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise InvalidArgument("score: a number is required")
        cost_in = body.get("cost") or {}
        if not isinstance(cost_in, dict) or set(cost_in) - {"train_seconds", "inference_seconds", "memory_bytes"}:
            raise InvalidArgument("cost: an object with train_seconds, inference_seconds, memory_bytes")
        for name, value in cost_in.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidArgument(f"cost.{name}: a number is required")
        request_id = body.get("request_id", "")
        if not isinstance(request_id, str) or len(request_id) > 128:
            raise InvalidArgument("request_id: a string of at most 128 characters")
        feedback = self.core.report_performance(
            str(query_id), str(model_id), float(score), Cost(**{k: float(v) for k, v in cost_in.items()}), request_id
        )
        return _json(
            {
                "dataset_id": feedback.dataset_id,
                "graph_version": feedback.graph_version,
                "request_id": feedback.request_id,
                "quarantined": bool(feedback.quarantine),
                "quarantine_reason": feedback.quarantine,
            }
        )

    def on_xrd_peaks(self, request: Request) -> Response:
        library = _text(request.args, "library")
        model_id = _text(request.args, "model_id")
        if not library or not model_id:
            raise InvalidArgument("library and model_id are required")
        self.core.find_model(model_id, library)  # before reading the upload: an unknown finder reads nothing
        with (
            _upload(request, self.core.max_upload_bytes) as (filename, chunks),
            self.core.upload(chunks, filename) as (path, _, _),
        ):
            return _json(self.insight.xrd_peaks(library, model_id, path, filename, self.core.limits))

    def _json_body(self, request: Request) -> dict[str, Any]:
        if request.mimetype != "application/json":
            raise InvalidArgument("the body must be JSON (Content-Type: application/json)")
        if (request.content_length or 0) > 1024 * 1024:
            raise RequestEntityTooLarge("a JSON body is at most 1 MiB")
        try:
            body = json.loads(request.get_data(cache=False) or b"null")
        except ValueError as exc:
            raise InvalidArgument(f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise InvalidArgument("the body must be a JSON object")
        return body


class _QuietHandler(WSGIRequestHandler):
    """Requests are logged at debug level (the page makes many; a service log is not an access log)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s %s", self.command, self.path, code)


class HttpServer:
    """The HTTP port of the query service: bound when built (so `port` is known), served by `start` on a thread."""

    def __init__(self, app: HttpApi, host: str, port: int, *, ssl_context: tuple[str, str] | None = None):
        self.app = app
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=_QuietHandler, ssl_context=ssl_context
        )
        self.port = self._server.port
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        self._thread = threading.Thread(target=self._server.serve_forever, name="query-http", daemon=True)
        self._thread.start()
        log.info("query HTTP API and web app on port %d", self.port)
        return self.port

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
