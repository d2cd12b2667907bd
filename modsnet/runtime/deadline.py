"""The deadline of the call being served, so outgoing calls can be bounded by the caller's time.

The server interceptor sets it for the duration of each handler; `timeout_for` derives an outgoing call's
timeout from it. Plain Python (no grpc import), so core logic can use it too.
"""

from __future__ import annotations

import time
from contextvars import ContextVar, Token

from modsnet.runtime.errors import DeadlineExceeded

_deadline: ContextVar[float | None] = ContextVar("modsnet_deadline", default=None)

# Time kept back for our answer to reach the caller after a downstream call gives up: a tenth of what is
# left, between these bounds. So when a dependency does not answer, the caller hears which one, before
# its own deadline cuts the call off with no message.
_MIN_MARGIN_SECONDS = 0.05
_MAX_MARGIN_SECONDS = 0.5


def set_deadline(seconds_remaining: float | None) -> Token[float | None]:
    """Start bounding outgoing calls by `seconds_remaining` from now (None = the caller set no deadline)."""
    value = None if seconds_remaining is None else time.monotonic() + seconds_remaining
    return _deadline.set(value)


def reset_deadline(token: Token[float | None]) -> None:
    _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left before the served call's deadline, or None when it has none."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def timeout_for(default_seconds: float, what: str) -> float:
    """Timeout for an outgoing call: its own default, cut down to the caller's remaining time.

    Raises DeadlineExceeded when the caller's time has already run out, so no call is started that
    cannot finish.
    """
    left = remaining()
    if left is None:
        return default_seconds
    left -= min(max(0.1 * left, _MIN_MARGIN_SECONDS), _MAX_MARGIN_SECONDS)
    if left <= 0:
        raise DeadlineExceeded(f"deadline exceeded before calling {what}")
    return min(default_seconds, left)
