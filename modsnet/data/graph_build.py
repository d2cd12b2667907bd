"""Library bundle -> knowledge-graph records: the one conversion the knowledge stores and the evaluation share.

A bundle's cells are strings (`modsnet.data.bundle`); the graph's records (`modsnet.data.graph`) are typed.
Both knowledge stores build what they keep with these functions and read it back into the same records,
and `snapshot_from_bundle` composes them into the snapshot a store serves right after importing the
bundle, which is what the recommender's offline evaluation runs on. One rule each:

* a similarity row is a distance: its `distance` cell, else 1 - its `similarity` cell;
* a dataset's features are the filled cells of every feature table merged; its feature set, the sorted
  table stems joined by commas, when any table has a row for it;
* a quarantined row (its `quarantine` cell says why) is kept and exported but is no record of the graph the
  estimators learn from, nor counted in a node's interactions and mean costs (`learned`);
* an empty cost cell costs 0 in the interaction's record but is no measurement in the model's mean cost
  (as NULL is to SQL's AVG);
* a dataset's raw feature vector (what the estimators compare datasets by) is its features, or, when it
  has none, its numeric metadata except ids and the junk columns `modsnet.data.columns` finds among the
  snapshot's datasets (`raw_features`); a model's metadata, as estimators read it, leaves out the junk
  columns found among the snapshot's models (`model_metadata`), and import warns about the same columns
  (`metadata_warnings`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .bundle import COST_COLUMNS, Bundle, Table, number
from .columns import finite_number, is_id_column, junk_columns
from .graph import (
    PROVENANCES,
    Cost,
    DatasetNode,
    InteractionColumns,
    InteractionRecord,
    LibraryInfo,
    ModelNode,
    SimilarityRecord,
    Snapshot,
)

# ----------------------------------------------------------------------------------------------------
# Rows -> records


def distance(row: Mapping[str, str]) -> float:
    """A `dataset_similarity.csv` row as a distance."""
    if row.get("distance", "") != "":
        return float(row["distance"])
    return 1.0 - float(row["similarity"])


def similarity_record(row: Mapping[str, str]) -> SimilarityRecord:
    return SimilarityRecord(row["dataset_a"], row["dataset_b"], distance(row))


def merged_features(tables: Mapping[str, Table]) -> dict[str, dict[str, float]]:
    """dataset_id -> the filled cells of every feature table, as numbers."""
    merged: dict[str, dict[str, float]] = {}
    for table in tables.values():
        for row in table.rows:
            values = merged.setdefault(row["dataset_id"], {})
            for column, cell in row.items():
                if column != "dataset_id" and cell != "":
                    values[column] = float(cell)
    return merged


def feature_set(tables: Mapping[str, Table]) -> str:
    """The feature set a dataset with features has: the feature tables' stems, sorted, comma-joined."""
    return ",".join(sorted(tables))


# datasets.csv cells that are a node's own, not metadata: the features of a dataset that feedback added (its
# feature set, and its values as a JSON object), so that export -> import gives the node back whole.
NODE_COLUMNS = frozenset({"dataset_id", "feature_set", "features"})


def dataset_metadata(row: Mapping[str, str]) -> dict[str, str]:
    """A `datasets.csv` row's metadata: every cell but the id and the node's own feature cells."""
    return {k: v for k, v in row.items() if k not in NODE_COLUMNS}


def dataset_row(node: DatasetNode) -> dict[str, str]:
    """The `datasets.csv` row a store keeps of a dataset node added after import (a searched dataset that got
    feedback): its metadata, its fingerprint, and its features in the node's own cells."""
    row = {"dataset_id": node.dataset_id, **node.metadata}
    if node.fingerprint:
        row["fingerprint"] = node.fingerprint
    if node.features:
        row["feature_set"] = node.feature_set
        row["features"] = json.dumps(node.features, sort_keys=True)
    return row


def dataset_node(
    library: str,
    row: Mapping[str, str],
    features: Mapping[str, Mapping[str, float]],
    stems: str,
    interactions: int = 0,
) -> DatasetNode:
    """A `datasets.csv` row as a node, with its features from `merged_features` and `stems` from `feature_set`."""
    dataset_id = row["dataset_id"]
    own = dataset_id not in features and bool(row.get("features"))  # a node feedback added, exported
    return DatasetNode(
        library=library,
        dataset_id=dataset_id,
        metadata=dataset_metadata(row),
        features=dict(features.get(dataset_id, {})) if not own else json.loads(row["features"]),
        feature_set=stems if dataset_id in features else row.get("feature_set", "") if own else "",
        fingerprint=row.get("fingerprint", ""),
        interactions=interactions,
    )


def model_node(library: str, row: Mapping[str, str], cost: Cost | None = None, interactions: int = 0) -> ModelNode:
    """A `models.csv` row as a node; `cost` and `interactions` come from its records (see `ModelTally`)."""
    return ModelNode(
        library=library,
        model_id=row["model_id"],
        metadata={k: v for k, v in row.items() if k != "model_id"},
        cost=cost or Cost(),
        interactions=interactions,
    )


def interaction_record(row: Mapping[str, str]) -> InteractionRecord:
    """An `interactions.csv` row as a record; an empty cost cell is 0 here."""
    return InteractionRecord(
        row["model_id"],
        row["dataset_id"],
        float(row["score"]),
        Cost(*((number(row.get(c, "")) or 0.0) for c in COST_COLUMNS)),
        row.get("provenance") or "imported",
        row.get("request_id", ""),
        row.get("quarantine", ""),
    )


def learned(row: Mapping[str, str]) -> bool:
    """Whether estimators learn from an `interactions.csv` row: every row but a quarantined one."""
    return not row.get("quarantine")


def interaction_row(rec: InteractionRecord) -> dict[str, str]:
    """A record as an `interactions.csv` row (what a store keeps of feedback); a zero cost is left empty."""
    row = {"model_id": rec.model_id, "dataset_id": rec.dataset_id, "score": repr(rec.score)}
    for column in COST_COLUMNS:
        value = getattr(rec.cost, column)
        if value:
            row[column] = repr(float(value))
    row["provenance"] = rec.provenance
    for column in ("request_id", "quarantine"):
        if getattr(rec, column):
            row[column] = getattr(rec, column)
    return row


def _positions(vocabulary: list[str], ids: Sequence[object]) -> np.ndarray:
    """Each of `ids` (strings, as cells hold them) as its position in `vocabulary`, which gains (in order)
    the ids it lacked."""
    found = pd.Index(vocabulary).get_indexer(ids) if len(vocabulary) else np.full(len(ids), -1)
    if (found < 0).any():
        for k in np.flatnonzero(found < 0).tolist():
            if ids[k] not in vocabulary:
                vocabulary.append(str(ids[k]))
        found = pd.Index(vocabulary).get_indexer(ids)
    return found.astype(np.int32)


def _numbers(cells: Sequence[object]) -> np.ndarray:
    """Numeric cells (strings, floats, None) as float64; an empty or missing cell is 0."""
    if not len(cells):
        return np.zeros(0)
    try:  # numpy parses a list of number strings in C; an empty cell makes it give up
        values = np.array(cells, dtype=np.float64)
    except ValueError:
        values = pd.to_numeric(pd.Series(cells, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    return np.nan_to_num(values, nan=0.0)


def interaction_columns(
    model_ids: Sequence[str],
    dataset_ids: Sequence[str],
    cells: Mapping[str, Sequence[object]],
) -> InteractionColumns:
    """Records given column by column (`model_id`, `dataset_id`, `score`, optionally the cost columns,
    `provenance`, `request_id`, `quarantine`; cells as a bundle or a database holds them) as columns over
    the node order `model_ids`, `dataset_ids`. The vectorised twin of `interaction_record`."""
    models, datasets = list(model_ids), list(dataset_ids)
    m_idx = _positions(models, cells["model_id"])
    d_idx = _positions(datasets, cells["dataset_id"])
    n = len(m_idx)
    provenance = cells.get("provenance")
    if provenance is not None and n:
        found = pd.Index(PROVENANCES).get_indexer([p or "imported" for p in provenance])
        if (found < 0).any():
            bad = provenance[int(np.flatnonzero(found < 0)[0])]
            raise ValueError(f"provenance {bad!r} is not one of {', '.join(PROVENANCES)}")
        prov = found.astype(np.int8)
    else:
        prov = np.zeros(n, np.int8)

    def sparse(column: str) -> dict[int, str]:
        values = cells.get(column)
        return {k: str(v) for k, v in enumerate(values) if v} if values is not None else {}

    score = _numbers(cells["score"])
    train, inference, memory = (_numbers(cells[c]) if c in cells else np.zeros(n) for c in COST_COLUMNS)
    return InteractionColumns(
        models,
        datasets,
        m_idx,
        d_idx,
        score,
        train,
        inference,
        memory,
        prov,
        sparse("request_id"),
        sparse("quarantine"),
    )


def interaction_columns_from_rows(
    rows: Sequence[Mapping[str, str]], model_ids: Sequence[str], dataset_ids: Sequence[str]
) -> InteractionColumns:
    """`interactions.csv` rows (already filtered to the learned ones) as columns over the node order."""
    wanted = ("model_id", "dataset_id", "score", *COST_COLUMNS, "provenance", "request_id", "quarantine")
    return interaction_columns(model_ids, dataset_ids, {c: [r.get(c, "") for r in rows] for c in wanted})


# ----------------------------------------------------------------------------------------------------
# Counts and mean costs


@dataclass
class ModelTally:
    """A model's interaction count, and per cost column the sum and the count of the cells that have a value."""

    interactions: int = 0
    cost_sums: list[float] = field(default_factory=lambda: [0.0] * len(COST_COLUMNS))
    cost_counts: list[int] = field(default_factory=lambda: [0] * len(COST_COLUMNS))

    def add(self, row: Mapping[str, str]) -> None:
        self.interactions += 1
        for k, column in enumerate(COST_COLUMNS):
            value = number(row.get(column, ""))
            if value is not None:  # an empty cell is no measurement, not a measured 0
                self.cost_sums[k] += value
                self.cost_counts[k] += 1

    @property
    def cost(self) -> Cost:
        """The mean of each cost column over the records that have it, 0 where none has."""
        return Cost(*(s / n if n else 0.0 for s, n in zip(self.cost_sums, self.cost_counts, strict=True)))


@dataclass
class GraphTally:
    """Per model its `ModelTally`, per dataset its interaction count: what nodes report of their records."""

    models: dict[str, ModelTally] = field(default_factory=dict)
    datasets: dict[str, int] = field(default_factory=dict)

    def add(self, row: Mapping[str, str]) -> None:
        """Count one `interactions.csv` row."""
        self.models.setdefault(row["model_id"], ModelTally()).add(row)
        self.datasets[row["dataset_id"]] = self.datasets.get(row["dataset_id"], 0) + 1

    def model(self, model_id: str) -> ModelTally:
        return self.models.get(model_id) or ModelTally()


# ----------------------------------------------------------------------------------------------------
# The whole graph


def snapshot_from_bundle(
    bundle: Bundle, *, graph_version: int = 1, blob_id: str = "", imported_unix: float = 0.0
) -> Snapshot:
    """The snapshot a knowledge store serves right after importing `bundle` (nodes in the bundle's order)."""
    name = bundle.name
    rows = [row for row in bundle.interactions.rows if learned(row)]
    tally = GraphTally()
    for row in rows:
        tally.add(row)
    models = []
    for row in bundle.models.rows:
        counted = tally.model(row["model_id"])
        models.append(model_node(name, row, counted.cost, counted.interactions))
    features, stems = merged_features(bundle.features), feature_set(bundle.features)
    datasets = [
        dataset_node(name, row, features, stems, tally.datasets.get(row["dataset_id"], 0))
        for row in bundle.datasets.rows
    ]
    similarities = [similarity_record(row) for row in bundle.similarity.rows] if bundle.similarity is not None else []
    interactions = interaction_columns_from_rows(rows, [m.model_id for m in models], [d.dataset_id for d in datasets])
    info = LibraryInfo(
        name, dict(bundle.meta), len(models), len(datasets), len(interactions), graph_version, blob_id, imported_unix
    )
    return Snapshot(info, models, datasets, interactions, similarities)


# ----------------------------------------------------------------------------------------------------
# Metadata as estimators read it

# Metadata columns the bundle format defines (a model's artifact file, a dataset's sha256): never features.
_FORMAT_COLUMNS = frozenset({"artifact", "fingerprint"})


def dataset_raw_features(node: DatasetNode, *, ignored: Collection[str] = ()) -> dict[str, float]:
    """A dataset's raw feature vector: its features, or its numeric metadata (sizes, class counts) but ids
    and the `ignored` columns (see `raw_features`, which decides them)."""
    if node.features:
        return dict(node.features)
    out = {}
    for key, cell in node.metadata.items():
        value = finite_number(cell)
        if value is not None and not is_id_column(key) and key not in ignored:
            out[key] = value
    return out


def raw_features(datasets: Sequence[DatasetNode]) -> dict[str, dict[str, float]]:
    """Each dataset's raw feature vector, the junk metadata columns of `datasets` left out (what estimators fit on)."""
    junk = _FORMAT_COLUMNS | set(junk_columns([node.metadata for node in datasets]))
    return {node.dataset_id: dataset_raw_features(node, ignored=junk) for node in datasets}


def model_metadata(snapshot: Snapshot) -> list[dict[str, str]]:
    """Each model's metadata (in the snapshot's order), the junk columns left out: what estimators read of models.

    A column whose values name the library's datasets (a model's source dataset) is a reference, kept.
    """
    metadata = [model.metadata for model in snapshot.models]
    junk = _FORMAT_COLUMNS | set(junk_columns(metadata, references={node.dataset_id for node in snapshot.datasets}))
    return [{k: v for k, v in cells.items() if k not in junk} for cells in metadata]


def metadata_warnings(bundle: Bundle) -> list[str]:
    """One line per junk column of the bundle's `models.csv` and `datasets.csv`: what import warns about.

    Decided as `raw_features` and `model_metadata` decide it on the snapshot the import makes. The format's
    own columns (`artifact`, `fingerprint`) are left out of features too, but they are no mistake: no warning.
    """
    references = {row["dataset_id"] for row in bundle.datasets.rows}
    found = [
        (bundle.models.file, junk_columns(bundle.models.rows, key="model_id", references=references)),
        (bundle.datasets.file, junk_columns(bundle.datasets.rows, key="dataset_id")),
    ]
    return [
        f"{file} column {column!r}: {reason}, ignored by the estimators"
        for file, junk in found
        for column, reason in junk.items()
        if column not in _FORMAT_COLUMNS
    ]
