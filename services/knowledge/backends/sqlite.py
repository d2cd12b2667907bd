"""The embedded knowledge store: one SQLite file.

WAL mode lets readers go on while a writer works; every write is one `BEGIN IMMEDIATE` transaction, so a
library import, a batch of interactions or a feedback is visible wholly or not at all, and two writers
are serialised by SQLite's lock (the second waits up to `busy_timeout`). Graph versions live in their own
table that deletes never touch, so a library's version only ever increases, even across delete and
re-import. Cells keep the strings the bundle held (`row_json`), so export gives the bundle back.

Feedback carries a request id (`requests`: one row per request, its state): a retry of a stored request
writes nothing, a retraction deletes the request's records and keeps the request as "retracted" (so a late
retry cannot bring them back), a confirmation clears the records' `quarantine`. Both are written to
`audit` in the same transaction; the audit log outlives the library.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modsnet.data.bundle import COST_COLUMNS, FEEDBACK_COLUMNS, Bundle, Table, number
from modsnet.data.graph import (
    PROVENANCES,
    AuditEntry,
    Cost,
    DatasetNode,
    GraphDelta,
    InteractionColumns,
    InteractionRecord,
    LibraryInfo,
    ModelNode,
    QueryRecord,
    SimilarityRecord,
    Snapshot,
    check_interaction,
)
from modsnet.data.graph_build import (
    dataset_metadata,
    dataset_node,
    dataset_row,
    distance,
    feature_set,
    interaction_record,
    interaction_row,
    merged_features,
    model_node,
)
from modsnet.runtime.errors import AlreadyExists, DataLoss, InvalidArgument, NotFound, Unavailable

from ..store import KnowledgeStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS libraries (
    name TEXT PRIMARY KEY,
    meta_json TEXT NOT NULL,
    columns_json TEXT NOT NULL,
    bundle_blob_id TEXT NOT NULL,
    imported_unix REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS graph_versions (
    library TEXT PRIMARY KEY, version INTEGER NOT NULL, base INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS models (
    library TEXT NOT NULL, model_id TEXT NOT NULL, row_json TEXT NOT NULL,
    PRIMARY KEY (library, model_id)
);
CREATE TABLE IF NOT EXISTS datasets (
    library TEXT NOT NULL, dataset_id TEXT NOT NULL, row_json TEXT NOT NULL,
    fingerprint TEXT NOT NULL DEFAULT '', feature_set TEXT NOT NULL DEFAULT '',
    features_json TEXT NOT NULL DEFAULT '{}', origin TEXT NOT NULL DEFAULT 'imported',
    graph_version INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (library, dataset_id)
);
CREATE INDEX IF NOT EXISTS datasets_fingerprint ON datasets (fingerprint) WHERE fingerprint != '';
CREATE TABLE IF NOT EXISTS feature_rows (
    library TEXT NOT NULL, stem TEXT NOT NULL, dataset_id TEXT NOT NULL, row_json TEXT NOT NULL,
    PRIMARY KEY (library, stem, dataset_id)
);
CREATE TABLE IF NOT EXISTS interactions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    library TEXT NOT NULL, model_id TEXT NOT NULL, dataset_id TEXT NOT NULL,
    score REAL NOT NULL, train_seconds REAL, inference_seconds REAL, memory_bytes REAL,
    provenance TEXT NOT NULL, row_json TEXT NOT NULL, created_unix REAL NOT NULL,
    request_id TEXT NOT NULL DEFAULT '', quarantine TEXT NOT NULL DEFAULT '',
    graph_version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS similarities (
    library TEXT NOT NULL, dataset_a TEXT NOT NULL, dataset_b TEXT NOT NULL,
    distance REAL NOT NULL, row_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS similarities_library ON similarities (library);
CREATE TABLE IF NOT EXISTS probes (library TEXT NOT NULL, row_json TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS probes_library ON probes (library);
CREATE TABLE IF NOT EXISTS artifacts (
    library TEXT NOT NULL, path TEXT NOT NULL, blob_id TEXT NOT NULL, PRIMARY KEY (library, path)
);
CREATE TABLE IF NOT EXISTS queries (
    query_id TEXT PRIMARY KEY, library TEXT NOT NULL, fingerprint TEXT NOT NULL, filename TEXT NOT NULL,
    feature_set TEXT NOT NULL, features_json TEXT NOT NULL, modality TEXT NOT NULL,
    answer_json TEXT NOT NULL, graph_version INTEGER NOT NULL, logged_unix REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS queries_fingerprint ON queries (fingerprint);
CREATE INDEX IF NOT EXISTS queries_logged ON queries (logged_unix);
CREATE TABLE IF NOT EXISTS requests (
    library TEXT NOT NULL, request_id TEXT NOT NULL, state TEXT NOT NULL, records INTEGER NOT NULL,
    PRIMARY KEY (library, request_id)
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, library TEXT NOT NULL, unix REAL NOT NULL, principal TEXT NOT NULL,
    action TEXT NOT NULL, request_id TEXT NOT NULL, records INTEGER NOT NULL, note TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_library ON audit (library, id);
"""
# Columns added after the first release: a file made before gets them on open.
_ADDED_COLUMNS = {
    "interactions": (
        "request_id TEXT NOT NULL DEFAULT ''",
        "quarantine TEXT NOT NULL DEFAULT ''",
        "graph_version INTEGER NOT NULL DEFAULT 0",
    ),
    "datasets": ("graph_version INTEGER NOT NULL DEFAULT 0",),
    "graph_versions": ("base INTEGER NOT NULL DEFAULT 0",),
}
_REQUEST_INDEX = (
    "CREATE INDEX IF NOT EXISTS interactions_request ON interactions (library, request_id) WHERE request_id != ''"
)
# The records of one request. The `!= ''` lets SQLite use the partial index above (it cannot prove that of a
# bound parameter): without it every feedback's idempotency check scanned the library's records (27 ms on
# TabZoo's 52k). Request ids are never empty where this is used.
_BY_REQUEST = "request_id = ? AND request_id != ''"
# Deltas (`delta`): a feedback's records and dataset nodes carry the graph version that added them (0: an import's,
# or added before versions were kept), and `graph_versions.base` is the last version that did more than add them
# (an import, a retraction, a confirmation, a delete): a delta reaches back to it and no further.
_VERSION_INDEX = "CREATE INDEX IF NOT EXISTS interactions_version ON interactions (library, graph_version)"
# Every index of the interactions table, made on open (after the columns they read are added).
_INTERACTION_INDEXES = {
    "interactions_dataset": "CREATE INDEX IF NOT EXISTS interactions_dataset ON interactions (library, dataset_id)",
    "interactions_model": "CREATE INDEX IF NOT EXISTS interactions_model ON interactions (library, model_id)",
    "interactions_request": _REQUEST_INDEX,
    "interactions_version": _VERSION_INDEX,
}
# The two an import's records land in at random places (1M model ids in no order): an import that brings more
# records than the table holds drops them, loads, and makes them again, in its one transaction: a sort each, where
# inserting into them one row at a time cost 64% of the 1M import (docs/benchmarks-scale.md, run 9 and run 11).
# A failed import rolls the drop back with its rows. The other two stay: an import's records enter the version
# index in order (graph version 0, rising ids) and the request index only with a request id (rare): cheap inserts,
# where making them again would read the whole table each.
_BULK_REBUILT = ("interactions_dataset", "interactions_model")
# The import's page cache (KiB; SQLite's default is 2 MiB): the interactions' pages and the sorter that makes the
# indexes again stay in memory instead of spilling to temporary files. The connection's own comes back after.
_IMPORT_CACHE_KIB = 256 * 1024

_SNAPSHOT_CHUNK = 250_000  # interaction rows fetched at a time when building a snapshot's columns

_LIBRARY_TABLES = (
    "models",
    "datasets",
    "feature_rows",
    "interactions",
    "similarities",
    "probes",
    "artifacts",
    "requests",
)


class SqliteKnowledgeStore(KnowledgeStore):
    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []  # every thread's, so close() reaches them all
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, tuple[int, ...]]] = {}  # library -> (graph version, its three counts)
        db = self._db()
        db.executescript(SCHEMA)  # executescript manages its own transaction
        for table, columns in _ADDED_COLUMNS.items():
            present = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
            for column in columns:
                if column.split()[0] not in present:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
                    if table == "graph_versions":  # records added before were not stamped: no delta reaches past now
                        db.execute("UPDATE graph_versions SET base = version")
        for index in _INTERACTION_INDEXES.values():
            db.execute(index)

    # -- connections --------------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(
                    self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
                )
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")  # an acknowledged feedback survives a power cut
                db.execute("PRAGMA foreign_keys=ON")
            except sqlite3.Error as exc:
                raise Unavailable(f"knowledge database {self.path} cannot be opened: {exc}") from None
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise Unavailable(f"knowledge database {self.path} is busy or unusable: {exc}") from None
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        # One read transaction: every SELECT inside sees the same committed state (WAL snapshot).
        db = self._db()
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("COMMIT")

    @staticmethod
    def _bump(db: sqlite3.Connection, library: str, *, added_only: bool = False) -> int:
        """The library's next graph version; unless the write only added records and dataset nodes, also the
        base no delta reaches back past."""
        db.execute(
            "INSERT INTO graph_versions (library, version, base) VALUES (?, 1, 1) "
            "ON CONFLICT (library) DO UPDATE SET version = version + 1"
            + ("" if added_only else ", base = version + 1"),
            (library,),
        )
        return int(db.execute("SELECT version FROM graph_versions WHERE library = ?", (library,)).fetchone()[0])

    # -- libraries ----------------------------------------------------------------------------------

    def import_bundle(
        self, bundle: Bundle, *, blob_id: str, replace: bool, artifacts: dict[str, str], request_id: str = ""
    ) -> tuple[LibraryInfo, bool]:
        name = bundle.name
        now = time.time()
        with self._write() as db:
            existing = db.execute("SELECT bundle_blob_id FROM libraries WHERE name = ?", (name,)).fetchone()
            if existing is not None:
                if existing[0] == blob_id:
                    return self._library(db, name), True
                if not replace:
                    raise AlreadyExists(
                        f"library {name!r} already exists (a different bundle); import with replace to "
                        "make this bundle its new version"
                    )
                for table in _LIBRARY_TABLES:
                    db.execute(f"DELETE FROM {table} WHERE library = ?", (name,))
                db.execute("DELETE FROM libraries WHERE name = ?", (name,))
            columns = {
                "models.csv": bundle.models.columns,
                "datasets.csv": bundle.datasets.columns,
                "interactions.csv": bundle.interactions.columns,
                "dataset_similarity.csv": bundle.similarity.columns if bundle.similarity else None,
                "probes.csv": bundle.probes.columns if bundle.probes else None,
                "features": {stem: t.columns for stem, t in bundle.features.items()},
            }
            db.execute(
                "INSERT INTO libraries VALUES (?, ?, ?, ?, ?)",
                (name, json.dumps(bundle.meta), json.dumps(columns), blob_id, now),
            )
            db.executemany(
                "INSERT INTO models VALUES (?, ?, ?)",
                ((name, r["model_id"], json.dumps(r)) for r in bundle.models.rows),
            )
            features, stems = merged_features(bundle.features), feature_set(bundle.features)
            nodes = (dataset_node(name, r, features, stems) for r in bundle.datasets.rows)
            db.executemany(
                "INSERT INTO datasets (library, dataset_id, row_json, fingerprint, feature_set, features_json, origin) "
                "VALUES (?, ?, ?, ?, ?, ?, 'imported')",
                (
                    (name, n.dataset_id, json.dumps(r), n.fingerprint, n.feature_set, json.dumps(n.features))
                    for r, n in zip(bundle.datasets.rows, nodes, strict=True)
                ),
            )
            for stem, feature_table in bundle.features.items():
                db.executemany(
                    "INSERT INTO feature_rows VALUES (?, ?, ?, ?)",
                    ((name, stem, r["dataset_id"], json.dumps(r)) for r in feature_table.rows),
                )
            requested: dict[str, int] = {}

            def interactions() -> Iterator[tuple[Any, ...]]:
                # One pass, streamed from the bundle's file (`CsvRows`): requests are counted on the way.
                for r in bundle.interactions.rows:
                    if r.get("request_id"):
                        requested[r["request_id"]] = requested.get(r["request_id"], 0) + 1
                    yield (
                        name,
                        r["model_id"],
                        r["dataset_id"],
                        float(r["score"]),
                        *(number(r.get(c, "")) for c in COST_COLUMNS),
                        r.get("provenance") or "imported",
                        json.dumps(r),
                        now,
                        r.get("request_id", ""),
                        r.get("quarantine", ""),
                    )

            with self._bulk_interactions(db, len(bundle.interactions.rows)):
                db.executemany(
                    "INSERT INTO interactions (library, model_id, dataset_id, score, train_seconds, "
                    "inference_seconds, memory_bytes, provenance, row_json, created_unix, request_id, quarantine) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    interactions(),
                )
            if request_id:
                requested[f"import:{request_id}"] = 0
            db.executemany(
                "INSERT INTO requests VALUES (?, ?, 'applied', ?)", ((name, rid, n) for rid, n in requested.items())
            )
            if bundle.similarity is not None:
                db.executemany(
                    "INSERT INTO similarities VALUES (?, ?, ?, ?, ?)",
                    (
                        (name, r["dataset_a"], r["dataset_b"], distance(r), json.dumps(r))
                        for r in bundle.similarity.rows
                    ),
                )
            if bundle.probes is not None:
                db.executemany("INSERT INTO probes VALUES (?, ?)", ((name, json.dumps(r)) for r in bundle.probes.rows))
            db.executemany(
                "INSERT INTO artifacts VALUES (?, ?, ?)", ((name, p, b) for p, b in sorted(artifacts.items()))
            )
            self._bump(db, name)
            return self._library(db, name), False

    @staticmethod
    @contextmanager
    def _bulk_interactions(db: sqlite3.Connection, records: int) -> Iterator[None]:
        """Inside a write transaction: `records` interactions about to be inserted, with a larger page cache and,
        when they outnumber the rows already there, without the table's two random-order indexes, made again after
        the insert (`_BULK_REBUILT`). On an exception the caller's rollback brings them back with the rows."""
        (cache,) = db.execute("PRAGMA cache_size").fetchone()
        db.execute(f"PRAGMA cache_size = -{_IMPORT_CACHE_KIB}")
        try:
            (present,) = db.execute("SELECT COUNT(*) FROM interactions").fetchone()
            rebuild = records > present
            if rebuild:
                for name in _BULK_REBUILT:
                    db.execute(f"DROP INDEX IF EXISTS {name}")
            yield
            if rebuild:
                for name in _BULK_REBUILT:
                    db.execute(_INTERACTION_INDEXES[name])
        finally:
            db.execute(f"PRAGMA cache_size = {int(cache)}")

    def export_bundle(self, name: str) -> tuple[Bundle, dict[str, str]]:
        with self._read() as db:
            row = db.execute("SELECT meta_json, columns_json FROM libraries WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"library {name!r} not found")
            meta, columns = json.loads(row[0]), json.loads(row[1])

            def rows(sql: str) -> list[dict[str, str]]:
                return [json.loads(r[0]) for r in db.execute(sql, (name,))]

            models = Table("models.csv", columns["models.csv"], rows("SELECT row_json FROM models WHERE library = ?"))
            datasets = Table(
                "datasets.csv",
                columns["datasets.csv"],
                rows("SELECT row_json FROM datasets WHERE library = ?"),
            ).widened()
            interactions = Table(
                "interactions.csv",
                list(columns["interactions.csv"]),
                rows("SELECT row_json FROM interactions WHERE library = ? ORDER BY id"),
            )
            for extra in FEEDBACK_COLUMNS:
                if extra not in interactions.columns and any(r.get(extra) for r in interactions.rows):
                    interactions.columns.append(extra)
            if "provenance" in interactions.columns:
                for r in interactions.rows:
                    r.setdefault("provenance", "imported")
            similarity = probes = None
            if columns.get("dataset_similarity.csv"):
                similarity = Table(
                    "dataset_similarity.csv",
                    columns["dataset_similarity.csv"],
                    rows("SELECT row_json FROM similarities WHERE library = ?"),
                )
            if columns.get("probes.csv"):
                probes = Table(
                    "probes.csv", columns["probes.csv"], rows("SELECT row_json FROM probes WHERE library = ?")
                )
            features = {}
            for stem, cols in columns["features"].items():
                feature_rows = [
                    json.loads(r[0])
                    for r in db.execute(
                        "SELECT row_json FROM feature_rows WHERE library = ? AND stem = ?", (name, stem)
                    )
                ]
                features[stem] = Table(f"dataset_features/{stem}.csv", cols, feature_rows)
            artifacts = dict(db.execute("SELECT path, blob_id FROM artifacts WHERE library = ?", (name,)).fetchall())
        return Bundle(meta, models, datasets, interactions, similarity, probes, features), artifacts

    def delete_library(self, name: str) -> None:
        with self._write() as db:
            if db.execute("SELECT 1 FROM libraries WHERE name = ?", (name,)).fetchone() is None:
                raise NotFound(f"library {name!r} not found")
            for table in _LIBRARY_TABLES:
                db.execute(f"DELETE FROM {table} WHERE library = ?", (name,))
            db.execute("DELETE FROM libraries WHERE name = ?", (name,))
            self._bump(db, name)

    @staticmethod
    def _require_library(db: sqlite3.Connection, name: str) -> None:
        """NotFound for an unknown library, without `_library`'s three COUNT(*) scans (~5 ms on TabZoo's 52k
        records): every feedback checks it twice."""
        if db.execute("SELECT 1 FROM libraries WHERE name = ?", (name,)).fetchone() is None:
            raise NotFound(f"library {name!r} not found")

    def _library(self, db: sqlite3.Connection, name: str, *, committed: bool = False) -> LibraryInfo:
        """The library's info as `db` sees it; `committed`: `db` is a read transaction (counts may be cached)."""
        row = db.execute(
            "SELECT meta_json, bundle_blob_id, imported_unix FROM libraries WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            raise NotFound(f"library {name!r} not found")
        found = db.execute("SELECT version FROM graph_versions WHERE library = ?", (name,)).fetchone()
        version = int(found[0]) if found else 0
        # Every write that changes a count bumps the version, and a name's committed versions never repeat (a
        # delete bumps it too): counts read at a committed version hold for it, so a ListLibraries per search
        # costs no COUNT(*) scans. A write's own transaction may still roll back: its counts are not kept.
        cached = self._counts.get(name) if committed else None
        if cached is not None and cached[0] == version:
            counts = cached[1]
        else:
            counts = tuple(
                db.execute(f"SELECT COUNT(*) FROM {t} WHERE library = ?", (name,)).fetchone()[0]
                for t in ("models", "datasets", "interactions")
            )
            if committed:
                self._counts[name] = (version, counts)
        return LibraryInfo(
            name=name,
            meta=json.loads(row[0]),
            models=counts[0],
            datasets=counts[1],
            interactions=counts[2],
            graph_version=version,
            bundle_blob_id=row[1],
            imported_unix=row[2],
        )

    def list_libraries(self) -> list[LibraryInfo]:
        with self._read() as db:
            names = [r[0] for r in db.execute("SELECT name FROM libraries ORDER BY name")]
            return [self._library(db, n, committed=True) for n in names]

    def get_library(self, name: str) -> LibraryInfo:
        with self._read() as db:
            return self._library(db, name, committed=True)

    # -- nodes --------------------------------------------------------------------------------------

    def _models(
        self, db: sqlite3.Connection, library: str, model_id: str | None = None, *, among: list[str] | None = None
    ) -> list[ModelNode]:
        """The library's models by id (only `model_id`, or only those `among`, when given)."""
        if among is not None:
            only = " AND model_id IN (SELECT value FROM json_each(?))"
            args: tuple[str, ...] = (library, json.dumps(among))
        else:
            only = " AND model_id = ?" if model_id else ""
            args = (library, model_id) if model_id else (library,)
        stats = {
            r[0]: r[1:]
            for r in db.execute(
                "SELECT model_id, AVG(train_seconds), AVG(inference_seconds), AVG(memory_bytes), COUNT(*) "
                f"FROM interactions WHERE library = ? AND quarantine = ''{only} GROUP BY model_id",
                args,
            )
        }
        nodes = []
        for mid, row_json in db.execute(
            f"SELECT model_id, row_json FROM models WHERE library = ?{only} ORDER BY model_id",
            args,
        ):
            train, infer, memory, count = stats.get(mid, (None, None, None, 0))
            # AVG skips NULL, the empty cells: the mean over the records that measured the cost.
            cost = Cost(train or 0.0, infer or 0.0, memory or 0.0)
            nodes.append(model_node(library, json.loads(row_json), cost, count))
        return nodes

    def _datasets(self, db: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> list[DatasetNode]:
        nodes = []
        for library, did, row_json, fingerprint, stems, features_json, count in db.execute(
            "SELECT d.library, d.dataset_id, d.row_json, d.fingerprint, d.feature_set, d.features_json, "
            "(SELECT COUNT(*) FROM interactions i "
            "WHERE i.library = d.library AND i.dataset_id = d.dataset_id AND i.quarantine = '') "
            f"FROM datasets d WHERE {where} ORDER BY d.library, d.dataset_id",
            args,
        ):
            row = json.loads(row_json)
            nodes.append(
                DatasetNode(
                    library=library,
                    dataset_id=did,
                    metadata=dataset_metadata(row),
                    features=json.loads(features_json),
                    feature_set=stems,
                    fingerprint=fingerprint,
                    interactions=count,
                )
            )
        return nodes

    def get_model(self, library: str, model_id: str) -> ModelNode:
        with self._read() as db:
            self._library(db, library)
            found = self._models(db, library, model_id)
        if not found:
            raise NotFound(f"model {model_id!r} not found in library {library!r}")
        return found[0]

    def artifact_blob(self, library: str, path: str) -> str:
        with self._read() as db:
            self._library(db, library)
            row = db.execute("SELECT blob_id FROM artifacts WHERE library = ? AND path = ?", (library, path)).fetchone()
        if row is None:
            raise NotFound(f"library {library!r} has no artifact {path!r}")
        return str(row[0])

    def get_dataset(self, library: str, dataset_id: str) -> DatasetNode:
        with self._read() as db:
            self._library(db, library)
            found = self._datasets(db, "d.library = ? AND d.dataset_id = ?", (library, dataset_id))
        if not found:
            raise NotFound(f"dataset {dataset_id!r} not found in library {library!r}")
        return found[0]

    def find_dataset(self, fingerprint: str, library: str = "") -> DatasetNode:
        if not fingerprint:
            raise InvalidArgument("fingerprint is required")
        with self._read() as db:
            if library:
                found = self._datasets(db, "d.fingerprint = ? AND d.library = ?", (fingerprint, library))
            else:
                found = self._datasets(db, "d.fingerprint = ?", (fingerprint,))
        if not found:
            raise NotFound(f"no dataset with fingerprint {fingerprint[:12]}… is known")
        return found[0]

    # -- writes -------------------------------------------------------------------------------------

    def add_interactions(
        self,
        library: str,
        new_datasets: list[DatasetNode],
        interactions: list[InteractionRecord],
        request_id: str = "",
    ) -> tuple[int, int]:
        for i, rec in enumerate(interactions):
            check_interaction(rec, f"interaction {i}: ")
        if request_id:
            interactions = [dataclasses.replace(rec, request_id=request_id) for rec in interactions]
        now = time.time()
        with self._write() as db:
            self._require_library(db, library)
            if request_id:
                done = db.execute(
                    "SELECT records FROM requests WHERE library = ? AND request_id = ?", (library, request_id)
                ).fetchone()
                if done is not None:  # a retry: the first attempt was stored
                    return self._library(db, library).graph_version, int(done[0])
            # Bumped first so the rows carry the version that adds them; a refused write rolls it back too.
            version = self._bump(db, library, added_only=True)
            added_datasets = 0
            for node in new_datasets:
                existing = db.execute(
                    "SELECT fingerprint FROM datasets WHERE library = ? AND dataset_id = ?",
                    (library, node.dataset_id),
                ).fetchone()
                if existing is not None:
                    if existing[0] != node.fingerprint:
                        raise AlreadyExists(f"dataset {node.dataset_id!r} already exists with other content")
                    continue
                row = dataset_row(node)
                db.execute(
                    "INSERT INTO datasets (library, dataset_id, row_json, fingerprint, feature_set, features_json, "
                    "origin, graph_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        library,
                        node.dataset_id,
                        json.dumps(row),
                        node.fingerprint,
                        node.feature_set,
                        json.dumps(node.features),
                        node.metadata.get("origin", "feedback"),
                        version,
                    ),
                )
                added_datasets += 1
            known_models = {r[0] for r in db.execute("SELECT model_id FROM models WHERE library = ?", (library,))}
            known_datasets = {r[0] for r in db.execute("SELECT dataset_id FROM datasets WHERE library = ?", (library,))}
            for i, rec in enumerate(interactions):
                if rec.model_id not in known_models:
                    raise NotFound(f"interaction {i}: model {rec.model_id!r} not found in library {library!r}")
                if rec.dataset_id not in known_datasets:
                    raise NotFound(f"interaction {i}: dataset {rec.dataset_id!r} not found in library {library!r}")
            db.executemany(
                "INSERT INTO interactions (library, model_id, dataset_id, score, train_seconds, "
                "inference_seconds, memory_bytes, provenance, row_json, created_unix, request_id, quarantine, "
                "graph_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        library,
                        rec.model_id,
                        rec.dataset_id,
                        rec.score,
                        rec.cost.train_seconds or None,
                        rec.cost.inference_seconds or None,
                        rec.cost.memory_bytes or None,
                        rec.provenance,
                        json.dumps(interaction_row(rec)),
                        now,
                        rec.request_id,
                        rec.quarantine,
                        version,
                    )
                    for rec in interactions
                ),
            )
            if request_id:
                db.execute("INSERT INTO requests VALUES (?, ?, 'applied', ?)", (library, request_id, len(interactions)))
        self._carry_counts(library, version, (0, added_datasets, len(interactions)))
        return version, len(interactions)

    def _carry_counts(self, library: str, version: int, added: tuple[int, int, int]) -> None:
        """After a committed write that made `version` from the one before by adding rows only: the counts kept for
        that one plus what it added, so the next ListLibraries after a feedback needs no COUNT(*) scans either. A
        write committed in between leaves the kept counts at another version: then nothing is carried."""
        with self._lock:
            kept = self._counts.get(library)
            if kept is not None and kept[0] == version - 1:
                self._counts[library] = (version, tuple(c + a for c, a in zip(kept[1], added, strict=True)))

    def request_records(self, library: str, request_id: str) -> tuple[list[InteractionRecord], str]:
        with self._read() as db:
            self._require_library(db, library)
            state = db.execute(
                "SELECT state FROM requests WHERE library = ? AND request_id = ?", (library, request_id)
            ).fetchone()
            rows = db.execute(
                f"SELECT row_json FROM interactions WHERE library = ? AND {_BY_REQUEST} ORDER BY id",
                (library, request_id),
            ).fetchall()
        return [interaction_record(json.loads(r[0])) for r in rows], state[0] if state else ""

    def _request_state(self, db: sqlite3.Connection, library: str, request_id: str) -> str:
        self._require_library(db, library)
        row = db.execute(
            "SELECT state FROM requests WHERE library = ? AND request_id = ?", (library, request_id)
        ).fetchone()
        if row is None:
            raise NotFound(f"library {library!r} has no records of request {request_id!r}")
        return str(row[0])

    @staticmethod
    def _audit(db: sqlite3.Connection, entry: AuditEntry) -> None:
        db.execute(
            "INSERT INTO audit (library, unix, principal, action, request_id, records, note) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (entry.library, entry.unix, entry.principal, entry.action, entry.request_id, entry.records, entry.note),
        )

    def retract(self, library: str, request_id: str, principal: str, note: str = "") -> tuple[int, int]:
        with self._write() as db:
            if self._request_state(db, library, request_id) == "retracted":
                return self._library(db, library).graph_version, 0
            removed = db.execute(
                f"DELETE FROM interactions WHERE library = ? AND {_BY_REQUEST}", (library, request_id)
            ).rowcount
            db.execute(
                "UPDATE requests SET state = 'retracted' WHERE library = ? AND request_id = ?", (library, request_id)
            )
            self._audit(db, AuditEntry(time.time(), principal, "retract", library, request_id, removed, note))
            return self._bump(db, library), removed

    def confirm(self, library: str, request_id: str, principal: str, note: str = "") -> tuple[int, int]:
        with self._write() as db:
            if self._request_state(db, library, request_id) == "retracted":
                raise NotFound(f"request {request_id!r} of library {library!r} was retracted")
            held = db.execute(
                f"SELECT id, row_json FROM interactions WHERE library = ? AND {_BY_REQUEST} AND quarantine != ''",
                (library, request_id),
            ).fetchall()
            if not held:
                return self._library(db, library).graph_version, 0
            for rowid, row_json in held:
                row = json.loads(row_json)
                row.pop("quarantine", None)
                db.execute(
                    "UPDATE interactions SET quarantine = '', row_json = ? WHERE id = ?", (json.dumps(row), rowid)
                )
            db.execute(
                "UPDATE requests SET state = 'confirmed' WHERE library = ? AND request_id = ?", (library, request_id)
            )
            self._audit(db, AuditEntry(time.time(), principal, "confirm", library, request_id, len(held), note))
            return self._bump(db, library), len(held)

    def audit_log(self, library: str, limit: int = 100) -> list[AuditEntry]:
        with self._read() as db:
            rows = db.execute(
                "SELECT unix, principal, action, library, request_id, records, note FROM audit "
                "WHERE library = ? ORDER BY id DESC LIMIT ?",
                (library, limit),
            ).fetchall()
        return [AuditEntry(*row) for row in rows]

    # -- graph --------------------------------------------------------------------------------------

    def snapshot(self, library: str) -> Snapshot:
        with self._read() as db:
            info = self._library(db, library)
            models = self._models(db, library)
            datasets = self._datasets(db, "d.library = ?", (library,))
            interactions = self._interactions(db, library, models, datasets)
            similarities = [
                SimilarityRecord(a, b, dist)
                for a, b, dist in db.execute(
                    "SELECT dataset_a, dataset_b, distance FROM similarities WHERE library = ?", (library,)
                )
            ]
        return Snapshot(info, models, datasets, interactions, similarities)

    def delta(self, library: str, since_version: int) -> GraphDelta | None:
        with self._read() as db:
            row = db.execute(
                "SELECT v.version, v.base FROM libraries l JOIN graph_versions v ON v.library = l.name "
                "WHERE l.name = ?",
                (library,),
            ).fetchone()
            if row is None:
                self._require_library(db, library)  # NotFound for an unknown library
                return None
            version, base = int(row[0]), int(row[1])
            if not base <= since_version <= version:
                return None
            changed = db.execute(
                "SELECT DISTINCT model_id, dataset_id FROM interactions "
                "WHERE library = ? AND graph_version > ? AND quarantine = ''",
                (library, since_version),
            ).fetchall()
            added = db.execute(
                "SELECT dataset_id FROM datasets WHERE library = ? AND graph_version > ?", (library, since_version)
            ).fetchall()
            model_ids = sorted({m for m, _ in changed})
            dataset_ids = sorted({d for _, d in changed} | {d for (d,) in added})
            models = self._models(db, library, among=model_ids)
            among = "d.library = ? AND d.dataset_id IN (SELECT value FROM json_each(?))"
            datasets = self._datasets(db, among, (library, json.dumps(dataset_ids)))
            interactions = self._interactions(db, library, models, datasets, since_version=since_version)
            info = self._library(db, library)
        return GraphDelta(since_version, info, models, datasets, interactions)

    @staticmethod
    def _interactions(
        db: sqlite3.Connection,
        library: str,
        models: list[ModelNode],
        datasets: list[DatasetNode],
        *,
        since_version: int | None = None,
    ) -> InteractionColumns:
        """The learned records (those added after `since_version`, when given) as columns over the node order:
        SQLite gives numbers for the numeric cells (an empty cost is 0, provenance its code), each column becomes
        one numpy array, and no record object is made."""
        model_ids, dataset_ids = [m.model_id for m in models], [d.dataset_id for d in datasets]
        codes = " ".join(f"WHEN '{p}' THEN {k}" for k, p in enumerate(PROVENANCES))
        cursor = db.execute(
            "SELECT model_id, dataset_id, score, COALESCE(train_seconds, 0), COALESCE(inference_seconds, 0), "
            f"COALESCE(memory_bytes, 0), CASE provenance {codes} ELSE -1 END, request_id FROM interactions "
            f"WHERE library = ? AND quarantine = ''{'' if since_version is None else ' AND graph_version > ?'} "
            "ORDER BY id",
            (library,) if since_version is None else (library, since_version),
        )
        models_at, datasets_at = pd.Index(model_ids), pd.Index(dataset_ids)
        parts: list[InteractionColumns] = []
        # In chunks: the rows of a whole 10M-record library as tuples would take ~4 GB at once.
        while rows := cursor.fetchmany(_SNAPSHOT_CHUNK):
            m, d, score, train, infer, memory, provenance, request_ids = zip(*rows, strict=True)
            m_idx = models_at.get_indexer(np.array(m, dtype=object))
            d_idx = datasets_at.get_indexer(np.array(d, dtype=object))
            codes_found = np.array(provenance, dtype=np.int8)
            if (m_idx < 0).any() or (d_idx < 0).any() or (codes_found < 0).any():
                raise DataLoss(f"library {library!r}: a stored record names no node of the library or no provenance")
            parts.append(
                InteractionColumns(
                    model_ids,
                    dataset_ids,
                    m_idx,
                    d_idx,
                    np.array(score, dtype=np.float64),
                    np.array(train, dtype=np.float64),
                    np.array(infer, dtype=np.float64),
                    np.array(memory, dtype=np.float64),
                    codes_found,
                    {k: r for k, r in enumerate(request_ids) if r},
                )
            )
        return InteractionColumns.concat(parts) if parts else InteractionColumns.empty(model_ids, dataset_ids)

    def graph_version(self, library: str) -> int:
        return self.graph_head(library)[0]

    def graph_head(self, library: str) -> tuple[int, str, float]:
        # Without `_library`'s three COUNT(*) scans (~5 ms on TabZoo's 52k records, more with every record):
        # the recommender asks this on every Recommend and SelectProbes.
        with self._read() as db:
            row = db.execute(
                "SELECT l.bundle_blob_id, l.imported_unix, v.version FROM libraries l "
                "LEFT JOIN graph_versions v ON v.library = l.name WHERE l.name = ?",
                (library,),
            ).fetchone()
        if row is None:
            raise NotFound(f"library {library!r} not found")
        return (int(row[2]) if row[2] is not None else 0), row[0], row[1]

    # -- query log ----------------------------------------------------------------------------------

    def log_query(self, record: QueryRecord) -> None:
        with self._write() as db:
            try:
                db.execute(
                    "INSERT INTO queries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.query_id,
                        record.library,
                        record.fingerprint,
                        record.filename,
                        record.feature_set,
                        json.dumps(record.features),
                        record.modality,
                        json.dumps(record.answer_model_ids),
                        record.graph_version,
                        record.logged_unix or time.time(),
                    ),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"query {record.query_id!r} is already logged") from None

    def get_query(self, query_id: str) -> QueryRecord:
        with self._read() as db:
            row = db.execute("SELECT * FROM queries WHERE query_id = ?", (query_id,)).fetchone()
        if row is None:
            raise NotFound(f"query {query_id!r} not found")
        return _query_record(row)

    def list_queries(self, library: str = "", limit: int = 100) -> list[QueryRecord]:
        if limit < 1:
            raise InvalidArgument(f"limit must be at least 1, not {limit}")
        where, args = ("WHERE library = ?", (library, limit)) if library else ("", (limit,))
        with self._read() as db:
            rows = db.execute(
                f"SELECT * FROM queries {where} ORDER BY logged_unix DESC, query_id DESC LIMIT ?", args
            ).fetchall()
        return [_query_record(row) for row in rows]

    def purge_queries(self, older_than_unix: float | None = None) -> int:
        with self._write() as db:
            if older_than_unix is None:
                return db.execute("DELETE FROM queries").rowcount
            return db.execute("DELETE FROM queries WHERE logged_unix < ?", (older_than_unix,)).rowcount

    def check(self) -> None:
        try:
            self._db().execute("SELECT 1 FROM libraries LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise Unavailable(f"knowledge database {self.path} is unusable: {exc}") from None

    def close(self) -> None:
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()


def _query_record(row: tuple[Any, ...]) -> QueryRecord:
    qid, library, fp, filename, fset, features, modality, answer, version, logged = row
    return QueryRecord(
        qid,
        library,
        fp,
        filename,
        fset,
        json.loads(features),
        modality,
        json.loads(answer),
        version,
        logged,
    )
