"""TransferGraph records (TU Delft, arXiv 2404.03988) as one library bundle per modality.

A source folder is one modality's folder of the TransferGraph repository's `resources/experiments/<task>`:
`records.csv` (fine-tuning runs), `model_config_dataset.csv`, `target_dataset_features.csv`,
`corr_domain_similarity_<embedder>.csv` and `transferability_score_records.csv`.

Quirks of the published files handled here (each seen in the data):
- `records.csv` has lines broken by a writer: tails of a line (model `1.0`, dataset `0.1`, `none` or
  `lora`) stand as rows of their own, one line lost its accuracy, one its `peft_method` (`lor`). Such
  rows are refused and counted, never guessed at.
- Text models were fine-tuned fully and with LoRA; only full fine-tuning (empty `peft_method`) is kept,
  since the image records and the published TransferGraph tables are full fine-tuning.
- Some (model, dataset) pairs were run twice with the same settings; the best run is kept (see
  `_interactions`).
- Datasets are named several ways: HuggingPics source sets by their label list
  (`"['beer', 'wine']"`, here `hfpics:beer|wine`), hub paths in the features file but short names in
  model configs (`quora` / `HHousen/quora`), a `/` written as `_` (`glue_cola`) and one typo
  (`glut/qqp`). All are mapped to one id per dataset.
- `transferability_score_records.csv` repeats some probes (re-runs; averaged) and has broken lines.
"""

from __future__ import annotations

import ast
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Literal

from modsnet.data.bundle import Bundle, Table
from modsnet.offline.importers import (
    ImportReport,
    finite_number,
    is_name,
    metadata_cell,
    read_source_csv,
    size_features,
    table,
    write_library,
)
from modsnet.runtime.errors import InvalidArgument

Modality = Literal["image", "text"]

SOURCE = (
    "TransferGraph (TU Delft, arXiv 2404.03988), repository TransferGraph/transfergraph @0458aff; "
    "no licence published; figures used as benchmark facts"
)
RECORDS = "records.csv"
CONFIG = "model_config_dataset.csv"
FEATURES = "target_dataset_features.csv"
PROBES = "transferability_score_records.csv"

# The features file's one misspelt id (the model configs and the similarity matrix say glue/qqp).
_TYPOS = {"glut/qqp": "glue/qqp"}
# A row of interactions.csv: model, dataset, then the score and run columns.
_Interaction = tuple[str, str, *tuple[object, ...]]
_Probe = tuple[str, str, str, float, float | None]
_PROBE_NAMES = {"TransferabilityMethod.LOG_ME": "LogME", "TransferabilityMethod.REG_H_SCORE": "HScore-reg"}


@dataclass(frozen=True)
class _Layout:
    """Where one modality keeps what the bundle needs (the two modalities' files differ)."""

    runs: Mapping[str, str]  # interactions.csv column -> records.csv column
    model_meta: Mapping[str, str]  # models.csv column -> model_config_dataset.csv column
    pretrain: str  # model_config_dataset.csv column naming the model's source dataset
    similarity: Mapping[str, str]  # dataset_similarity.csv column -> corr_domain_similarity_<key>.csv
    description: str


_LAYOUTS: dict[str, _Layout] = {
    "image": _Layout(
        runs={
            "train_seconds": "train_runtime",
            "epochs": "epochs",
            "batch_size": "batch_size",
            "learning_rate": "lr",
        },
        # memory_consumption is left out: every image model has the same 1571600896, not a measurement.
        model_meta={
            "architecture": "architectures",
            "model_type": "model_type",
            "num_labels": "#labels",
            "num_parameters": "number_of_parameters",
            "pretrain_accuracy": "accuracy",
            "input_shape": "input_shape",
            "output_shape": "output_shape",
        },
        # TransferGraph keys a model's source dataset by `labels` (HuggingPics sets have no other name).
        pretrain="labels",
        similarity={"distance": "google_vit_base_patch16_224_imagenet"},
        description=(
            "Hugging Face image classifiers fine-tuned (all layers, 30 epochs) on image datasets, from "
            "TransferGraph's records. score: eval_accuracy. distance: between the datasets' mean ViT-base "
            "embeddings (smaller is more similar). Datasets without interactions are the models' source "
            "datasets; HuggingPics sets are named hfpics: plus their labels."
        ),
    ),
    "text": _Layout(
        runs={
            "train_seconds": "train_runtime",
            "epochs": "num_train_epochs",
            "batch_size": "batch_size",
            "learning_rate": "learning_rate",
        },
        model_meta={
            "architecture": "architectures",
            "model_type": "model_type",
            "num_labels": "number_of_labels",
            "num_parameters": "number_of_parameters",
            "memory_bytes": "memory_consumption",
            "pretrain_accuracy": "accuracy",
        },
        pretrain="dataset",
        # GPT-Neo-125M is TransferGraph's reference embedder for text and covers more datasets; GPT-2's
        # matrix adds dbpedia_14, so it fills GPT-Neo's gaps in `distance` and keeps its own column.
        similarity={"distance": "EleutherAI_gpt-neo-125m_gpt", "distance_gpt2": "gpt2_gpt"},
        description=(
            "Hugging Face text classifiers fine-tuned (all layers; LoRA runs left out) on text datasets, "
            "from TransferGraph's records. score: eval_accuracy, the best run where a pair was run twice. "
            "distance: between the datasets' mean GPT-Neo-125M embeddings, GPT-2's where GPT-Neo has none "
            "(smaller is more similar); distance_gpt2: GPT-2's own. Datasets without interactions are the "
            "models' source datasets."
        ),
    ),
}


def import_transfergraph(src: str | Path, out: str | Path, modality: Modality) -> ImportReport:
    """Import one modality folder of TransferGraph's records as the bundle `transfergraph-<modality>`."""
    if modality not in _LAYOUTS:
        raise InvalidArgument(f"modality {modality!r}: TransferGraph publishes 'image' and 'text'")
    layout = _LAYOUTS[modality]
    folder = Path(src)
    refused: Counter[str] = Counter()
    excluded: Counter[str] = Counter()

    interactions = _interactions(folder, layout, refused, excluded)
    probes = _probes(folder, refused, excluded)
    similarity = _similarity(folder, layout)
    sizes = _dataset_sizes(folder)
    dataset_ids = (
        {d for _, d, *_ in interactions}
        | set(sizes)
        | {d for _, d, *_ in probes}
        | {name for pair in similarity for name in pair}
    )
    model_ids = {m for m, *_ in interactions} | {m for m, *_ in probes}

    bundle = Bundle(
        meta={
            "name": f"transfergraph-{modality}",
            "description": layout.description,
            "modality": modality,
            "task": "classification",
            "metric": "accuracy",
            "higher_is_better": True,
            "version": 1,
            "source": SOURCE,
        },
        models=_models(folder, layout, model_ids, dataset_ids),
        datasets=table(
            "datasets.csv",
            ("dataset_id", "n_rows", "n_classes"),
            ((d, *sizes.get(d, (None, None))) for d in dataset_ids),
        ),
        interactions=table("interactions.csv", ("model_id", "dataset_id", "score", *layout.runs, "runs"), interactions),
        similarity=table(
            "dataset_similarity.csv",
            ("dataset_a", "dataset_b", *layout.similarity),
            ((a, b, *values) for (a, b), values in similarity.items()),
        ),
        probes=table("probes.csv", ("model_id", "dataset_id", "probe", "value", "seconds"), probes),
        features={"size": size_features((d, n_rows, None, n_classes) for d, (n_rows, n_classes) in sizes.items())},
    )
    return write_library(bundle, out, refused, excluded)


def _interactions(folder: Path, layout: _Layout, refused: Counter[str], excluded: Counter[str]) -> list[_Interaction]:
    """One row per (model, dataset) pair of full fine-tuning, with the best of its runs.

    Best, not mean: the repeats are re-runs with identical settings (only their runtime differs), and
    TransferGraph's own evaluation keeps each model's best record per target (`groupby('model')
    ['eval_accuracy'].idxmax()` in compute_and_save_correlation_results_by_rank_files.py), so scores
    here are the ones its published correlations were measured against. Ties keep the first run in the
    file; `runs` says how many runs a pair had.
    """
    frame = read_source_csv(folder, RECORDS, ["model", "finetuned_dataset", "eval_accuracy", *layout.runs.values()])
    best: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}
    runs: Counter[tuple[str, str]] = Counter()
    for row in frame.to_dict("records"):
        reason = _refusal(row)
        if reason:
            refused[reason] += 1
            continue
        if row.get("peft_method"):  # text only: LoRA runs (and one `lor`, a truncated `lora`)
            excluded["peft_runs"] += 1
            continue
        key = (row["model"], _dataset_id(row["finetuned_dataset"]))
        accuracy = float(row["eval_accuracy"])
        runs[key] += 1
        if key not in best or accuracy > best[key][0]:
            best[key] = (accuracy, row)
    if repeats := sum(runs.values()) - len(runs):
        excluded["repeated_runs"] = repeats
    rows: list[_Interaction] = []
    for (model, dataset), (accuracy, row) in best.items():
        values: list[object] = [
            accuracy,
            *(finite_number(row[c]) for c in layout.runs.values()),
            runs[model, dataset],
        ]
        rows.append((model, dataset, *values))
    return rows


def _refusal(row: Mapping[str, str]) -> str | None:
    """Why a records.csv row cannot be a measurement, or None when it can."""
    if not is_name(row["finetuned_dataset"]):
        return "junk_dataset"
    if not is_name(row["model"]):
        return "junk_model"
    cell = row["eval_accuracy"]
    if not cell:
        return "missing_accuracy"
    accuracy = finite_number(cell)
    if accuracy is None:
        return "non_numeric_accuracy"
    if not 0.0 <= accuracy <= 1.0:
        return "accuracy_out_of_range"
    return None


def _probes(folder: Path, refused: Counter[str], excluded: Counter[str]) -> list[_Probe]:
    """LogME / H-score rows; re-runs of one probe are averaged (they differ by sampling noise only)."""
    frame = read_source_csv(folder, PROBES, ["model", "target_dataset", "metric", "score", "runtime"])
    runs: defaultdict[tuple[str, str, str], list[tuple[float, float | None]]] = defaultdict(list)
    for model, dataset, metric, score, runtime in frame[
        ["model", "target_dataset", "metric", "score", "runtime"]
    ].itertuples(index=False):
        if not (is_name(model) and is_name(dataset) and metric):
            refused["malformed_probe"] += 1
            continue
        value = finite_number(score)
        if value is None:
            refused["non_numeric_probe"] += 1
            continue
        probe = _PROBE_NAMES.get(metric, metric.removeprefix("TransferabilityMethod."))
        runs[model, _dataset_id(dataset), probe].append((value, finite_number(runtime)))
    if repeats := sum(len(found) for found in runs.values()) - len(runs):
        excluded["repeated_probes"] = repeats
    return [(*key, fmean(v for v, _ in found), _mean(s for _, s in found)) for key, found in runs.items()]


def _mean(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return fmean(known) if known else None


def _similarity(folder: Path, layout: _Layout) -> dict[tuple[str, str], tuple[float | None, ...]]:
    """Unordered dataset pairs -> one distance per matrix; `distance` is the first matrix having the pair."""
    matrices = [_matrix(folder, f"corr_domain_similarity_{key}.csv") for key in layout.similarity.values()]
    rows: dict[tuple[str, str], tuple[float | None, ...]] = {}
    for pair in set().union(*matrices):
        values = [matrix.get(pair) for matrix in matrices]
        rows[pair] = (next(v for v in values if v is not None), *values[1:])
    return rows


def _matrix(folder: Path, file: str) -> dict[tuple[str, str], float]:
    """A square distance matrix as {(a, b): distance} with a < b, the two triangles averaged."""
    frame = read_source_csv(folder, file, [], index_col=0)
    frame.index = [str(name).strip() for name in frame.index]
    names = list(frame.columns)
    if sorted(frame.index) != sorted(names) or len(set(names)) != len(names):
        raise InvalidArgument(f"{folder / file}: not a square matrix (its rows and columns name different datasets)")
    # TransferGraph sometimes writes a dataset a second time with '/' as '_' (glue_cola): drop the copy.
    slugs = {name.replace("/", "_") for name in names if "/" in name}
    kept = [name for name in names if name not in slugs]
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    for a in kept:
        for b in kept:
            cell = frame.at[a, b]
            value = finite_number(cell)
            if value is None and cell:
                raise InvalidArgument(f"{folder / file}: column {b!r}, row {a!r}: {cell!r} is not a number")
            ida, idb = _dataset_id(a), _dataset_id(b)
            if value is not None and ida != idb:
                cells[min(ida, idb), max(ida, idb)].append(value)
    return {pair: fmean(values) for pair, values in cells.items()}


def _dataset_sizes(folder: Path) -> dict[str, tuple[float | None, float | None]]:
    columns = ["finetune_dataset", "size", "number_of_classes"]
    frame = read_source_csv(folder, FEATURES, columns)
    return {
        _dataset_id(name): (finite_number(size), finite_number(classes))
        for name, size, classes in frame[columns].itertuples(index=False)
        if is_name(name)
    }


def _models(folder: Path, layout: _Layout, model_ids: set[str], dataset_ids: set[str]) -> Table:
    """Every configured model plus any that only the records or probes name (with empty metadata)."""
    frame = read_source_csv(folder, CONFIG, ["model", layout.pretrain, *layout.model_meta.values()])
    rows: dict[str, list[str | None]] = {}
    for record in frame.to_dict("records"):
        model = record["model"]
        if not is_name(model) or model in rows:
            continue
        pretrain = _resolve(_dataset_id(record[layout.pretrain]), dataset_ids) or None
        meta = [_model_cell(record[column]) for column in layout.model_meta.values()]
        rows[model] = [model, pretrain, *meta]
    for model in model_ids - set(rows):
        rows[model] = [model] + [None] * (1 + len(layout.model_meta))
    return table("models.csv", ("model_id", "pretrain_dataset", *layout.model_meta), rows.values())


def _model_cell(cell: str) -> str:
    """A config cell in plain spelling: one-item lists unwrapped, counts as integers."""
    labels = _string_list(cell)
    return "|".join(labels) if labels is not None else metadata_cell(cell)


def _string_list(cell: str) -> list[str] | None:
    """The strings of a cell holding a Python list literal (how TransferGraph writes label lists)."""
    if not cell.startswith("["):
        return None
    try:
        value = ast.literal_eval(cell)
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


def _dataset_id(name: str) -> str:
    """One id per dataset: typos fixed, HuggingPics label lists named `hfpics:<label>|<label>...`."""
    labels = _string_list(name)
    if labels is not None:
        return "hfpics:" + "|".join(labels)
    return _TYPOS.get(name, name)


def _resolve(name: str, known: set[str]) -> str:
    """A model config's short dataset name as the id the library knows it by (`quora` -> `HHousen/quora`).

    A name that is a run of whole path parts of exactly one known id is that id; otherwise it stays as
    written (a source dataset the library has no data about).
    """
    if not name or name in known:
        return name
    parts = name.split("/")
    width = len(parts)
    hits = [
        known_id
        for known_id in known
        if any(known_id.split("/")[i : i + width] == parts for i in range(known_id.count("/") + 2 - width))
    ]
    return hits[0] if len(hits) == 1 else name
