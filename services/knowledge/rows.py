"""Row conversions both knowledge stores share (bundle cells as strings <-> graph records)."""

from __future__ import annotations

from modsnet.data.bundle import COST_COLUMNS, Table
from modsnet.data.graph import InteractionRecord


def distance(row: dict[str, str]) -> float:
    if row.get("distance", "") != "":
        return float(row["distance"])
    return 1.0 - float(row["similarity"])


def merged_features(tables: dict[str, Table]) -> dict[str, dict[str, float]]:
    merged: dict[str, dict[str, float]] = {}
    for table in tables.values():
        for row in table.rows:
            values = merged.setdefault(row["dataset_id"], {})
            for column, cell in row.items():
                if column != "dataset_id" and cell != "":
                    values[column] = float(cell)
    return merged


def interaction_row(rec: InteractionRecord) -> dict[str, str]:
    row = {"model_id": rec.model_id, "dataset_id": rec.dataset_id, "score": repr(rec.score)}
    for column in COST_COLUMNS:
        value = getattr(rec.cost, column)
        if value:
            row[column] = repr(float(value))
    row["provenance"] = rec.provenance
    return row
