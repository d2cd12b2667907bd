"""Structured logs: one JSON object a line, carrying the query id that follows a search through the services.

Every service call runs with three context variables set by the server interceptor (`modsnet.runtime.observe`):
the service answering, the method, and the query id, which is the search's own query id during a search (the
query core binds it), the id a caller sent in gRPC metadata (`modsnet-query-id`, so the recommender, knowledge
and storage lines of one search carry it too), else a new request id. Outgoing calls send it on
(`modsnet.runtime.channels`). A filter copies these onto every log record, so any `log.info(...)` inside a
call is attributed without passing anything along.

`configure(format, level)` installs the formatter on the root logger: `json` (the default of `modsnet serve`,
what a log pipeline reads) or `text` (for people). Keys of a JSON line: ts, level, service, logger, msg,
query_id, method, code, duration_ms (the last two on a call's access line), exc on errors, plus whatever a
caller passed in `extra={...}`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
import re
import sys
import time
import uuid
from contextvars import Token
from typing import Any

QUERY_ID_HEADER = "modsnet-query-id"
FORMATS = ("json", "text")
# What a caller's id may look like: it lands in every log line of the call, so it is short and plain.
_QUERY_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

_query_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("modsnet_query_id", default=None)
_service: contextvars.ContextVar[str | None] = contextvars.ContextVar("modsnet_service", default=None)
_method: contextvars.ContextVar[str | None] = contextvars.ContextVar("modsnet_method", default=None)

# The process's own service (`modsnet serve NAME`), for lines written outside any call.
_default_service = ""


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_query_id() -> str | None:
    """The query id of the call this thread is serving (None outside a call)."""
    return _query_id.get()


def current_service() -> str:
    """The service answering the current call (outside a call: the process's own, or "")."""
    return _service.get() or _default_service


def bind_query_id(query_id: str) -> None:
    """Make `query_id` the id of the current call from here on (the search's id, once it has one; the searched
    query's id in a feedback). The interceptor restores the previous value when the call ends."""
    _query_id.set(query_id)


def accepted_query_id(value: str | None) -> str | None:
    """A caller's query id if it is well formed, else None (the server then makes a request id)."""
    return value if value is not None and _QUERY_ID.match(value) else None


def enter_call(service: str, method: str, query_id: str) -> tuple[Token[Any], ...]:
    return (_service.set(service), _method.set(method), _query_id.set(query_id))


def exit_call(tokens: tuple[Token[Any], ...]) -> None:
    service, method, query_id = tokens
    _query_id.reset(query_id)
    _method.reset(method)
    _service.reset(service)


class ContextFilter(logging.Filter):
    """Adds service, method and query_id of the current call to each record (unless the record has its own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "service", None) is None:
            record.service = _service.get() or _default_service
        if getattr(record, "method", None) is None:
            record.method = _method.get() or ""
        if getattr(record, "query_id", None) is None:
            record.query_id = _query_id.get() or ""
        return True


# The attributes every LogRecord has: whatever else a record carries came from `extra=` and is written out.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_FIRST = ("service", "query_id", "method", "code", "duration_ms")


def _plain(value: Any) -> Any:
    """A JSON-safe form of an extra's value (numbers stay numbers, NaN becomes null, the rest text)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, keys in a fixed order, UTC timestamps with milliseconds."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": getattr(record, "service", "") or _default_service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in _FIRST[1:]:
            value = getattr(record, key, None)
            if value not in (None, ""):
                line[key] = _plain(value)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line and key not in _FIRST:
                line[key] = _plain(value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """The human format, with the call's service and query id when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        where = " ".join(
            f"{key}={value}"
            for key in ("service", "query_id", "code", "duration_ms")
            if (value := getattr(record, key, "")) not in (None, "")
        )
        return f"{text} [{where}]" if where else text


def formatter(fmt: str) -> logging.Formatter:
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return JsonFormatter() if fmt == "json" else TextFormatter()


def parse_format(value: str) -> str:
    value = value.strip().lower()
    if value not in FORMATS:
        raise ValueError(f"{value!r} is not a log format ({' or '.join(FORMATS)})")
    return value


def configure(fmt: str, level: str | int = "INFO", *, service: str = "", stream: Any = None) -> logging.Handler:
    """Send every log record to `stream` (stderr) in `fmt`, replacing the root logger's handlers."""
    global _default_service
    _default_service = service
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
