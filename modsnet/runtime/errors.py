"""Domain errors that know their gRPC status.

The core logic of every service raises these (and nothing grpc-specific); the one server interceptor in
`modsnet.runtime.server` turns them into status codes, and the client wrapper in `modsnet.runtime.channels`
turns status codes back into them, so an error crosses service boundaries with its meaning intact.
`code` is the name of a `grpc.StatusCode` member, kept as a string so this module imports no grpc.
"""

from __future__ import annotations


class ModsnetError(Exception):
    """Base class: an error whose message is safe and useful to show to the client."""

    code = "INTERNAL"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(ModsnetError):
    """The request or the uploaded data is malformed (names the file, row, column or field)."""

    code = "INVALID_ARGUMENT"


class NotFound(ModsnetError):
    """An id (library, model, dataset, blob) that does not exist."""

    code = "NOT_FOUND"


class AlreadyExists(ModsnetError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(ModsnetError):
    """The system is not in a state to do this (e.g. no estimator trained yet)."""

    code = "FAILED_PRECONDITION"


class ResourceExhausted(ModsnetError):
    """A size or count limit was exceeded."""

    code = "RESOURCE_EXHAUSTED"


class Busy(ResourceExhausted):
    """The service is at its limit of concurrent work right now: the same request may succeed after
    `retry_after` seconds (sent to the client in trailing metadata, `RETRY_AFTER_KEY`; the SDK waits and
    retries)."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


RETRY_AFTER_KEY = "modsnet-retry-after-ms"


class OutOfRange(ModsnetError):
    """A position past the end (a read offset beyond a blob's size)."""

    code = "OUT_OF_RANGE"


class Aborted(ModsnetError):
    """A concurrent update won; retry."""

    code = "ABORTED"


class Unavailable(ModsnetError):
    """A backend or downstream service cannot be reached right now."""

    code = "UNAVAILABLE"


class Unreachable(Unavailable):
    """The service gave no answer: the link failed (refused, reset), not the service's own UNAVAILABLE."""


class DeadlineExceeded(ModsnetError):
    code = "DEADLINE_EXCEEDED"


class DataLoss(ModsnetError):
    """Stored bytes do not match their checksum."""

    code = "DATA_LOSS"


class Internal(ModsnetError):
    code = "INTERNAL"


class Unauthenticated(ModsnetError):
    """No credentials, or credentials that name no one (unknown token, certificate of no listed identity)."""

    code = "UNAUTHENTICATED"


class PermissionDenied(ModsnetError):
    """Authenticated, but without the scope the call needs."""

    code = "PERMISSION_DENIED"


class ConfigError(ModsnetError):
    """A service was started with a missing or invalid setting: it refuses to start."""

    code = "FAILED_PRECONDITION"


BY_CODE: dict[str, type[ModsnetError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        ResourceExhausted,
        OutOfRange,
        Aborted,
        Unavailable,
        DeadlineExceeded,
        DataLoss,
        Internal,
        Unauthenticated,
        PermissionDenied,
    )
}


def from_code(code: str, message: str) -> ModsnetError:
    """The domain error for a status code name (unknown codes become Internal)."""
    return BY_CODE.get(code, Internal)(message)
