"""The benchmarks' shared load loop (benchmarks/_loops.py): what `throughput` counts."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "benchmarks" / "_loops.py"
spec = importlib.util.spec_from_file_location("_loops", HERE)
assert spec is not None and spec.loader is not None
loops = importlib.util.module_from_spec(spec)
spec.loader.exec_module(loops)


def test_each_client_takes_its_own_turns_and_errors_are_not_calls_done() -> None:
    seen: dict[str, list[int]] = {}
    lock = threading.Lock()

    def call(k: int) -> None:
        with lock:
            seen.setdefault(threading.current_thread().name, []).append(k)
        if k % 3 == 0:
            raise RuntimeError("refused")

    load = loops.throughput(2, 0.5, call)
    assert 1 <= len(seen) <= 2
    for ks in seen.values():  # thread i: i, i + 2, i + 4, ...
        assert ks[0] in (0, 1) and ks == list(range(ks[0], ks[0] + 2 * len(ks), 2))
    assert len({ks[0] for ks in seen.values()}) == len(seen)
    calls = [k for ks in seen.values() for k in ks]
    assert load.errors == sum(k % 3 == 0 for k in calls) > 0
    assert len(load.latencies) == len(calls) - load.errors and all(t >= 0 for t in load.latencies)
    assert load.per_second > 0
    rate, latencies, errors = load  # as the benchmarks unpack it
    assert (rate, latencies, errors) == (load.per_second, load.latencies, load.errors)
