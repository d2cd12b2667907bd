"""The held-out tables benchmark's rule for a target TabZoo found ambiguous, and its regret bookkeeping."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

_SPEC = importlib.util.spec_from_file_location(
    "heldout_tables", Path(__file__).resolve().parents[1] / "benchmarks" / "heldout_tables.py"
)
assert _SPEC is not None and _SPEC.loader is not None
heldout = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(heldout)


def _frame(rows: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "party": rng.choice(["dem", "rep"], size=rows),  # label-like, not named like a label
            "region": rng.choice(["n", "s", "e"], size=rows),  # label-like too: TabZoo calls it ambiguous
            "x1": rng.normal(size=rows),
            "x2": rng.normal(size=rows),
        }
    )


def test_an_ambiguous_table_takes_its_first_label_like_column_as_the_target() -> None:
    frame = _frame()
    assert heldout.zoo._rdatasets_target(frame)[0] is None  # TabZoo's rule leaves it out
    assert heldout._ambiguous_target(frame) == "party"
    # A column named like a time or a unit is never the target; a class under 10 rows rules a column out.
    assert heldout._ambiguous_target(frame.rename(columns={"party": "year"})) == "region"
    few = frame.copy()
    few.loc[:4, "party"] = "other"
    few.loc[5:, "region"] = "n"
    assert heldout._ambiguous_target(few) is None


def test_regrets_count_the_probes_then_the_answers_best_unprobed() -> None:
    truth = {"t": {"a": 0.9, "b": 0.8, "c": 0.5}}
    searched = {"t": {0: {"probed": [], "ranking": {"c": 0.9, "a": 0.1}}, 3: {"probed": ["b"], "ranking": {"c": 0.9}}}}
    out = heldout.regrets(truth, searched, ["b", "c", "a"], [0, 3])
    assert out["modsnet"][0]["t"] == pytest.approx(0.4)  # trusted c, the answer's top
    assert out["modsnet"][3]["t"] == pytest.approx(0.1)  # b probed, c measured, one measurement unused
    assert out["popular-B"][0]["t"] == pytest.approx(0.1)  # b, the most popular
    assert out["popular-B"][3]["t"] == pytest.approx(0.0)
    # random-B: B = 0 trusts one of the three at random; B = 3 measures all of them.
    assert out["random-B"][0]["t"] == pytest.approx(0.9 - (0.9 + 0.8 + 0.5) / 3)
    assert out["random-B"][3]["t"] == pytest.approx(0.0)
    # Before the search's answers are saved (a partial run), popular-B and random-B alone.
    alone = heldout.regrets(truth, {}, ["b", "c", "a"], [0, 3])
    assert alone["modsnet"] == {} and alone["popular-B"][0]["t"] == pytest.approx(0.1)
