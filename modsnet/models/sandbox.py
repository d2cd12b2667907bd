"""Runs a neural peak finder (an ONNX artifact that came with an imported library) in a child process whose
address space and time are bounded, so a hostile or broken model cannot take the service down with it.

ONNX Runtime has no hard memory cap of its own (arena settings shape allocation, they do not refuse it), so
the bound is the kernel's: the child sets RLIMIT_AS to its size at start plus `memory_bytes`, and an
allocation past it fails in the child only. Time is bounded by the parent, which waits at most `seconds`
for the answer and then kills the child. Children come from a forkserver that has ONNX Runtime loaded, so
each costs a fork, not an interpreter start (`warm_up` starts it ahead of the first search).
"""

from __future__ import annotations

import multiprocessing
import resource
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

MEMORY_BYTES = 1 << 30  # address space a finder may add to its process
# What the fork server imports once. It is one per process: modsnet.runtime.workers pools share it (and
# name these modules too, whichever starts it first).
PRELOAD = ["numpy", "scipy.signal", "onnxruntime", "modsnet.models.peaks"]
_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PRELOAD)


class SandboxError(RuntimeError):
    """The finder failed, ran out of memory, or ran past its time; the message says which."""


def _address_space() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[0]) * resource.getpagesize()


def _run(conn: Connection, artifact: bytes, scans: Sequence[tuple[np.ndarray, np.ndarray]], memory_bytes: int) -> None:
    try:
        limit = _address_space() + memory_bytes
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        from modsnet.models.peaks import load_finder

        finder = load_finder(artifact)
        peaks = [np.sort(np.asarray(finder.find(x, y), dtype=float).ravel()) for x, y in scans]
        conn.send(("ok", peaks))
    except MemoryError:
        conn.send(("error", f"ran out of its {memory_bytes / 2**20:.0f} MiB"))
    except Exception as exc:
        conn.send(("error", str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__))
    finally:
        conn.close()


def _nothing() -> None:
    pass


def warm_up() -> None:
    """Start the forkserver (it imports ONNX Runtime once), so the first probe pays a fork only."""
    child = _context.Process(target=_nothing, daemon=True)
    child.start()
    child.join()


def find_peaks(
    artifact: bytes,
    scans: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    seconds: float,
    memory_bytes: int = MEMORY_BYTES,
) -> list[np.ndarray]:
    """The finder's peaks on each (two_theta, intensity) scan; SandboxError when it cannot give them."""
    receive, send = _context.Pipe(duplex=False)
    child = _context.Process(target=_run, args=(send, artifact, list(scans), memory_bytes), daemon=True)
    child.start()
    send.close()
    try:
        if not receive.poll(max(0.0, seconds)):
            raise SandboxError(f"ran past its {seconds:.1f} s")
        try:
            status, value = receive.recv()
        except EOFError:
            raise SandboxError(f"died (exit code {child.exitcode})") from None
    finally:
        receive.close()
        if child.is_alive():
            child.kill()
        child.join()
    if status != "ok":
        raise SandboxError(str(value))
    result: Any = value
    return list(result)
