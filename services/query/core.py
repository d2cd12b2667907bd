"""Query logic with no grpc: receive an exemplar file, understand it, ask for the top-k, log it.

The order matters for "a refused upload keeps nothing": the file is spooled to a temp file and parsed and
validated there first (`modsnet.data.exemplar`: tables, text, images, XRD scans; archives for folders); only a
file that passed is put in storage, and only then is anything logged.

Probes run here, because this is where the uploaded data is: round after round the recommender names the next
models worth measuring given what the probes measured so far (`SelectProbes`, adaptive probing; tabular probes
in rounds of `probe_round` models, XRD and text probes in one), `modsnet.models.probing` measures them on a bounded
sample of the upload within `probe_seconds` (like parsing and features, in a worker process when the service
has them: `work.py`), and the measurements go with the ranking request as the query node's probe edges. A
probe that cannot run is left out; it never fails the search.

The query service is the platform's one public address, so it also answers what a client asks about the
libraries' models: their metadata (`find_model`) and their runnable artifacts (`artifact`), fetched from
knowledge and storage. The core speaks the shared records of `modsnet.data.graph`; the servicer converts.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import math
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath, PurePosixPath
from typing import IO, Any, TypeVar

from modsnet.data.exemplar import Exemplar, Limits
from modsnet.data.graph import (
    Constraints,
    Cost,
    LibraryInfo,
    ModelNode,
    Objective,
    ProbeRecord,
    QueryRecord,
    Ranking,
    check_cost,
)
from modsnet.data.profiles import PROFILES, Profile, profile_named
from modsnet.models.probing import PROTOCOL_IMAGES, needs_artifact
from modsnet.runtime import deadline, logs, observe
from modsnet.runtime.errors import Busy, DataLoss, DeadlineExceeded, InvalidArgument, NotFound, ResourceExhausted
from modsnet.runtime.stubs import KnowledgeClient, RecommenderClient, StorageClient, iter_file
from modsnet.runtime.workers import WorkerFailed, WorkerPool

from .metrics import (
    DOWNLOAD_BYTES,
    FEATURE_SECONDS,
    FEEDBACK,
    PROBE_SECONDS,
    PROBES,
    SEARCHES,
    UPLOAD_BYTES,
    UPLOAD_SIZE,
)
from .work import measure_probes, parse_and_describe

log = logging.getLogger(__name__)
T = TypeVar("T")

# A probe run may overrun its budget by one probe's bounded fit before its worker is stopped.
PROBE_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class Feedback:
    """What a reported score became: the dataset it is attached to, the graph version after it, the request id
    it is stored under, and why it is quarantined ("" when it is learned from)."""

    dataset_id: str
    graph_version: int
    request_id: str
    quarantine: str


@dataclass(frozen=True)
class SearchOptions:
    library: str = ""
    k: int = 5
    target_column: str = ""
    constraints: Constraints | None = None
    probe_budget: int = 0
    filename: str = ""
    modality: str = ""
    expected_sha256: str = ""
    objective: Objective = field(default_factory=Objective)
    profile: str = ""  # a hardware profile's name (modsnet.data.profiles), "" for none


@dataclass(frozen=True)
class DatasetSummary:
    fingerprint: str
    filename: str
    modality: str
    rows: int
    columns: int
    target_column: str
    classes: int
    feature_set: str
    features: dict[str, float]
    known_dataset_id: str


@dataclass(frozen=True)
class SearchResult:
    query_id: str
    library: LibraryInfo
    dataset: DatasetSummary
    answer: Ranking
    probes: list[ProbeRecord]
    timings: list[observe.StageTiming] = field(default_factory=list)  # what each stage took, in order
    probing: str = ""  # why probing ended before the budget was spent ("" when it was spent, or nothing to probe)


@dataclass(frozen=True)
class Artifact:
    """A model's runnable file, about to be sent."""

    library: str
    model_id: str
    filename: str
    sha256: str  # also its storage blob id
    size: int


class UploadTurns:
    """At most `running` searches parse at once; up to `waiting` more wait in line, each at most `wait_seconds`
    (or what its deadline leaves); the others are refused at once with `Busy`.

    First come, first served: a freed turn is handed to the head of the line, never to whoever asks next. With
    a semaphore a newcomer could take a turn between its release and the wake-up of the waiter it was meant
    for, and a refused client's retry had no place at all: at 32 clients some searches lost that race over
    and over (p50 0.3 s, p99 7.5 s; docs/benchmarks-load.md).
    """

    RETRY_AFTER = 2.0  # what a refused client is told to wait: about a search's time on a busy service
    ANSWER_SECONDS = 1.0  # kept back from a waiter's deadline, to answer it before its caller gives up

    def __init__(self, running: int, waiting: int, wait_seconds: float):
        self.running, self.waiting, self.wait_seconds = running, waiting, wait_seconds
        self._free = running
        self._line: collections.deque[threading.Event] = collections.deque()  # set: the turn is this waiter's
        self._lock = threading.Lock()

    @property
    def queued(self) -> int:
        """Searches waiting in line now."""
        with self._lock:
            return len(self._line)

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        self._take()
        try:
            yield
        finally:
            self._give_back()

    def _take(self) -> None:
        left = deadline.remaining()
        with self._lock:
            if self._free > 0 and not self._line:
                self._free -= 1
                return
            if len(self._line) >= self.waiting:
                raise Busy(self._busy(f"and {self.waiting} more waiting"), retry_after=self.RETRY_AFTER)
            wait = self.wait_seconds if left is None else min(self.wait_seconds, left - self.ANSWER_SECONDS)
            if wait <= 0:  # its caller would give up before any turn came: refused now, not after a wait in line
                raise DeadlineExceeded("the query service is busy and this search's deadline leaves no time to wait")
            ticket = threading.Event()
            self._line.append(ticket)
        if ticket.wait(wait):
            return
        with self._lock:
            if ticket.is_set():  # handed its turn as it gave up: it runs
                return
            self._line.remove(ticket)
        if left is not None and wait < self.wait_seconds:
            raise DeadlineExceeded(f"the query service is busy: no turn within this search's deadline ({wait:.1f} s)")
        raise Busy(self._busy(f"for {wait:.0f} s"), retry_after=self.RETRY_AFTER)

    def _give_back(self) -> None:
        with self._lock:
            if self._line:
                self._line.popleft().set()  # the turn passes to the head of the line, never free for a newcomer
            else:
                self._free += 1

    def _busy(self, detail: str) -> str:
        return f"the query service is busy: {self.running} uploads in progress {detail}; retry in a few seconds"


class QueryCore:
    def __init__(
        self,
        storage: StorageClient,
        knowledge: KnowledgeClient,
        recommender: RecommenderClient,
        *,
        max_upload_bytes: int,
        max_concurrent_uploads: int = 4,
        max_waiting_uploads: int = 64,
        upload_wait_seconds: float = 30.0,
        probe_seconds: float = 10.0,
        probe_round: int = 1,
        spool_dir: str | None = None,
        cache_dir: Path | None = None,
        workers: WorkerPool | None = None,
    ):
        self.storage = storage
        self.knowledge = knowledge
        self.recommender = recommender
        self.max_upload_bytes = max_upload_bytes
        self.probe_seconds = probe_seconds
        if probe_round < 1:
            raise InvalidArgument(f"probe_round must be >= 1, not {probe_round}")
        self.probe_round = probe_round  # probes measured per round of adaptive probing
        # Archives may unpack to a few times the upload limit, never more (with the expansion check per
        # member in `Limits`, that stops zip bombs before they are inflated).
        # Labelled images are also decoded as the library measured its datasets, so an image probe reads what the
        # library records (`modsnet.models.imageprobe`).
        self.limits = Limits(
            max_bytes=max_upload_bytes, max_unpacked_bytes=4 * max_upload_bytes, protocol_images=PROTOCOL_IMAGES
        )
        self.spool_dir = spool_dir
        self.cache_dir = cache_dir
        # Parsing, features and probes run there (None: on the calling thread), so that they do not hold
        # this process's GIL while cheap calls wait.
        self.workers = workers
        # Each search holds its parsed upload until it answers: their number bounds the service's memory.
        # A few more wait their turn, unread (gRPC's flow control holds their bytes back); each holds an RPC
        # thread, so the queue stays short enough to leave threads to cheap calls. Beyond it: Busy.
        self._uploads = UploadTurns(max_concurrent_uploads, max_waiting_uploads, upload_wait_seconds)

    # -- search -------------------------------------------------------------------------------------

    def search(self, options: SearchOptions, chunks: Iterable[bytes]) -> SearchResult:
        # The search's id is made now, so every log line and call of it (in all four services) carries it.
        logs.bind_query_id(uuid.uuid4().hex)
        with observe.stopwatch("query", observe.SEARCH_STAGES, first="wait") as watch, self._uploads.turn():
            result = self._search(options, chunks)
        seconds = {t.stage: round(t.seconds, 4) for t in watch.laps}
        log.info("search answered", extra={"library": result.library.name, "stages": seconds})
        return replace(result, timings=watch.laps)

    def _search(self, options: SearchOptions, chunks: Iterable[bytes]) -> SearchResult:
        # Named things are checked before the upload is read: a mistyped profile costs no upload.
        options.objective.check()
        profile_named(options.profile)
        filename = PurePath(options.filename or "upload").name
        modality = options.modality or "unknown"
        try:
            # A file on disk (never in memory): readers of scans and archives need a path, and a 2 GB upload
            # must not sit in RAM.
            with tempfile.NamedTemporaryFile(dir=self.spool_dir, prefix="upload-") as spool:
                observe.stage("upload")
                fingerprint, size = self._receive(chunks, spool, filename)
                if options.expected_sha256 and options.expected_sha256.lower() != fingerprint:
                    raise DataLoss(
                        f"{filename}: arrived corrupt (sha256 {fingerprint}, client sent {options.expected_sha256})"
                    )
                started = time.perf_counter()
                observe.stage("parse")
                exemplar, feature_set, features, parse_seconds = self._work(
                    parse_and_describe,
                    spool.name,
                    filename,
                    options.modality,
                    options.target_column,
                    self.limits,
                    self.cache_dir,
                    timeout=deadline.remaining(),
                    what=f"reading {filename}",
                )
                modality = exemplar.modality
                observe.split_stage(parse_seconds, "features")  # one call parsed, then described the upload
                FEATURE_SECONDS.labels(modality).observe(time.perf_counter() - started)
                observe.stage("library")
                library = self._library(options.library, modality)
                # Valid: only now is the file kept (content-addressed: the same file twice is stored once, and
                # sent once: a search of a file storage has is not streamed to it again).
                observe.stage("store")
                if not self._stored(fingerprint, size):
                    spool.seek(0)
                    self.storage.put_chunks(
                        iter_file(spool), expected_sha256=fingerprint, size_hint=size, name=filename
                    )
            observe.stage("lookup")
            known = self._known_dataset(fingerprint, library.name)
            observe.stage("select")
            probes, probing_note = self._probe(library, exemplar, feature_set, features, options.probe_budget, known)
            observe.stage("recommend")
            answer = self.recommender.recommend(
                library.name,
                features,
                feature_set=feature_set,
                modality=modality,
                k=options.k or 5,
                constraints=options.constraints,
                probe_budget=options.probe_budget,
                dataset_id=known,
                probes=probes,
                objective=options.objective,
                profile=options.profile,
                # Read from knowledge during this search, after any write that had completed: the answer is at
                # least this new, and the recommender needs no call of its own to know that (read-your-writes).
                graph_version=library.graph_version,
            )
            query_id = logs.current_query_id() or uuid.uuid4().hex
            observe.stage("log")
            self.knowledge.log_query(
                QueryRecord(
                    query_id=query_id,
                    library=library.name,
                    fingerprint=fingerprint,
                    filename=filename,
                    feature_set=feature_set,
                    features=features,
                    modality=modality,
                    answer_model_ids=[m.model_id for m in answer.models],
                    graph_version=answer.graph_version,
                ),
                answer.models,
            )
        except Exception:
            SEARCHES.labels(modality, "error").inc()
            raise
        SEARCHES.labels(modality, "ok").inc()
        summary = DatasetSummary(
            fingerprint=fingerprint,
            filename=filename,
            modality=modality,
            rows=exemplar.n_items,
            columns=exemplar.table.shape[1] if exemplar.table is not None else 0,
            target_column=exemplar.target,
            classes=int(features.get("n_classes", 0)),
            feature_set=feature_set,
            features=features,
            known_dataset_id=known,
        )
        return SearchResult(query_id, library, summary, answer, probes, probing=probing_note)

    def _probe(
        self,
        library: LibraryInfo,
        exemplar: Exemplar,
        feature_set: str,
        features: dict[str, float],
        budget: int,
        known: str,
    ) -> tuple[list[ProbeRecord], str]:
        """Measure models round after round, each round the recommender's next picks given the probes measured
        so far (adaptive probing), until `budget` models were measured, the time is spent or the recommender says
        another probe is not worth it. Returns the probes and, when probing ended before the budget, why.

        In rounds, a model that could not be measured (a fit that failed, a transformer that cannot embed the
        texts in the time left) costs time but no measurement of the budget: the next round picks another, up to
        `budget` more tries than the budget."""
        if budget < 0:
            raise InvalidArgument("probe_budget must be >= 0")
        if budget == 0:
            return [], ""
        spent = 0.0  # seconds measuring: the first choice may wait for a first training, which is not probe time
        measured: list[ProbeRecord] = []
        tried: list[str] = []
        # Tabular and text probes go in rounds (a text probe's embedding is kept in its worker for the next round:
        # `textprobe._EMBEDDED`). XRD agreement is relative to the finders probed together, and an image round
        # embeds its sample once per encoder: both run in one round (the selector's batch).
        rounds = exemplar.modality in ("tabular", "text")
        per_round = self.probe_round if rounds else budget
        tries = 2 * budget if rounds else budget
        note = ""
        got: set[str] = set()
        while len(got) < budget and len(tried) < tries:
            if tried:
                observe.stage("select")
            wanted = min(budget - len(got), tries - len(tried))
            choice = self.recommender.select_probes(
                library.name,
                features,
                feature_set=feature_set,
                modality=exemplar.modality,
                budget=min(per_round, wanted),
                dataset_id=known,
                measured=measured,
                tried=[m for m in tried if m not in got],
                graph_version=library.graph_version,  # as Recommend's
            )
            observe.stage("probes")
            chosen = [m for m in choice.model_ids if m not in tried][:wanted]
            if choice.stop or not chosen:
                note = choice.reason if tried else ""  # nothing to probe at all is no early stop
                break
            tried.extend(chosen)
            remaining = self.probe_seconds - spent
            if remaining <= 0:
                note = f"the probing time of {self.probe_seconds:g} s was spent after {len(got)} probe(s)"
                break
            round_started = time.perf_counter()
            measured.extend(self._measure(library, exemplar, chosen, remaining))
            spent += time.perf_counter() - round_started
            got = {p.model_id for p in measured}
        PROBES.labels(library.name).inc(len(measured))
        if tried:  # a search that probes nothing is not a probe time of 0
            PROBE_SECONDS.observe(spent)
        return measured, note

    def _measure(
        self, library: LibraryInfo, exemplar: Exemplar, chosen: list[str], seconds: float
    ) -> list[ProbeRecord]:
        """One round of probes in a worker process, within `seconds`; a probe that cannot run is left out."""
        started = time.perf_counter()
        models = []
        for model_id in chosen:
            try:
                model = self.knowledge.get_model(library.name, model_id)
                artifact = None
                if needs_artifact(library):
                    if not model.artifact_blob_id:
                        continue
                    artifact = self.storage.get_bytes(model.artifact_blob_id)
            except NotFound:  # deleted since it was picked: one probe fewer
                continue
            models.append((model, artifact))
        remaining = max(0.0, seconds - (time.perf_counter() - started))
        if not models or remaining <= 0:  # nothing to measure: no worker, no copy of the upload sent to one
            return []
        timeout = remaining + PROBE_GRACE_SECONDS
        left = deadline.remaining()
        if left is not None:
            timeout = max(0.0, min(timeout, left - 1.0))  # a second to answer without probes
        try:
            return self._work(
                measure_probes, library, exemplar, models, remaining, timeout=timeout, what=f"probes on {exemplar.name}"
            )
        except (DeadlineExceeded, WorkerFailed) as error:  # probes are evidence, never a reason to fail a search
            log.warning("search of %s goes on without these probes: %s", exemplar.name, error)
            return []

    @contextlib.contextmanager
    def upload(self, chunks: Iterable[bytes], filename: str) -> Iterator[tuple[str, str, int]]:
        """An upload that is not a search (the XRD view's scan): spooled to a temp file under the same admission
        and size limit as a search; yields (path, sha256, size) and deletes the file after."""
        with self._uploads.turn(), tempfile.NamedTemporaryFile(dir=self.spool_dir, prefix="upload-") as spool:
            fingerprint, size = self._receive(chunks, spool, PurePath(filename or "upload").name)
            yield spool.name, fingerprint, size

    def _work(self, function: Callable[..., T], *args: Any, timeout: float | None, what: str) -> T:
        if self.workers is None:
            return function(*args)
        return self.workers.run(function, *args, timeout=timeout, what=what)

    def _receive(self, chunks: Iterable[bytes], spool: IO[bytes], filename: str) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > self.max_upload_bytes:
                raise ResourceExhausted(f"{filename}: larger than the limit of {self.max_upload_bytes} bytes")
            digest.update(chunk)
            spool.write(chunk)
        spool.flush()  # readers open the spool by path
        UPLOAD_BYTES.inc(size)
        UPLOAD_SIZE.observe(size)
        if size == 0:
            raise InvalidArgument(f"{filename}: the file is empty")
        return digest.hexdigest(), size

    def _stored(self, blob_id: str, size: int) -> bool:
        """Whether storage already holds this upload (its sha256 is its blob id), checked by a small call."""
        try:
            return self.storage.size(blob_id) == size
        except NotFound:
            return False

    def _library(self, name: str, modality: str) -> LibraryInfo:
        libraries = self.knowledge.list_libraries()
        if name:
            for info in libraries:
                if info.name == name:
                    return info
            known = ", ".join(i.name for i in libraries) or "none"
            raise NotFound(f"library {name!r} not found (known: {known})")
        fitting = [i for i in libraries if i.meta.get("modality") == modality]
        if len(fitting) == 1:
            return fitting[0]
        if not fitting:
            raise NotFound(f"no {modality} library is imported; import one with `modsnet library import`")
        names = ", ".join(i.name for i in fitting)
        raise InvalidArgument(f"several {modality} libraries ({names}): name one with --library")

    def _known_dataset(self, fingerprint: str, library: str) -> str:
        try:
            return self.knowledge.find_dataset(fingerprint, library).dataset_id
        except NotFound:
            return ""

    # -- libraries, models and feedback -------------------------------------------------------------

    def list_libraries(self) -> list[LibraryInfo]:
        return self.knowledge.list_libraries()

    def list_profiles(self) -> list[Profile]:
        return [PROFILES[name] for name in sorted(PROFILES)]

    def find_model(self, model_id: str, library: str = "") -> ModelNode:
        """A model by id, in `library` or in whichever single library has it."""
        if not model_id:
            raise InvalidArgument("model_id is required")
        if library:
            return self.knowledge.get_model(library, model_id)
        found = []
        for info in self.knowledge.list_libraries():
            try:
                found.append(self.knowledge.get_model(info.name, model_id))
            except NotFound:
                continue
        if not found:
            raise NotFound(f"no library has a model {model_id!r}")
        if len(found) > 1:
            names = ", ".join(m.library for m in found)
            raise InvalidArgument(f"model {model_id!r} is in several libraries ({names}): name one with --library")
        return found[0]

    def artifact(self, model_id: str, library: str = "") -> tuple[Artifact, Iterator[bytes]]:
        """A model's runnable file: what it is, and its bytes in chunks as storage sends them.

        The chunks are hashed as they pass; if they do not add up to the file's sha256 the iterator
        raises DataLoss after the last one, so a client that checks nothing still learns of it.
        """
        model = self.find_model(model_id, library)
        if not model.artifact_blob_id:
            raise NotFound(f"model {model_id!r} of library {model.library!r} has no runnable artifact")
        blob_id = model.artifact_blob_id
        info = Artifact(
            library=model.library,
            model_id=model.model_id,
            filename=PurePosixPath(model.metadata.get("artifact", "") or model.model_id).name,
            sha256=blob_id,
            size=self.storage.size(blob_id),
        )

        def chunks() -> Iterator[bytes]:
            try:
                for chunk in self.storage.get_checked_chunks(blob_id):
                    DOWNLOAD_BYTES.inc(len(chunk))
                    yield chunk
            except DataLoss as error:
                raise DataLoss(f"artifact of model {model_id!r}: {error.message}") from error

        return info, chunks()

    def report_performance(
        self, query_id: str, model_id: str, score: float, cost: Cost, request_id: str = ""
    ) -> Feedback:
        """Attach a measured score to the searched dataset, which becomes (or already is) a dataset node.

        Everything the user sent is checked here first, so the error names the field; knowledge then judges
        the score against the library's records (refused, stored, or stored but quarantined). The request
        id (the client's, else a new one) makes a retry of this report apply once.
        """
        if not query_id or not model_id:
            raise InvalidArgument("query_id and model_id are required")
        if not math.isfinite(score):
            raise InvalidArgument(f"score: {score!r} must be a finite number")
        check_cost(cost, "")
        if logs.accepted_query_id(query_id):  # a feedback's lines carry the id of the search it reports on
            logs.bind_query_id(query_id)
        # Knowledge finds the search's dataset (or adds it) and stores the record in one call: each call between
        # two loaded processes costs a wait for a core and a GIL on both sides.
        response = self.knowledge.add_feedback(query_id, model_id, score, cost, request_id or uuid.uuid4().hex)
        FEEDBACK.inc()
        return Feedback(response.dataset_id, int(response.graph_version), response.request_id, response.quarantine)

    def close(self) -> None:
        if self.workers is not None:
            self.workers.close()
        for client in (self.storage, self.knowledge, self.recommender):
            client.close()
