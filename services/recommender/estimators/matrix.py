"""A library's (dataset, model) values where a record exists, stored sparse: rows by dataset, columns by model.

A library of 1,000,000 models x 3,000 datasets with 10,000,000 records holds 0.3% of its cells: as dense
float64 arrays each (datasets x models) copy was 24 GB, and the kNN estimator kept several. `ScoreMatrix`
keeps the records only (CSR by dataset, and a CSC copy by model built on first need), and answers the reads
the estimators and the probe-selector make: a few rows (a query's neighbours), a few columns (probed models),
per-row and per-column sums. A dense reader gets NaN where no record is (`toarray`, `columns`), as before.

`hidden` marks one row as absent without copying anything (a dataset held out of its own prediction).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from modsnet.data.graph import InteractionColumns


@dataclass(frozen=True, eq=False)
class ScoreMatrix:
    """Values at (row, column) cells, CSR: row i's columns are `indices[indptr[i]:indptr[i + 1]]`, sorted."""

    shape: tuple[int, int]
    indptr: np.ndarray  # (rows + 1,) int64
    indices: np.ndarray  # (nnz,) int64: column of each value
    data: np.ndarray  # (nnz,) float64
    hidden: int | None = None  # a row read as empty
    # What depends on the cells alone (row of each value, the CSC order), shared by every matrix of the same
    # cells (`with_data`, `without`): built once per fit, not once per held-out dataset.
    _shared: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def of_means(cls, records: InteractionColumns, model_ids: Sequence[str], dataset_ids: Sequence[str]) -> ScoreMatrix:
        """The mean score of each (dataset, model) of the caller's id lists that has records (rows: datasets,
        columns: models; records of ids the lists lack are left out). A pair's records add in record order."""
        m_pos, d_pos = records.positions(model_ids, dataset_ids)
        known = (m_pos >= 0) & (d_pos >= 0)
        n_rows, n_cols = len(dataset_ids), len(model_ids)
        key = d_pos[known] * n_cols + m_pos[known]
        cells, inverse = np.unique(key, return_inverse=True)
        total = np.bincount(inverse, weights=records.score[known], minlength=len(cells))
        count = np.bincount(inverse, minlength=len(cells))
        rows = cells // n_cols if n_cols else cells
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
        return cls((n_rows, n_cols), indptr, (cells - rows * n_cols).astype(np.int64), total / count)

    @classmethod
    def of_dense(cls, values: np.ndarray) -> ScoreMatrix:
        """From a dense array with NaN where no value is (tests, small libraries)."""
        present = ~np.isnan(values)
        indptr = np.zeros(values.shape[0] + 1, dtype=np.int64)
        np.cumsum(present.sum(axis=1), out=indptr[1:])
        return cls(values.shape, indptr, np.nonzero(present)[1].astype(np.int64), values[present].astype(float))

    # -- structure ---------------------------------------------------------------------------------

    @property
    def nnz(self) -> int:
        return len(self.data)

    def with_data(self, data: np.ndarray) -> ScoreMatrix:
        """The same cells with other values (one per stored cell, in storage order)."""
        return dataclasses.replace(self, data=np.asarray(data, dtype=float))

    def without(self, row: int | None) -> ScoreMatrix:
        """The same matrix with `row` read as empty (no copy)."""
        return dataclasses.replace(self, hidden=row)

    @property
    def row_of(self) -> np.ndarray:
        """The row of each stored value."""
        if "row_of" not in self._shared:  # a race builds it twice, the same
            self._shared["row_of"] = np.repeat(np.arange(self.shape[0], dtype=np.int64), np.diff(self.indptr))
        return self._shared["row_of"]

    @property
    def _by_column(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSC: (column pointers, rows, positions into `data`), rows ascending within a column."""
        if "order" not in self._shared:
            order = np.argsort(self.indices, kind="stable")  # stable: rows stay ascending
            colptr = np.zeros(self.shape[1] + 1, dtype=np.int64)
            np.cumsum(np.bincount(self.indices, minlength=self.shape[1]), out=colptr[1:])
            self._shared["column_rows"], self._shared["colptr"] = self.row_of[order], colptr
            self._shared["order"] = order
        return self._shared["colptr"], self._shared["column_rows"], self._shared["order"]

    def _live(self) -> np.ndarray | None:
        """A mask of the stored values outside the hidden row (None: no row hidden)."""
        if self.hidden is None:
            return None
        live = np.ones(self.nnz, dtype=bool)
        live[self.indptr[self.hidden] : self.indptr[self.hidden + 1]] = False
        return live

    @staticmethod
    def _zeroed(values: np.ndarray, live: np.ndarray | None) -> np.ndarray:
        return values if live is None else np.where(live, values, 0.0)

    # -- rows --------------------------------------------------------------------------------------

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Row i's columns (ascending) and values."""
        if i == self.hidden:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        span = slice(self.indptr[i], self.indptr[i + 1])
        return self.indices[span], self.data[span]

    def row_counts(self) -> np.ndarray:
        counts = np.diff(self.indptr)
        if self.hidden is not None:
            counts = counts.copy()
            counts[self.hidden] = 0
        return counts

    def dense_row(self, i: int) -> np.ndarray:
        """Row i over every column, NaN where no value is."""
        out = np.full(self.shape[1], np.nan)
        cols, values = self.row(i)
        out[cols] = values
        return out

    def get(self, i: int, j: int) -> float:
        """The value at (i, j), NaN where none is."""
        cols, values = self.row(i)
        k = int(np.searchsorted(cols, j))
        return float(values[k]) if k < len(cols) and cols[k] == j else float("nan")

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The values of `rows`: (position in `rows`, column, value) of each, in row order then column order."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.hidden is not None:
            rows = np.where(rows == self.hidden, -1, rows)
        starts = np.where(rows >= 0, self.indptr[np.maximum(rows, 0)], 0)
        lengths = np.where(rows >= 0, self.indptr[np.maximum(rows, 0) + 1] - starts, 0)
        which = np.repeat(np.arange(len(rows)), lengths)
        offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        at = starts[which] + offsets
        return which, self.indices[at], self.data[at]

    def row_stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row: count, mean and (population) standard deviation of its values; NaN for an empty row."""
        counts = self.row_counts()
        live = self._live()
        rows = self.row_of
        total = np.bincount(rows, weights=self._zeroed(self.data, live), minlength=self.shape[0])
        safe = np.maximum(counts, 1)
        mean = total / safe
        centred = (self.data - mean[rows]) ** 2
        squares = np.bincount(rows, weights=self._zeroed(centred, live), minlength=self.shape[0])
        std = np.sqrt(squares / safe)
        empty = counts == 0
        return counts, np.where(empty, np.nan, mean), np.where(empty, np.nan, std)

    # -- columns -----------------------------------------------------------------------------------

    def column_sums(self, values: np.ndarray | None = None) -> np.ndarray:
        """Per column, the sum of `values` (one per stored value; default the data) over the live rows."""
        values = self.data if values is None else values
        live = self._live()
        if live is not None:
            values = np.where(live, values, 0.0)
        return np.bincount(self.indices, weights=values, minlength=self.shape[1])

    def column_counts(self) -> np.ndarray:
        live = self._live()
        return np.bincount(self.indices, weights=None if live is None else live.astype(float), minlength=self.shape[1])

    def columns(self, js: Sequence[int] | np.ndarray) -> np.ndarray:
        """Columns `js` over every row, dense (rows x len(js)), NaN where no value is."""
        js = np.asarray(js, dtype=np.int64)
        out = np.full((self.shape[0], len(js)), np.nan)
        colptr, rows, at = self._by_column
        for k, j in enumerate(js.tolist()):
            span = slice(colptr[j], colptr[j + 1])
            out[rows[span], k] = self.data[at[span]]
        if self.hidden is not None:
            out[self.hidden] = np.nan
        return out

    def column_at(self, j: int, rows: np.ndarray) -> np.ndarray:
        """Column j's values at `rows`, NaN where no value is."""
        colptr, column_rows, at = self._by_column
        present, positions = column_rows[colptr[j] : colptr[j + 1]], at[colptr[j] : colptr[j + 1]]
        rows = np.asarray(rows, dtype=np.int64)
        out = np.full(len(rows), np.nan)
        if len(present):
            k = np.minimum(np.searchsorted(present, rows), len(present) - 1)
            found = (present[k] == rows) & (rows != self.hidden)
            out[found] = self.data[positions[k[found]]]
        return out

    def weighted_row_sum(self, rows: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, int]:
        """Σ_i weights_i · value(i, m) over `rows` for every column m (a missing value adds 0), and how many
        values there were."""
        rows = np.asarray(rows, dtype=np.int64)
        if 4 * len(rows) < self.shape[0]:  # a few rows (a query's neighbours): only their values are read
            which, cols, values = self.gather(rows)
            return np.bincount(cols, weights=weights[which] * values, minlength=self.shape[1]), len(values)
        per_row = np.zeros(self.shape[0])  # most rows: one pass over every value, no index arrays built
        per_row[rows] = weights
        counts = np.zeros(self.shape[0], dtype=np.int64)
        counts[rows] = self.row_counts()[rows]
        if self.hidden is not None:
            per_row[self.hidden] = 0.0
        return self.column_sums(self.data * per_row[self.row_of]), int(counts.sum())

    def transposed_product(
        self, dense: np.ndarray, values: np.ndarray | None = None, *, columns: np.ndarray | None = None
    ) -> np.ndarray:
        """`values`ᵀ @ dense: for each column m and each column c of `dense` (rows x c), Σ_i value(i, m) ·
        dense[i, c] over the live rows; `values` (one per stored value) default to the data, ones give the
        presence mask's product. `columns`: those columns' rows only (their values alone are read)."""
        dense = np.array(dense, dtype=float)
        if self.hidden is not None:
            dense[self.hidden] = 0.0
        values = self.data if values is None else values
        if columns is None:
            matrix = sparse.csr_array((values, self.indices, self.indptr), shape=self.shape)
            return np.asarray(matrix.T @ dense)
        colptr, column_rows, at = self._by_column
        columns = np.asarray(columns, dtype=np.int64)
        starts, lengths = colptr[columns], colptr[columns + 1] - colptr[columns]
        which = np.repeat(np.arange(len(columns)), lengths)
        spans = starts[which] + np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        rows, picked = column_rows[spans], values[at[spans]]
        out = np.empty((len(columns), dense.shape[1]))
        for c in range(dense.shape[1]):
            out[:, c] = np.bincount(which, weights=picked * dense[rows, c], minlength=len(columns))
        return out

    # -- dense, for small matrices and old readers -------------------------------------------------

    def toarray(self) -> np.ndarray:
        out = np.full(self.shape, np.nan)
        out[self.row_of, self.indices] = self.data
        if self.hidden is not None:
            out[self.hidden] = np.nan
        return out

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        array = self.toarray()
        return array if dtype is None else array.astype(dtype)
