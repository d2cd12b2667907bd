"""The production knowledge store: Redis, behind the same `KnowledgeStore` contract as the SQLite file.

The knowledge graph cannot be rebuilt from anywhere else, so every write is one atomic step and nothing is
ever read, then written, outside a transaction.

Key layout (NAME is a library name; everything of one library shares the hash tag `{lib:NAME}`, so the
layout works on Redis Cluster, where a transaction may only touch one slot; a `redis+cluster://` URL
connects to one, see docs/architecture.md, "Redis Cluster"):

    modsnet:{lib:NAME}:current            string, JSON: the live data version N, blob_id, imported_unix, the
                                          library.yaml content and every table's column order. Absent when
                                          the library does not exist (never imported, or deleted).
    modsnet:{lib:NAME}:graph_version      integer, INCR only, never deleted: versions only increase, even
                                          across delete and re-import.
    modsnet:{lib:NAME}:data_seq           integer, INCR only: allocates N for a new data version.
    modsnet:{lib:NAME}:vN:models          hash model_id -> row
    modsnet:{lib:NAME}:vN:datasets        hash dataset_id -> JSON {row, fingerprint, feature_set, features,
                                          origin}; feedback adds fields, nothing removes them
    modsnet:{lib:NAME}:vN:interactions    list of rows in import order, feedback appended (RPUSH)
    modsnet:{lib:NAME}:vN:similarities    list of rows (dataset_similarity.csv)
    modsnet:{lib:NAME}:vN:probes          list of rows (probes.csv)
    modsnet:{lib:NAME}:vN:features:STEM   list of rows (dataset_features/STEM.csv)
    modsnet:{lib:NAME}:vN:artifacts       hash artifact path -> storage blob id
    modsnet:{lib:NAME}:vN:fingerprints    sorted set, all scores 0, members "FINGERPRINT\\0DATASET_ID", so
                                          ZRANGEBYLEX finds a fingerprint's datasets in dataset_id order
    modsnet:{lib:NAME}:vN:stats           hash "STAT ID" -> number ("model.n m3", "train_seconds.sum m3",
                                          "train_seconds.n m3", ..., "dataset.n d7"): interaction counts and
                                          cost sums, kept by the same transactions as the interactions, so
                                          nodes get their counts and mean costs without a scan;
                                          quarantined records are not in it until confirmed, and
                                          "library.retracted" counts the records retracted from the list
    modsnet:{lib:NAME}:vN:added_datasets  list of the dataset ids feedback added to the version, in order
    modsnet:{lib:NAME}:vN:marks           hash GRAPH_VERSION -> "I D": the lengths of the interactions and
                                          added_datasets lists at each graph version of the data version,
                                          and "base" -> the last graph version that did more than append
                                          (the switch, a retraction, a confirmation): `delta` reads the
                                          lists' tails past a mark and reaches back to "base", no further;
                                          only the last MARKS_KEPT versions keep a mark
    modsnet:{lib:NAME}:vN:requests        hash request_id -> JSON {state, rows}: the records a request stored
                                          (state "applied", "confirmed" or "retracted"). The interactions
                                          list stays append-only: readers leave out a retracted request's
                                          rows and clear a confirmed one's quarantine as they read
    modsnet:{lib:NAME}:audit              list of JSON audit entries (retract, confirm), oldest first; it
                                          outlives data versions and the library
    modsnet:libraries                     set of every library name ever imported: a directory only, the
                                          truth is `current` (it cannot join a library's transaction on a
                                          cluster, so a name goes in before its first switch and never
                                          leaves; a name without `current` is skipped)
    modsnet:{queries}:q:ID                hash: one logged query
    modsnet:{queries}:by_time             sorted set query_id by logged_unix
    modsnet:{queries}:by_library:NAME     sorted set query_id by logged_unix, one library's queries
    channel modsnet:graph_versions        "NAME VERSION", published inside the transaction of every bump

A row is JSON of the bundle's string cells: an array in the table's column order when it has exactly the
table's columns (every parsed row; about 53 bytes of Redis memory per interaction), else the object itself
(rows added by feedback), so export gives back exactly the cells that were imported.

Atomicity. An import first writes data version N+1, `BATCH` rows per round trip. Nothing points at it, so
no reader sees it; each batch is one MULTI that also sets every staged key's TTL (`STAGING_TTL_S`), so a
crash mid-import leaves only keys that expire. Then one MULTI/EXEC under WATCH of `current` re-checks the
import's preconditions, points `current` at N+1, PERSISTs its keys, bumps `graph_version` and gives the
old version's keys a TTL of `RETIRED_GRACE_S`. Two imports of one library thus serialise on the switch:
the second sees the first's result and is refused (AlreadyExists), is a no-op (same blob) or replaces it
whole (replace). Feedback (add_interactions), delete and the query log are each one MULTI/EXEC under WATCH
of `current` and of whatever else a concurrent writer could change under them (the datasets hash when
adding datasets; the query index); models and datasets never leave a data version, so a check that one
exists stays true while `current` stays. A conflict retries with backoff and ends in Aborted. The client
never resends a command on its own (a lost reply may hide an applied write): a failed connection is
Unavailable, and the caller decides.

Readers. A read takes its data in one MULTI/EXEC that also GETs `current`: if `current` moved since the
reader looked, it reads again, so what it returns belongs to one graph version. Snapshot and export read
the version's hashes and the lengths of its lists in that MULTI, then the lists in chunks: lists are
append-only within a version, so the prefix up to the recorded length is the state at that version. A
replaced or deleted version stays readable for `RETIRED_GRACE_S` (a 1M-interaction snapshot takes about 20
s here); should it vanish mid-read anyway, a short chunk shows it and the read starts over.

Persistence. Production runs Redis with `appendonly yes` and `appendfsync always`: Redis then fsyncs the
AOF before it replies, so an acknowledged feedback survives a crash or a power cut (`everysec` may lose the
last second of acknowledged writes; this store's writes are few and batched, so the fsync costs little).
The store refuses to start against a Redis that persists nothing, unless told it is a test.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import redis
from redis import exceptions as redis_errors
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.retry import Retry
from redis.typing import EncodableT, FieldT

from modsnet.data.bundle import COST_COLUMNS, FEEDBACK_COLUMNS, Bundle, Table
from modsnet.data.graph import (
    AuditEntry,
    DatasetNode,
    GraphDelta,
    InteractionRecord,
    LibraryInfo,
    ModelNode,
    QueryRecord,
    Snapshot,
    check_interaction,
)
from modsnet.data.graph_build import (
    GraphTally,
    ModelTally,
    dataset_metadata,
    dataset_node,
    dataset_row,
    feature_set,
    interaction_columns,
    interaction_record,
    interaction_row,
    learned,
    merged_features,
    model_node,
    similarity_record,
)
from modsnet.runtime.errors import (
    Aborted,
    AlreadyExists,
    ConfigError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)

from ..store import KnowledgeStore

log = logging.getLogger(__name__)

LIBRARIES = "modsnet:libraries"
CHANNEL = "modsnet:graph_versions"
BATCH = 10_000  # rows per round trip, when staging an import
# A whole list (a snapshot's interactions) is read in slices this long, one per round trip: Redis serves one
# client's pipeline before anyone else's, and ten 10,000-item LRANGEs in one pipeline held it 50-200 ms on a
# loaded machine (slowlog: 5-24 ms each), while every feedback's and search's commands waited behind them.
READ_SLICE = 2_000
STAGING_TTL_S = 900  # a staged version not switched in by then was abandoned (renewed every batch)
RETIRED_GRACE_S = 300  # a replaced or deleted version stays readable this long for readers still on it
_ATTEMPTS = 30  # optimistic transactions and reads before Aborted
_BACKOFF_S = 0.001
_BACKOFF_CAP_S = 0.05
_QUERIES = "modsnet:{queries}"
# URL schemes of a Redis Cluster, and the scheme of one node's URL that the cluster client takes.
_CLUSTER_SCHEMES = {"redis+cluster": "redis://", "rediss+cluster": "rediss://"}
_BY_TIME = f"{_QUERIES}:by_time"
_PURGE_BATCH = 1_000

# INCR and announce in one step, so the message carries the version the transaction made (inside MULTI no
# reply can feed a later command). EVAL, not EVALSHA: a NOSCRIPT error inside EXEC would not undo the rest.
_BUMP = "local v = redis.call('INCR', KEYS[1]) redis.call('PUBLISH', ARGV[1], ARGV[2] .. ' ' .. v) return v"
# After a bump, in the same MULTI: mark the new graph version with the lengths of the version's append-only lists
# (KEYS: graph_version, marks, interactions, added_datasets); ARGV[1] "1" also makes it the base (not only appends),
# and so does the first mark of a data version imported before marks were kept (nothing earlier can be placed).
# Only the last ARGV[2] versions keep their mark (the one that many back is dropped as each is added), so steady
# feedback does not grow the hash for good; a reader further behind than that gets the whole graph.
_MARK = (
    "local v = redis.call('GET', KEYS[1]) "
    "redis.call('HSET', KEYS[2], v, redis.call('LLEN', KEYS[3]) .. ' ' .. redis.call('LLEN', KEYS[4])) "
    "if ARGV[1] == '1' or redis.call('HEXISTS', KEYS[2], 'base') == 0 then redis.call('HSET', KEYS[2], 'base', v) end "
    "redis.call('HDEL', KEYS[2], tostring(tonumber(v) - tonumber(ARGV[2]))) "
    "return v"
)
MARKS_KEPT = 10_000  # graph versions a delta reaches back (~30 bytes each per library)

T = TypeVar("T")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _redacted(url: str) -> str:
    """The URL without its password, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


class _Codec:
    """One table's rows as compact JSON values (see the module docstring)."""

    def __init__(self, columns: list[str]):
        self.columns = columns
        self._names = frozenset(columns)

    def pack(self, row: dict[str, str]) -> list[str] | dict[str, str]:
        if len(row) == len(self.columns) and row.keys() == self._names:
            return [row[c] for c in self.columns]
        return row

    def unpack(self, value: list[str] | dict[str, str]) -> dict[str, str]:
        return dict(zip(self.columns, value, strict=True)) if isinstance(value, list) else value

    def dumps(self, row: dict[str, str]) -> str:
        return _dumps(self.pack(row))

    def loads(self, text: str) -> dict[str, str]:
        return self.unpack(json.loads(text))


@dataclass(frozen=True)
class _VersionKeys:
    """The keys of one data version of a library."""

    models: str
    datasets: str
    interactions: str
    similarities: str
    probes: str
    artifacts: str
    fingerprints: str
    stats: str
    requests: str
    features: dict[str, str]  # feature table stem -> key
    added_datasets: str
    marks: str

    @classmethod
    def of(cls, prefix: str, stems: Iterable[str]) -> _VersionKeys:
        def key(part: str) -> str:
            return f"{prefix}:{part}"

        return cls(
            key("models"),
            key("datasets"),
            key("interactions"),
            key("similarities"),
            key("probes"),
            key("artifacts"),
            key("fingerprints"),
            key("stats"),
            key("requests"),
            {stem: key(f"features:{stem}") for stem in sorted(stems)},
            key("added_datasets"),
            key("marks"),
        )

    def every(self) -> list[str]:
        fixed = (self.models, self.datasets, self.interactions, self.similarities, self.probes, self.artifacts)
        return [*fixed, self.fingerprints, self.stats, self.requests, *self.features.values(), *self.history]

    @property
    def history(self) -> tuple[str, str]:
        """The keys only writes after the import make (`delta`'s): never staged."""
        return self.added_datasets, self.marks


@dataclass(frozen=True)
class _LibraryKeys:
    name: str

    @property
    def prefix(self) -> str:
        return f"modsnet:{{lib:{self.name}}}"

    @property
    def current(self) -> str:
        return f"{self.prefix}:current"

    @property
    def graph_version(self) -> str:
        return f"{self.prefix}:graph_version"

    @property
    def data_seq(self) -> str:
        return f"{self.prefix}:data_seq"

    @property
    def audit(self) -> str:
        return f"{self.prefix}:audit"

    def version(self, live: _Live) -> _VersionKeys:
        return _VersionKeys.of(f"{self.prefix}:v{live.data}", live.columns["features"])


@dataclass(frozen=True)
class _Live:
    """The parsed `current` value: which data version is live, and the library's own description."""

    raw: str
    data: int
    blob_id: str
    imported_unix: float
    meta: dict[str, Any]
    columns: dict[str, Any]

    @classmethod
    def parse(cls, raw: str | None) -> _Live | None:
        if raw is None:
            return None
        value = json.loads(raw)
        return cls(raw, value["data"], value["blob_id"], value["imported_unix"], value["meta"], value["columns"])

    @classmethod
    def of(cls, data: int, blob_id: str, imported_unix: float, bundle: Bundle) -> _Live:
        columns = {
            "models.csv": bundle.models.columns,
            "datasets.csv": bundle.datasets.columns,
            "interactions.csv": bundle.interactions.columns,
            "dataset_similarity.csv": bundle.similarity.columns if bundle.similarity else None,
            "probes.csv": bundle.probes.columns if bundle.probes else None,
            "features": {stem: t.columns for stem, t in bundle.features.items()},
        }
        value = {
            "data": data,
            "blob_id": blob_id,
            "imported_unix": imported_unix,
            "meta": bundle.meta,
            "columns": columns,
        }
        return cls(_dumps(value), data, blob_id, imported_unix, bundle.meta, columns)

    def codec(self, table: str) -> _Codec:
        return _Codec(self.columns[table])

    def info(self, name: str, version: int, models: int, datasets: int, interactions: int) -> LibraryInfo:
        return LibraryInfo(
            name=name,
            meta=self.meta,
            models=models,
            datasets=datasets,
            interactions=interactions,
            graph_version=version,
            bundle_blob_id=self.blob_id,
            imported_unix=self.imported_unix,
        )


class _Vanished(Exception):
    """A version's list came back shorter than it was: the version was retired and expired mid-read."""


# A model's tally (`ModelTally`): its interaction count, then the sum and the count of each cost column.
_MODEL_STATS = ("model.n", *(f"{c}.{part}" for c in COST_COLUMNS for part in ("sum", "n")))


def _stat(stat: str, node_id: str) -> str:
    # The stat name has no space, so the first space splits the field unambiguously.
    return f"{stat} {node_id}"


def _model_stats(tally: ModelTally) -> list[float]:
    """The tally in _MODEL_STATS order."""
    pairs = zip(tally.cost_sums, tally.cost_counts, strict=True)
    return [tally.interactions, *(v for pair in pairs for v in pair)]


def _stats_fields(tally: GraphTally) -> dict[str, float]:
    """As `stats` fields: counts stay int (HINCRBY), sums float (HINCRBYFLOAT); zeros are left out."""
    fields: dict[str, float] = {_stat("dataset.n", d): n for d, n in tally.datasets.items()}
    for model_id, counted in tally.models.items():
        values = _model_stats(counted)
        fields.update((_stat(name, model_id), value) for name, value in zip(_MODEL_STATS, values, strict=True) if value)
    return fields


def _tally_of(stats: Mapping[str, str | None], model_id: str) -> ModelTally:
    """A model's tally from `stats` fields; absent ones are zero."""
    values = [float(stats.get(_stat(name, model_id)) or 0) for name in _MODEL_STATS]
    return ModelTally(int(values[0]), values[1::2], [int(n) for n in values[2::2]])


_RETRACTED = "library.retracted"  # stats field: records retracted, still in the append-only list


def _requests_of(rows: Iterable[dict[str, str]]) -> dict[str, str]:
    """The `requests` hash fields for rows that carry a request id: each request applied, with its rows."""
    grouped: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        if row.get("request_id"):
            grouped.setdefault(row["request_id"], []).append(row)
    return {rid: _dumps({"state": "applied", "rows": found}) for rid, found in grouped.items()}


def _as_read(rows: Iterable[dict[str, str]], requests: Mapping[str, str]) -> Iterator[dict[str, str]]:
    """The rows as the graph has them now: a retracted request's left out, a confirmed one's quarantine cleared."""
    states = {rid: json.loads(value)["state"] for rid, value in requests.items()}
    for row in rows:
        state = states.get(row.get("request_id", ""), "")
        if state == "retracted":
            continue
        if state == "confirmed" and row.get("quarantine"):
            row = {k: v for k, v in row.items() if k != "quarantine"}
        yield row


_CELLS = ("model_id", "dataset_id", "score", *COST_COLUMNS, "provenance", "request_id", "quarantine")


def _interaction_cells(
    columns: list[str], texts: list[str], requests: Mapping[str, str]
) -> tuple[dict[str, list[Any]], int]:
    """The learned records of the interactions list, column by column, and how many records it holds.

    What `_as_read` and `learned` do row by row, done by column: one JSON parse of the whole list (a
    million rows in about a second, against a dozen as dicts), a retracted request's rows left out, a
    confirmed one's quarantine cleared, the quarantined left out of the learned cells.
    """
    parsed: list[Any] = json.loads("[" + ",".join(texts) + "]") if texts else []
    cells: dict[str, list[Any]] = {}
    for name in _CELLS:
        if name in columns:
            at = columns.index(name)
            cells[name] = [r[at] if type(r) is list else r.get(name, "") for r in parsed]
        else:
            cells[name] = [r.get(name, "") if type(r) is dict else "" for r in parsed]
    states = {rid: json.loads(value)["state"] for rid, value in requests.items()}
    retracted = 0
    keep = [not q for q in cells["quarantine"]]
    if states:
        for k, rid in enumerate(cells["request_id"]):
            state = states.get(rid, "") if rid else ""
            if state == "retracted":
                keep[k] = False
                retracted += 1
            elif state == "confirmed":
                keep[k] = True
    if not all(keep):
        cells = {name: [v for v, kept in zip(values, keep, strict=True) if kept] for name, values in cells.items()}
    cells["quarantine"] = [""] * len(cells["model_id"])  # learned: none left, or cleared by a confirmation
    return cells, len(parsed) - retracted


def _queue_tally(pipe: Pipeline, key: str, rows: Iterable[dict[str, str]], sign: int) -> None:
    """Add (sign 1) or take away (sign -1) the rows' counts and cost sums in the `stats` hash."""
    tally = GraphTally()
    for row in rows:
        tally.add(row)
    for field, amount in _stats_fields(tally).items():
        if isinstance(amount, int):
            pipe.hincrby(key, field, sign * amount)
        else:
            pipe.hincrbyfloat(key, field, sign * amount)


def _node_reads(
    model_ids: list[str], dataset_ids: list[str], fields: list[str]
) -> Callable[[Pipeline, _VersionKeys], None]:
    """Reads of these models' and datasets' rows and of these stats fields (HMGET needs a field: "" reads nothing)."""

    def reads(pipe: Pipeline, v: _VersionKeys) -> None:
        pipe.hmget(v.models, model_ids or [""])
        pipe.hmget(v.datasets, dataset_ids or [""])
        pipe.hmget(v.stats, fields or [""])

    return reads


def _model_node(library: str, row: dict[str, str], tally: ModelTally) -> ModelNode:
    return model_node(library, row, tally.cost, tally.interactions)


def _taken(name: str) -> AlreadyExists:
    return AlreadyExists(
        f"library {name!r} already exists (a different bundle); import with replace to make this bundle its new version"
    )


def _dataset_node(library: str, dataset_id: str, record: str, codec: _Codec, interactions: int) -> DatasetNode:
    value = json.loads(record)
    row = codec.unpack(value["row"])
    return DatasetNode(
        library=library,
        dataset_id=dataset_id,
        metadata=dataset_metadata(row),
        features=value["features"],
        feature_set=value["feature_set"],
        fingerprint=value["fingerprint"],
        interactions=interactions,
    )


def _current(client: redis.Redis, keys: _LibraryKeys) -> _Live | None:
    return _Live.parse(cast("str | None", client.get(keys.current)))


def _table(file: str, columns: list[str], texts: list[str]) -> Table:
    return Table(file, list(columns), list(map(_Codec(columns).loads, texts)))


def _query_key(query_id: str) -> str:
    return f"{_QUERIES}:q:{query_id}"


def _library_queries(library: str) -> str:
    return f"{_QUERIES}:by_library:{library}"


class _Stager:
    """Writes a data version that nothing points at yet, `BATCH` rows per round trip, every key expiring."""

    def __init__(self, client: redis.Redis):
        self._client = client
        # Each batch is one MULTI, so its rows never reach the AOF without their TTL: a crash between the two
        # would leave rows that never expire.
        self._pipe = client.pipeline(transaction=True)
        self._queued = 0
        self.keys: set[str] = set()

    def push(self, key: str, values: Iterable[str]) -> None:
        for chunk in _chunks(values, BATCH):
            self._pipe.rpush(key, *chunk)
            self._queued_rows(key, len(chunk))

    def put(self, key: str, items: Iterable[tuple[str, str]]) -> None:
        for chunk in _chunks(items, BATCH):
            self._pipe.hset(key, mapping=dict(chunk))
            self._queued_rows(key, len(chunk))

    def index(self, key: str, members: Iterable[str]) -> None:
        for chunk in _chunks(members, BATCH):
            self._pipe.zadd(key, dict.fromkeys(chunk, 0))
            self._queued_rows(key, len(chunk))

    def _queued_rows(self, key: str, rows: int) -> None:
        self.keys.add(key)
        self._queued += rows
        if self._queued >= BATCH:
            self.flush()

    def flush(self) -> None:
        for key in self.keys:
            self._pipe.expire(key, STAGING_TTL_S)
        self._pipe.execute()
        self._queued = 0

    def discard(self) -> None:
        """Best effort: what is left expires anyway, and the caller's own error is the one worth raising."""
        self._pipe.reset()
        if self.keys:
            with suppress(redis.RedisError):
                self._client.unlink(*self.keys)


class RedisKnowledgeStore(KnowledgeStore):
    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        allow_no_persistence: bool = False,
        socket_timeout: float = 10.0,
    ):
        """Connect and check persistence; `password` is used when the URL carries none."""
        self.url = _redacted(url)
        scheme, cluster = url.split("://", 1)[0].lower(), False
        if scheme in _CLUSTER_SCHEMES:  # redis+cluster://host:port: any node, the client finds the others
            url, cluster = _CLUSTER_SCHEMES[scheme] + url.split("://", 1)[1], True
        options: dict[str, Any] = {
            "password": password,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
            "decode_responses": True,
            # No silent resend: a write whose reply was lost may have been applied, and resending a
            # feedback would record it twice. The caller sees Unavailable and decides. (A cluster's MOVED
            # and ASK redirections are still followed: the node that refused did not apply the command.)
            "retry": Retry(NoBackoff(), 0),
        }
        try:
            if cluster:
                self._redis: redis.Redis = cast("redis.Redis", redis.RedisCluster.from_url(url, **options))
            else:
                self._redis = redis.Redis.from_url(url, **options)
        except ValueError as exc:
            raise ConfigError(f"redis URL {self.url!r} is not valid: {exc}") from None
        except (redis_errors.RedisClusterException, redis_errors.ConnectionError) as exc:
            raise Unavailable(f"knowledge store redis cluster at {self.url} is unavailable: {exc}") from None
        self.cluster = cluster
        # Per library, the `current` value last read: it spares a round trip before each read and write (the
        # version keys are named after it), and it is never trusted: see `_live`.
        self._hints: dict[str, _Live] = {}
        with self._guard():
            self._check_persistence(allow_no_persistence)

    # -- plumbing -----------------------------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Redis failures as domain errors, naming the server but never its password."""
        try:
            yield
        except (
            redis_errors.ConnectionError,
            redis_errors.TimeoutError,
            redis_errors.ReadOnlyError,
            redis_errors.ClusterDownError,
            redis_errors.SlotNotCoveredError,
            redis_errors.MasterDownError,
        ) as exc:
            raise Unavailable(f"knowledge store redis at {self.url} is unavailable: {exc}") from None
        except redis_errors.OutOfMemoryError:
            raise ResourceExhausted(f"knowledge store redis at {self.url} is out of memory (maxmemory)") from None

    def _check_persistence(self, allow_no_persistence: bool) -> None:
        try:
            aof = self._redis.config_get("appendonly").get("appendonly") == "yes"
            rdb = bool(str(self._redis.config_get("save").get("save") or "").strip())
            settings = "appendonly no, save ''"
        except redis_errors.ResponseError:  # CONFIG renamed away or not permitted (managed Redis): INFO tells less
            info = self._redis.info("persistence")
            aof = info.get("aof_enabled") == 1
            rdb = info.get("rdb_saves", 0) > 0
            settings = "INFO persistence shows no AOF and no RDB save since start"
        if aof or allow_no_persistence:
            return
        if rdb:
            log.warning(
                "redis at %s snapshots (RDB) without AOF: writes since the last snapshot die in a crash", self.url
            )
            return
        raise ConfigError(
            f"redis at {self.url} persists nothing ({settings}), and the knowledge graph cannot be rebuilt "
            "from anywhere else: run it with `--appendonly yes --appendfsync always` (or CONFIG SET appendonly "
            "yes, then CONFIG REWRITE); only a test may pass allow_no_persistence"
        )

    def _transaction(self, body: Callable[[Pipeline], T], what: str) -> T:
        """Run `body` (WATCH, reads, MULTI, writes, EXEC) until no watched key changed under it."""
        with self._guard():
            for attempt in range(_ATTEMPTS):
                with self._redis.pipeline(transaction=True) as pipe:  # a cluster's default is no MULTI
                    try:
                        return body(pipe)
                    except redis_errors.WatchError:
                        time.sleep(random.uniform(0, min(_BACKOFF_CAP_S, _BACKOFF_S * 2**attempt)))
        raise Aborted(f"{what}: the data changed concurrently {_ATTEMPTS} times in a row; retry")

    def _live(self, keys: _LibraryKeys) -> _Live:
        """The library's live version: the one this process last saw (a hint: every reader checks `current` in
        the same MULTI as its reads, and every writer watches it), else read from Redis."""
        live = self._hints.get(keys.name)
        if live is None:
            live = _current(self._redis, keys)
            if live is None:
                raise NotFound(f"library {keys.name!r} not found")
            self._hints[keys.name] = live
        return live

    def _seen(self, name: str, raw: str | None) -> _Live | None:
        """`current` as just read: the hint when unchanged (no parse), else parsed and kept as the new hint."""
        hint = self._hints.get(name)
        if hint is not None and hint.raw == raw:
            return hint
        live = _Live.parse(raw)
        if live is None:
            self._hints.pop(name, None)
        else:
            self._hints[name] = live
        return live

    def _read(
        self, name: str, reads: Callable[[Pipeline, _VersionKeys], None], live: _Live | None = None
    ) -> tuple[_Live, int, list[Any]]:
        """Queue `reads` against the live version in one MULTI that also checks that `current` stayed.

        Returns the version they read (starting from the hint `live`), the graph version then, and the replies.
        """
        keys = _LibraryKeys(name)
        with self._guard():
            live = live or self._live(keys)
            for _ in range(_ATTEMPTS):
                pipe = self._redis.pipeline(transaction=True)
                pipe.get(keys.current)
                pipe.get(keys.graph_version)
                reads(pipe, keys.version(live))
                raw, version, *replies = pipe.execute()
                if raw == live.raw:
                    return live, int(version), replies
                moved = self._seen(name, raw)
                if moved is None:
                    raise NotFound(f"library {name!r} not found")
                live = moved
        raise Aborted(f"library {name!r} was replaced {_ATTEMPTS} times while being read; retry")

    def _range(self, key: str, length: int) -> list[str]:
        """The first `length` items of a list: `READ_SLICE` per LRANGE, one LRANGE per round trip (other clients'
        commands are served between two)."""
        items: list[str] = []
        for start in range(0, length, READ_SLICE):
            items.extend(cast("list[str]", self._redis.lrange(key, start, min(start + READ_SLICE, length) - 1)))
        if len(items) != length:
            raise _Vanished(key)
        return items

    def _read_version(
        self,
        name: str,
        hashes: Callable[[_VersionKeys], list[str]],
        lists: Callable[[_VersionKeys], list[str]],
    ) -> tuple[_Live, int, list[dict[str, str]], list[list[str]]]:
        """Whole hashes, and lists up to their length then, at one graph version (see "Readers" above)."""

        def reads(pipe: Pipeline, version: _VersionKeys) -> None:
            for key in hashes(version):
                pipe.hgetall(key)
            for key in lists(version):
                pipe.llen(key)

        for _ in range(_ATTEMPTS):
            live, graph_version, replies = self._read(name, reads)
            version = _LibraryKeys(name).version(live)
            whole = len(hashes(version))
            try:
                with self._guard():
                    items = [self._range(k, n) for k, n in zip(lists(version), replies[whole:], strict=True)]
            except _Vanished:
                continue
            return live, graph_version, replies[:whole], items
        raise Aborted(f"library {name!r} was replaced {_ATTEMPTS} times while being read; retry")

    def _names(self) -> list[str]:
        """Every library name ever imported, in order (a deleted one has no `current`)."""
        return sorted(cast("set[str]", self._redis.smembers(LIBRARIES)))

    @staticmethod
    def _retire(pipe: Pipeline, keys: _LibraryKeys, old: _Live) -> None:
        for key in keys.version(old).every():
            pipe.expire(key, RETIRED_GRACE_S)

    @staticmethod
    def _bump(
        pipe: Pipeline, keys: _LibraryKeys, version: _VersionKeys | None = None, *, added_only: bool = False
    ) -> None:
        """Queue the next graph version; with the data `version` it is of, also its mark (see "marks" above),
        the base unless the write `added_only` records and dataset nodes. The last reply is the version."""
        # As a raw command: a cluster pipeline has no eval(); EVAL with its keys routes to the library's slot.
        pipe.execute_command("EVAL", _BUMP, 1, keys.graph_version, CHANNEL, keys.name)
        if version is not None:
            lists = (version.interactions, version.added_datasets)
            base = "0" if added_only else "1"
            pipe.execute_command("EVAL", _MARK, 4, keys.graph_version, version.marks, *lists, base, MARKS_KEPT)

    # -- libraries ----------------------------------------------------------------------------------

    def import_bundle(
        self, bundle: Bundle, *, blob_id: str, replace: bool, artifacts: dict[str, str], request_id: str = ""
    ) -> tuple[LibraryInfo, bool]:
        name = bundle.name
        keys = _LibraryKeys(name)
        with self._guard():
            old = _current(self._redis, keys)
            if old is not None and old.blob_id == blob_id:
                return self.get_library(name), True
            if old is not None and not replace:
                raise _taken(name)  # checked again at the switch; checking now spares the staging
            new = _Live.of(int(self._redis.incr(keys.data_seq)), blob_id, time.time(), bundle)
            stager = _Stager(self._redis)
            try:
                self._stage(stager, keys.version(new), bundle, new, artifacts, request_id)
                self._redis.sadd(LIBRARIES, name)  # listed before it exists, so never missing from the list
                info = self._switch(keys, new, sorted(stager.keys), replace, bundle)
            except BaseException:
                stager.discard()
                raise
            if info is None:  # a concurrent import of the same blob won
                stager.discard()
                return self.get_library(name), True
            return info, False

    @staticmethod
    def _stage(
        stager: _Stager, version: _VersionKeys, bundle: Bundle, new: _Live, artifacts: dict[str, str], request_id: str
    ) -> None:
        codec = new.codec("models.csv")
        stager.put(version.models, ((r["model_id"], codec.dumps(r)) for r in bundle.models.rows))
        features, stems = merged_features(bundle.features), feature_set(bundle.features)
        codec = new.codec("datasets.csv")

        def record(row: dict[str, str]) -> str:
            node = dataset_node(bundle.name, row, features, stems)
            return _dumps(
                {
                    "row": codec.pack(row),
                    "fingerprint": node.fingerprint,
                    "feature_set": node.feature_set,
                    "features": node.features,
                    "origin": "imported",
                }
            )

        stager.put(version.datasets, ((r["dataset_id"], record(r)) for r in bundle.datasets.rows))
        stager.index(
            version.fingerprints,
            (f"{r['fingerprint']}\0{r['dataset_id']}" for r in bundle.datasets.rows if r.get("fingerprint")),
        )
        for stem, table in bundle.features.items():
            stager.push(version.features[stem], map(_Codec(table.columns).dumps, table.rows))
        # One pass over the interactions (they stream from the bundle's file, see `CsvRows`): rows out in
        # batches, the tally and the requests gathered on the way.
        tally = GraphTally()
        requested: list[dict[str, str]] = []
        interaction_codec = new.codec("interactions.csv")

        def interactions() -> Iterator[str]:
            for row in bundle.interactions.rows:
                if learned(row):
                    tally.add(row)
                if row.get("request_id"):
                    requested.append(row)
                yield interaction_codec.dumps(row)

        stager.push(version.interactions, interactions())
        if bundle.similarity is not None:
            stager.push(version.similarities, map(new.codec("dataset_similarity.csv").dumps, bundle.similarity.rows))
        if bundle.probes is not None:
            stager.push(version.probes, map(new.codec("probes.csv").dumps, bundle.probes.rows))
        stager.put(version.artifacts, sorted(artifacts.items()))
        stager.put(version.stats, ((f, repr(v)) for f, v in _stats_fields(tally).items()))
        requests = _requests_of(requested)
        if request_id:
            requests[f"import:{request_id}"] = _dumps({"state": "applied", "rows": []})
        stager.put(version.requests, requests.items())
        stager.flush()

    def _switch(
        self, keys: _LibraryKeys, new: _Live, staged: list[str], replace: bool, bundle: Bundle
    ) -> LibraryInfo | None:
        """Point `current` at the staged version, atomically; None when the same blob got there first."""

        def body(pipe: Pipeline) -> LibraryInfo | None:
            pipe.watch(keys.current)
            old = _current(pipe, keys)
            if old is not None and old.blob_id == new.blob_id:
                return None
            if old is not None and not replace:
                raise _taken(keys.name)
            if staged and pipe.exists(*staged) != len(staged):
                raise Aborted(
                    f"library {keys.name!r}: the staged import expired before its switch "
                    f"(more than {STAGING_TTL_S} s between two batches); import again"
                )
            pipe.multi()
            pipe.set(keys.current, new.raw)
            for key in staged:
                pipe.persist(key)
            if old is not None:
                self._retire(pipe, keys, old)
            self._bump(pipe, keys, keys.version(new))
            version = int(pipe.execute()[-1])
            counts = (len(bundle.models.rows), len(bundle.datasets.rows), len(bundle.interactions.rows))
            return new.info(keys.name, version, *counts)

        return self._transaction(body, f"import of library {keys.name!r}")

    def export_bundle(self, name: str) -> tuple[Bundle, dict[str, str]]:
        live, _, (models, datasets, artifacts, requests), (interactions, similarities, probes, *features) = (
            self._read_version(
                name,
                lambda v: [v.models, v.datasets, v.artifacts, v.requests],
                lambda v: [v.interactions, v.similarities, v.probes, *v.features.values()],
            )
        )
        columns = live.columns
        model_codec, dataset_codec = live.codec("models.csv"), live.codec("datasets.csv")
        interaction_codec = live.codec("interactions.csv")
        interaction_table = Table(
            "interactions.csv",
            list(columns["interactions.csv"]),
            list(_as_read(map(interaction_codec.loads, interactions), requests)),
        )
        # As the SQLite store: columns that only feedback rows fill join the table, and imported rows say so.
        for extra in FEEDBACK_COLUMNS:
            if extra not in interaction_table.columns and any(r.get(extra) for r in interaction_table.rows):
                interaction_table.columns.append(extra)
        if "provenance" in interaction_table.columns:
            for row in interaction_table.rows:
                row.setdefault("provenance", "imported")
        similarity = columns["dataset_similarity.csv"]
        probe_columns = columns["probes.csv"]
        bundle = Bundle(
            live.meta,
            Table("models.csv", columns["models.csv"], [model_codec.loads(models[m]) for m in sorted(models)]),
            Table(
                "datasets.csv",
                columns["datasets.csv"],
                [dataset_codec.unpack(json.loads(datasets[d])["row"]) for d in sorted(datasets)],
            ).widened(),
            interaction_table,
            _table("dataset_similarity.csv", similarity, similarities) if similarity else None,
            _table("probes.csv", probe_columns, probes) if probe_columns else None,
            {
                stem: _table(f"dataset_features/{stem}.csv", columns["features"][stem], rows)
                for stem, rows in zip(sorted(columns["features"]), features, strict=True)
            },
        )
        return bundle, artifacts

    def delete_library(self, name: str) -> None:
        keys = _LibraryKeys(name)

        def body(pipe: Pipeline) -> None:
            pipe.watch(keys.current)
            old = _current(pipe, keys)
            if old is None:
                raise NotFound(f"library {name!r} not found")
            pipe.multi()
            pipe.delete(keys.current)
            self._retire(pipe, keys, old)
            self._bump(pipe, keys)
            pipe.execute()

        self._transaction(body, f"delete of library {name!r}")

    def list_libraries(self) -> list[LibraryInfo]:
        with self._guard():
            names = self._names()
        found = []
        for name in names:
            with suppress(NotFound):  # deleted: the directory keeps every name (see the module docstring)
                found.append(self.get_library(name))
        return found

    def get_library(self, name: str) -> LibraryInfo:
        def reads(pipe: Pipeline, v: _VersionKeys) -> None:
            pipe.hlen(v.models)
            pipe.hlen(v.datasets)
            pipe.llen(v.interactions)
            pipe.hget(v.stats, _RETRACTED)

        live, version, (models, datasets, interactions, retracted) = self._read(name, reads)
        return live.info(name, version, models, datasets, interactions - int(retracted or 0))

    # -- nodes --------------------------------------------------------------------------------------

    def get_model(self, library: str, model_id: str) -> ModelNode:
        fields = [_stat(name, model_id) for name in _MODEL_STATS]

        def reads(pipe: Pipeline, v: _VersionKeys) -> None:
            pipe.hget(v.models, model_id)
            pipe.hmget(v.stats, fields)

        live, _, (row, values) = self._read(library, reads)
        if row is None:
            raise NotFound(f"model {model_id!r} not found in library {library!r}")
        stats = dict(zip(fields, values, strict=True))
        return _model_node(library, live.codec("models.csv").loads(row), _tally_of(stats, model_id))

    def artifact_blob(self, library: str, path: str) -> str:
        def reads(pipe: Pipeline, v: _VersionKeys) -> None:
            pipe.hget(v.artifacts, path)

        _, _, (blob_id,) = self._read(library, reads)
        if blob_id is None:
            raise NotFound(f"library {library!r} has no artifact {path!r}")
        return str(blob_id)

    def _dataset(self, library: str, dataset_id: str, live: _Live | None = None) -> tuple[_Live, DatasetNode | None]:
        def reads(pipe: Pipeline, v: _VersionKeys) -> None:
            pipe.hget(v.datasets, dataset_id)
            pipe.hget(v.stats, _stat("dataset.n", dataset_id))

        live, _, (record, count) = self._read(library, reads, live)
        if record is None:
            return live, None
        return live, _dataset_node(library, dataset_id, record, live.codec("datasets.csv"), int(count or 0))

    def get_dataset(self, library: str, dataset_id: str) -> DatasetNode:
        _, node = self._dataset(library, dataset_id)
        if node is None:
            raise NotFound(f"dataset {dataset_id!r} not found in library {library!r}")
        return node

    def find_dataset(self, fingerprint: str, library: str = "") -> DatasetNode:
        if not fingerprint:
            raise InvalidArgument("fingerprint is required")
        if library:
            names = [library]
        else:
            with self._guard():
                names = self._names()
        for name in names:
            with suppress(NotFound):  # no such library (any more): as the SQLite store, no dataset there
                node = self._find_in(name, fingerprint)
                if node is not None:
                    return node
        raise NotFound(f"no dataset with fingerprint {fingerprint[:12]}… is known")

    def _find_in(self, library: str, fingerprint: str) -> DatasetNode | None:
        """The first dataset (by id) of `library` with this fingerprint, both lookups at one data version."""

        def reads(pipe: Pipeline, v: _VersionKeys) -> None:
            pipe.zrangebylex(v.fingerprints, f"[{fingerprint}\0", f"({fingerprint}\1", start=0, num=1)

        for _ in range(_ATTEMPTS):
            live, _, (members,) = self._read(library, reads)
            if not members:
                return None
            still, node = self._dataset(library, members[0].split("\0", 1)[1], live)
            if still.raw == live.raw:  # else an import switched between the two reads: look again
                return node
        raise Aborted(f"library {library!r} was replaced {_ATTEMPTS} times while being read; retry")

    # -- writes -------------------------------------------------------------------------------------

    def add_interactions(
        self,
        library: str,
        new_datasets: list[DatasetNode],
        interactions: list[InteractionRecord],
        request_id: str = "",
    ) -> tuple[int, int]:
        # Everything is checked before MULTI: inside EXEC, Redis does not undo the other commands when one
        # fails (HINCRBYFLOAT of a NaN cost would leave the row stored and the version bumped).
        for i, rec in enumerate(interactions):
            check_interaction(rec, f"interaction {i}: ")
        keys = _LibraryKeys(library)
        if request_id:
            interactions = [dataclasses.replace(rec, request_id=request_id) for rec in interactions]
        rows = [interaction_row(rec) for rec in interactions]

        model_ids = list(dict.fromkeys(rec.model_id for rec in interactions))
        dataset_ids = list(
            dict.fromkeys([*(n.dataset_id for n in new_datasets), *(r.dataset_id for r in interactions)])
        )

        def body(pipe: Pipeline) -> tuple[int, int]:
            # Three round trips, however loaded the machine: WATCH, the reads, MULTI/EXEC. The keys to watch are
            # named after the live version this process last saw; the reads then check that it is still live.
            live = self._live(keys)
            version = keys.version(live)
            watched = [keys.current]
            if request_id:
                watched.append(version.requests)  # two tries of one request racing: the second sees the first
            if new_datasets:
                # Models and datasets never leave a data version, so what this reads stays true, except that
                # two writers could both add one dataset id: watch the hash so that the second sees the first.
                watched.append(version.datasets)
            pipe.watch(*watched)
            # Reads sent after the WATCH was answered, on another connection: whatever changes a watched key from
            # now on makes the EXEC below fail, and what changed before is in the replies.
            reads = self._redis.pipeline(transaction=False)
            reads.get(keys.current)
            reads.get(keys.graph_version)
            reads.hget(version.requests, request_id or "-")
            reads.hmget(version.models, model_ids or ["-"])
            reads.hmget(version.datasets, dataset_ids or ["-"])
            raw, graph_version, done, model_rows, dataset_rows = reads.execute()
            if raw != live.raw:
                if self._seen(library, raw) is None:
                    raise NotFound(f"library {library!r} not found")
                raise redis_errors.WatchError("the live version moved; try again on the new one")
            if request_id and done is not None:
                return int(graph_version or 0), len(json.loads(str(done))["rows"])
            models = {m for m, row in zip(model_ids, model_rows, strict=False) if row is not None}
            stored = {d: row for d, row in zip(dataset_ids, dataset_rows, strict=False) if row is not None}
            fingerprints = {d: json.loads(record)["fingerprint"] for d, record in stored.items()}
            added: dict[FieldT, EncodableT] = {}  # dataset_id -> record
            indexed: dict[str, float] = {}  # fingerprint index members
            codec = live.codec("datasets.csv")
            for node in new_datasets:
                known = fingerprints.setdefault(node.dataset_id, node.fingerprint)
                if node.dataset_id in stored or node.dataset_id in added:
                    if known != node.fingerprint:
                        raise AlreadyExists(f"dataset {node.dataset_id!r} already exists with other content")
                    continue
                added[node.dataset_id] = _dumps(
                    {
                        "row": codec.pack(dataset_row(node)),
                        "fingerprint": node.fingerprint,
                        "feature_set": node.feature_set,
                        "features": node.features,
                        "origin": node.metadata.get("origin", "feedback"),
                    }
                )
                if node.fingerprint:
                    indexed[f"{node.fingerprint}\0{node.dataset_id}"] = 0
            for i, rec in enumerate(interactions):
                if rec.model_id not in models:
                    raise NotFound(f"interaction {i}: model {rec.model_id!r} not found in library {library!r}")
                if rec.dataset_id not in fingerprints:
                    raise NotFound(f"interaction {i}: dataset {rec.dataset_id!r} not found in library {library!r}")
            pipe.multi()
            if added:
                pipe.hset(version.datasets, mapping=added)
                pipe.rpush(version.added_datasets, *added)
            if indexed:
                pipe.zadd(version.fingerprints, indexed)
            if rows:
                pipe.rpush(version.interactions, *map(live.codec("interactions.csv").dumps, rows))
            _queue_tally(pipe, version.stats, filter(learned, rows), 1)
            if request_id:
                pipe.hset(version.requests, request_id, _dumps({"state": "applied", "rows": rows}))
            self._bump(pipe, keys, version, added_only=True)
            return int(pipe.execute()[-1]), len(rows)

        return self._transaction(body, f"adding interactions to library {library!r}")

    def request_records(self, library: str, request_id: str) -> tuple[list[InteractionRecord], str]:
        def reads(pipe: Pipeline, v: _VersionKeys) -> None:
            pipe.hget(v.requests, request_id)

        _, _, (value,) = self._read(library, reads)
        if value is None:
            return [], ""
        request = json.loads(value)
        if request["state"] == "retracted":
            return [], "retracted"
        rows = list(_as_read(request["rows"], {request_id: value}))
        return [interaction_record(row) for row in rows], request["state"]

    def _change_request(
        self,
        library: str,
        request_id: str,
        action: str,
        principal: str,
        note: str,
    ) -> tuple[int, int]:
        """Retract or confirm a request's records: one MULTI that updates the request, the stats and the audit
        log and bumps the version."""
        keys = _LibraryKeys(library)

        def body(pipe: Pipeline) -> tuple[int, int]:
            pipe.watch(keys.current)
            live = _current(pipe, keys)
            if live is None:
                raise NotFound(f"library {library!r} not found")
            version = keys.version(live)
            pipe.watch(version.requests)
            value = pipe.hget(version.requests, request_id)
            if value is None:
                raise NotFound(f"library {library!r} has no records of request {request_id!r}")
            request = json.loads(str(value))
            rows, state = request["rows"], request["state"]
            if state == "retracted" and action == "confirm":
                raise NotFound(f"request {request_id!r} of library {library!r} was retracted")
            if action == "retract":
                changed = [] if state == "retracted" else rows
                counted = [r for r in changed if learned(r) or state == "confirmed"]
                new_state, sign = "retracted", -1
            else:
                changed = [] if state == "confirmed" else [r for r in rows if not learned(r)]
                counted, new_state, sign = changed, "confirmed", 1
            if not changed:  # done before: nothing to write
                return int(pipe.get(keys.graph_version) or 0), 0
            pipe.multi()
            pipe.hset(version.requests, request_id, _dumps({"state": new_state, "rows": rows}))
            _queue_tally(pipe, version.stats, counted, sign)
            if action == "retract":
                pipe.hincrby(version.stats, _RETRACTED, len(changed))
            entry = AuditEntry(time.time(), principal, action, library, request_id, len(changed), note)
            pipe.rpush(keys.audit, _dumps(dataclasses.asdict(entry)))
            self._bump(pipe, keys, version)
            return int(pipe.execute()[-1]), len(changed)

        return self._transaction(body, f"{action} of request {request_id!r} in library {library!r}")

    def retract(self, library: str, request_id: str, principal: str, note: str = "") -> tuple[int, int]:
        return self._change_request(library, request_id, "retract", principal, note)

    def confirm(self, library: str, request_id: str, principal: str, note: str = "") -> tuple[int, int]:
        return self._change_request(library, request_id, "confirm", principal, note)

    def audit_log(self, library: str, limit: int = 100) -> list[AuditEntry]:
        with self._guard():
            values = cast("list[str]", self._redis.lrange(_LibraryKeys(library).audit, -limit, -1))
        return [AuditEntry(**json.loads(v)) for v in reversed(values)]

    # -- graph --------------------------------------------------------------------------------------

    def snapshot(self, library: str) -> Snapshot:
        live, version, (models, datasets, stats, requests), (interactions, similarities) = self._read_version(
            library,
            lambda v: [v.models, v.datasets, v.stats, v.requests],
            lambda v: [v.interactions, v.similarities],
        )
        cells, stored = _interaction_cells(live.columns["interactions.csv"], interactions, requests)
        model_codec, dataset_codec = live.codec("models.csv"), live.codec("datasets.csv")
        similarity_codec = _Codec(live.columns["dataset_similarity.csv"] or [])
        model_ids, dataset_ids = sorted(models), sorted(datasets)
        return Snapshot(
            live.info(library, version, len(models), len(datasets), stored),
            [_model_node(library, model_codec.loads(models[m]), _tally_of(stats, m)) for m in model_ids],
            [
                _dataset_node(library, d, datasets[d], dataset_codec, int(stats.get(_stat("dataset.n", d), 0)))
                for d in dataset_ids
            ],
            interaction_columns(model_ids, dataset_ids, cells),
            [similarity_record(row) for row in map(similarity_codec.loads, similarities)],
        )

    def delta(self, library: str, since_version: int) -> GraphDelta | None:
        """Three steps, each at one graph version: the marks and lengths; the lists' tails past the mark of
        `since_version` (append-only, so they hold still); the touched nodes and their stats, read again at the
        same graph version (a write in between: from the start; `_ATTEMPTS` of them: None, the whole graph)."""
        for _ in range(_ATTEMPTS):

            def heads(pipe: Pipeline, v: _VersionKeys) -> None:
                pipe.hmget(v.marks, ["base", str(since_version)])
                pipe.llen(v.interactions)
                pipe.llen(v.added_datasets)
                pipe.hlen(v.models)
                pipe.hlen(v.datasets)
                pipe.hget(v.stats, _RETRACTED)

            live, version, ((base, mark), stored, added, n_models, n_datasets, retracted) = self._read(library, heads)
            if base is None or mark is None or not int(base) <= since_version <= version:
                return None  # a version of another import, or from before marks were kept
            keys = _LibraryKeys(library).version(live)
            from_stored, from_added = map(int, str(mark).split())
            with self._guard():
                pipe = self._redis.pipeline(transaction=False)  # reads only: the lists are append-only
                pipe.lrange(keys.interactions, from_stored, stored - 1)
                pipe.lrange(keys.added_datasets, from_added, added - 1)
                texts, new_datasets = pipe.execute()
            cells, _ = _interaction_cells(live.columns["interactions.csv"], texts, {})
            model_ids = sorted(set(cells["model_id"]))
            dataset_ids = sorted(set(cells["dataset_id"]) | set(new_datasets))
            fields = [_stat(name, m) for m in model_ids for name in _MODEL_STATS]
            fields += [_stat("dataset.n", d) for d in dataset_ids]

            nodes = _node_reads(model_ids, dataset_ids, fields)
            again, now, (model_rows, dataset_rows, values) = self._read(library, nodes, live)
            if again.raw != live.raw:
                return None  # re-imported meanwhile
            if now != version:
                continue  # another write between the steps: its stats are not this version's
            stats = dict(zip(fields, values, strict=False))
            model_codec, dataset_codec = live.codec("models.csv"), live.codec("datasets.csv")
            return GraphDelta(
                since_version,
                live.info(library, version, n_models, n_datasets, stored - int(retracted or 0)),
                [
                    _model_node(library, model_codec.loads(row), _tally_of(stats, m))
                    for m, row in zip(model_ids, model_rows, strict=False)
                ],
                [
                    _dataset_node(library, d, record, dataset_codec, int(stats.get(_stat("dataset.n", d)) or 0))
                    for d, record in zip(dataset_ids, dataset_rows, strict=False)
                ],
                interaction_columns(model_ids, dataset_ids, cells),
            )
        return None

    def graph_version(self, library: str) -> int:
        return self._read(library, lambda pipe, v: None)[1]

    # -- query log ----------------------------------------------------------------------------------

    def log_query(self, record: QueryRecord) -> None:
        key = _query_key(record.query_id)
        logged = record.logged_unix or time.time()

        def body(pipe: Pipeline) -> None:
            pipe.watch(key)
            if pipe.exists(key):
                raise AlreadyExists(f"query {record.query_id!r} is already logged")
            pipe.multi()
            pipe.hset(
                key,
                mapping={
                    "library": record.library,
                    "fingerprint": record.fingerprint,
                    "filename": record.filename,
                    "feature_set": record.feature_set,
                    "features": _dumps(record.features),
                    "modality": record.modality,
                    "answer_model_ids": _dumps(record.answer_model_ids),
                    "graph_version": record.graph_version,
                    "logged_unix": repr(logged),
                },
            )
            pipe.zadd(_BY_TIME, {record.query_id: logged})
            pipe.zadd(_library_queries(record.library), {record.query_id: logged})
            pipe.execute()

        self._transaction(body, f"logging query {record.query_id!r}")

    def get_query(self, query_id: str) -> QueryRecord:
        with self._guard():
            fields = cast("dict[str, str]", self._redis.hgetall(_query_key(query_id)))
        if not fields:
            raise NotFound(f"query {query_id!r} not found")
        return _query_record(query_id, fields)

    def list_queries(self, library: str = "", limit: int = 100) -> list[QueryRecord]:
        if limit < 1:
            raise InvalidArgument(f"limit must be at least 1, not {limit}")
        with self._guard():
            index = _library_queries(library) if library else _BY_TIME
            ids = cast("list[str]", self._redis.zrevrange(index, 0, limit - 1))
            pipe = self._redis.pipeline(transaction=False)  # reads only
            for query_id in ids:
                pipe.hgetall(_query_key(query_id))
            found = pipe.execute()
        # A query purged between the two reads comes back empty: it is gone, so it is not listed.
        return [_query_record(q, fields) for q, fields in zip(ids, found, strict=True) if fields]

    def purge_queries(self, older_than_unix: float | None = None) -> int:
        newest = "+inf" if older_than_unix is None else f"({older_than_unix!r}"

        def body(pipe: Pipeline) -> int:
            pipe.watch(_BY_TIME)  # every write of the query log changes it
            ids = cast("list[str]", pipe.zrangebyscore(_BY_TIME, "-inf", newest, start=0, num=_PURGE_BATCH))
            if not ids:
                return 0
            reader = self._redis.pipeline(transaction=False)  # reads only, guarded by the WATCH above
            for query_id in ids:
                reader.hget(_query_key(query_id), "library")
            by_library: dict[str, list[str]] = {}
            for query_id, library in zip(ids, reader.execute(), strict=True):
                by_library.setdefault(library or "", []).append(query_id)
            pipe.multi()
            pipe.unlink(*map(_query_key, ids))
            pipe.zrem(_BY_TIME, *ids)
            for library, members in by_library.items():
                pipe.zrem(_library_queries(library), *members)
            pipe.execute()
            return len(ids)

        removed = 0
        while purged := self._transaction(body, "purging the query log"):
            removed += purged
        return removed

    def check(self) -> None:
        with self._guard():
            self._redis.ping()

    def close(self) -> None:
        self._redis.close()


def _query_record(query_id: str, fields: dict[str, str]) -> QueryRecord:
    return QueryRecord(
        query_id,
        fields["library"],
        fields["fingerprint"],
        fields["filename"],
        fields["feature_set"],
        json.loads(fields["features"]),
        fields["modality"],
        json.loads(fields["answer_model_ids"]),
        int(fields["graph_version"]),
        float(fields["logged_unix"]),
    )
