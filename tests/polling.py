"""Waiting in tests for something that happens in the background: bounds, not measurements."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(ready: Callable[[], bool], *, seconds: float) -> bool:
    """Whether `ready()` turns true within `seconds` (asked every 0.1 s)."""
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def dead(pid: int) -> bool:
    """Whether the process `pid` has ended (gone, or a zombie its parent has not reaped yet)."""
    import psutil

    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
