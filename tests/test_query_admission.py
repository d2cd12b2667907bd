"""The query service's admission of searches (`UploadTurns`): bounded, and fair: first come, first served."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from polling import eventually

from modsnet.runtime.deadline import reset_deadline, set_deadline
from modsnet.runtime.errors import Busy, DeadlineExceeded
from services.query.core import UploadTurns


class Searches:
    """Threads that each take a turn, note that they got it, and hold it until their event is set."""

    def __init__(self, turns: UploadTurns):
        self.turns = turns
        self.entered: list[str] = []
        self.refused: dict[str, BaseException] = {}
        self.release: dict[str, threading.Event] = {}
        self.threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(self, name: str, *, deadline_seconds: float | None = None, hold: bool = True) -> None:
        release = self.release[name] = threading.Event()
        if not hold:
            release.set()

        def search() -> None:
            token = set_deadline(deadline_seconds)  # as the server's interceptor sets the call's deadline
            try:
                with self.turns.turn():
                    with self._lock:
                        self.entered.append(name)
                    assert release.wait(30), f"{name} was never released"
            except (Busy, DeadlineExceeded) as refused:
                with self._lock:
                    self.refused[name] = refused
            finally:
                reset_deadline(token)

        thread = self.threads[name] = threading.Thread(target=search, name=name, daemon=True)
        thread.start()

    def start_in_line(self, name: str, **options: float | bool | None) -> None:
        """Start `name` and wait until it stands in line (so the arrival order is the order of these calls)."""
        before = self.turns.queued
        self.start(name, **options)  # type: ignore[arg-type]
        assert eventually(lambda: self.turns.queued == before + 1, seconds=30), f"{name} did not join the line"

    def finish(self, name: str) -> None:
        self.release[name].set()
        self.threads[name].join(30)
        assert not self.threads[name].is_alive()

    def until(self, ready: Callable[[], bool]) -> None:
        assert eventually(ready, seconds=30)


def test_waiting_searches_get_their_turn_in_arrival_order() -> None:
    searches = Searches(UploadTurns(running=1, waiting=5, wait_seconds=60))
    searches.start("first")
    searches.until(lambda: searches.entered == ["first"])
    for n in range(5):
        searches.start_in_line(f"waiting-{n}", hold=False)  # each takes its turn and gives it back at once
    searches.finish("first")
    for thread in searches.threads.values():
        thread.join(30)
    assert searches.entered == ["first", *(f"waiting-{n}" for n in range(5))]
    assert searches.refused == {}
    assert searches.turns.queued == 0


def test_a_freed_turn_goes_to_the_head_of_the_line_not_to_a_newcomer() -> None:
    turns = UploadTurns(running=1, waiting=2, wait_seconds=60)
    searches = Searches(turns)
    with turns.turn():
        searches.start_in_line("waiting", hold=False)
    # The turn is given back and asked for again at once by the same thread, before the waiter has woken (a
    # semaphore let the newcomer have it): the waiter has it, and the newcomer waits behind it.
    with turns.turn():
        searches.entered.append("newcomer")
    searches.threads["waiting"].join(30)
    assert searches.entered == ["waiting", "newcomer"]


def test_a_full_line_refuses_at_once_with_a_retry_hint() -> None:
    turns = UploadTurns(running=1, waiting=1, wait_seconds=60)
    searches = Searches(turns)
    searches.start("first")
    searches.until(lambda: searches.entered == ["first"])
    searches.start_in_line("waiting")
    with pytest.raises(Busy, match="retry") as busy, turns.turn():
        pytest.fail("a search beyond the line ran")
    assert busy.value.code == "RESOURCE_EXHAUSTED" and busy.value.retry_after > 0
    searches.finish("first")
    searches.finish("waiting")
    assert searches.entered == ["first", "waiting"]


def test_a_waiter_whose_deadline_passes_is_refused_never_run_and_the_next_in_line_goes_on() -> None:
    searches = Searches(UploadTurns(running=1, waiting=3, wait_seconds=60))
    searches.start("first")
    searches.until(lambda: searches.entered == ["first"])
    # 1.2 s of deadline keeps back a second to answer: it waits about 0.2 s, then leaves the line refused.
    searches.start_in_line("hurried", deadline_seconds=1.2)
    searches.start_in_line("patient")
    searches.until(lambda: "hurried" in searches.refused)
    assert isinstance(searches.refused["hurried"], DeadlineExceeded)
    assert searches.turns.queued == 1
    searches.finish("first")
    searches.until(lambda: searches.entered == ["first", "patient"])
    searches.finish("patient")
    assert "hurried" not in searches.entered


def test_a_search_whose_deadline_leaves_no_time_to_wait_is_refused_at_once_not_queued() -> None:
    turns = UploadTurns(running=1, waiting=3, wait_seconds=60)
    searches = Searches(turns)
    searches.start("first")
    searches.until(lambda: searches.entered == ["first"])
    token = set_deadline(0.5)  # less than the second kept back to answer
    try:
        with pytest.raises(DeadlineExceeded, match="deadline"), turns.turn():
            pytest.fail("a search with no time left ran")
    finally:
        reset_deadline(token)
    assert turns.queued == 0
    searches.finish("first")
    # A free turn is taken whatever the deadline: only waiting needs time.
    token = set_deadline(0.5)
    try:
        with turns.turn():
            pass
    finally:
        reset_deadline(token)


def test_a_waiter_past_the_longest_wait_is_told_to_retry() -> None:
    searches = Searches(UploadTurns(running=1, waiting=1, wait_seconds=0.2))
    searches.start("first")
    searches.until(lambda: searches.entered == ["first"])
    searches.start("waiting")
    searches.until(lambda: "waiting" in searches.refused)
    refused = searches.refused["waiting"]
    assert isinstance(refused, Busy) and refused.retry_after > 0
    assert searches.turns.queued == 0
    searches.finish("first")
    assert searches.entered == ["first"]
