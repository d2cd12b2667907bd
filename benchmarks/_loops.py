"""What the benchmarks share: the load loop of client threads (`throughput`, `for_seconds`).

Not a benchmark (`make bench` skips `benchmarks/_*.py`). Imported as `benchmarks._loops` by the scripts that put
the repository on their path; scale.py imports it as a sibling (`from _loops import throughput`): a script's own
folder comes first on its path whatever PYTHONPATH says, so this file is the script's own checkout's even where
scale.py runs its children on an older checkout's code (`--baseline-checkout`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import NamedTuple


class Load(NamedTuple):
    """What `throughput` measured: calls completed per second, each one's latency (s), the calls that raised."""

    per_second: float
    latencies: list[float]
    errors: int


def throughput(clients: int, seconds: float, call: Callable[[int], object]) -> Load:
    """`clients` threads each looping `call(k)` for `seconds`, k running over the thread's own share (thread i:
    i, i + clients, i + 2 clients, ...: the threads take turns through a list of queries). A call that raises is
    counted as an error, not as done, and its thread goes on. Calls in flight at the end finish and count; the
    rate is over the time from the first thread's start to the last one's end."""
    stop = threading.Event()
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def loop(offset: int) -> None:
        k = offset
        while not stop.is_set():
            start = time.perf_counter()
            try:
                call(k)
            except Exception:
                with lock:
                    errors[0] += 1
            else:
                took = time.perf_counter() - start
                with lock:
                    latencies.append(took)
            k += clients

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(clients)]
    wall = for_seconds(threads, stop, seconds)
    return Load(len(latencies) / wall, latencies, errors[0])


def for_seconds(threads: list[threading.Thread], stop: threading.Event, seconds: float) -> float:
    """Start `threads`, let them run `seconds`, set `stop` and wait for them (calls in flight finish and count);
    the wall seconds from the first start to the last end."""
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started
