"""`make load`: many clients drive the local cluster for a while, then every acknowledged feedback is looked
for in the knowledge graph.

    python benchmarks/load.py [--clients 32] [--seconds 60] [--probes 5] [--new-files] [--dir .cluster]
        [--out docs/benchmarks-load.md]

It starts the local cluster when it is not up (`modsnet.offline.localcluster up`, which also imports the
built-in libraries). Each client loops over the calls a user makes: a search of every kind for which a
library is imported (a CSV for tabular libraries, a simulated powder scan for XRD ones; text and image only
when such a library is there and an input for it is given, which the built-ins do not need), feedback
(ReportPerformance) on a model from its own last answer, and the list of libraries. It reports requests,
errors by status code (the target is none), p50/p99 per call, and then checks that each acknowledged
feedback is in its library's graph (Knowledge.Snapshot). Exit status 1 on any error or missing feedback.
`--probes 0` searches without probes (the issue's "searches/s without probes"); the default, the client's own
budget, is what earlier runs measured. `--new-files`: each search uploads a file no search has seen (the
table less a tenth of its rows, a scan with other noise), answered without waiting for the estimator to take
in the feedback on it; by default every search sends the same file, a known dataset after its first feedback.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import os
import platform
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._loops import for_seconds  # noqa: E402
from modsnet.client import DEFAULT_PROBES, Client  # noqa: E402
from modsnet.offline import localcluster  # noqa: E402
from modsnet.runtime.errors import ModsnetError  # noqa: E402

CSV = ROOT / "examples" / "saheart.csv"
KEEP_MARKER = "<!-- notes: kept by benchmarks/load.py -->"


def xrd_scan(path: Path, seed: int = 0) -> Path:
    """A silicon powder pattern with Cu Kα (five reflections, Poisson counting noise), as a .xy file."""
    two_theta = np.arange(10.0, 80.0, 0.02)
    centres = [28.44, 47.30, 56.12, 69.13, 76.38]
    clean = 50 + sum(1000 * np.exp(-0.5 * ((two_theta - c) / 0.08) ** 2) for c in centres)
    counts = np.random.default_rng(seed).poisson(clean)
    path.write_text("".join(f"{t:.2f} {y:.0f}\n" for t, y in zip(two_theta, counts, strict=True)))
    return path


def fresh_input(modality: str, path: Path, seed: int, scratch: Path) -> Path:
    """A file like `path` that no search has seen (what most users bring): an XRD scan with other counting
    noise, or the table without a tenth of its rows, chosen by `seed`."""
    out = scratch / f"new-{seed}-{path.name}"
    if modality == "xrd":
        return xrd_scan(out, seed)
    header, *rows = path.read_text().splitlines(keepends=True)
    keep = np.random.default_rng(seed).random(len(rows)) >= 0.1
    out.write_text(header + "".join(row for row, kept in zip(rows, keep, strict=True) if kept))
    return out


@dataclass
class Tally:
    """What every client saw, merged under one lock."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    errors: dict[str, collections.Counter[str]] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    first_error: dict[str, str] = field(default_factory=dict)
    # (library, model_id, dataset_id, score) of each acknowledged ReportPerformance
    feedback: list[tuple[str, str, str, float]] = field(default_factory=list)
    # acknowledged but quarantined (stored, not learned from, so not in a snapshot): the reply says so
    quarantined: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def run_client(
    number: int,
    query: str,
    inputs: dict[str, Path],
    probes: int,
    new_files: Path | None,
    stop: threading.Event,
    tally: Tally,
) -> None:
    """`new_files`: where to write a new file for each search (None: the same file every time)."""
    client = Client(query=query)
    kinds = [f"search {modality}" for modality in inputs]
    plan = [step for kind in kinds for step in (kind, "feedback", "list")]
    last: dict[str, object] = {}
    step = number  # clients start at different places in the plan
    reports = 0
    try:
        while not stop.is_set():
            kind = plan[step % len(plan)]
            step += 1
            if kind == "feedback" and not last:
                continue
            started = time.perf_counter()
            try:
                if kind.startswith("search "):
                    modality = kind.removeprefix("search ")
                    path = inputs[modality]
                    if new_files is not None:
                        path = fresh_input(modality, path, number * 1_000_000 + step, new_files)
                        started = time.perf_counter()  # writing the file is not the search's time
                    last = {"answer": client.search(path, k=5, probe_budget=probes, timeout=300)}
                elif kind == "feedback":
                    answer = last["answer"]
                    model = answer.models[reports % len(answer.models)]  # type: ignore[attr-defined]
                    # A score near the prediction (plausible), unique to this report so the check can find it.
                    reports += 1
                    score = round(float(model.predicted_score), 3) + (number * 100_000 + reports) * 1e-9
                    reply = client.report_performance(answer.query_id, model.model_id, score)  # type: ignore[attr-defined]
                    with tally.lock:
                        if reply.quarantined:
                            tally.quarantined += 1
                        else:
                            tally.feedback.append((answer.library, model.model_id, reply.dataset_id, score))  # type: ignore[attr-defined]
                else:
                    client.list_libraries()
            except ModsnetError as exc:
                with tally.lock:
                    tally.errors[kind][exc.code] += 1
                    tally.first_error.setdefault(f"{kind} {exc.code}", str(exc).splitlines()[0][:200])
                continue
            elapsed = time.perf_counter() - started
            with tally.lock:
                tally.latencies[kind].append(elapsed)
    finally:
        client.close()


def missing_feedback(addresses: dict[str, str], feedback: list[tuple[str, str, str, float]]) -> list[tuple]:
    """Acknowledged reports not found among their library's feedback interactions."""
    client = Client(query=addresses["query"], knowledge=addresses["knowledge"])
    try:
        wanted = collections.Counter(feedback)
        present: collections.Counter[tuple[str, str, str, float]] = collections.Counter()
        assert client.knowledge is not None
        for library in {item[0] for item in feedback}:
            for i in client.knowledge.snapshot(library).interactions:
                if i.provenance == "feedback":
                    present[(library, i.model_id, i.dataset_id, i.score)] += 1
        return sorted((wanted - present).elements())
    finally:
        client.close()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


@dataclass
class Report:
    clients: int
    seconds: float
    probes: int
    new_files: bool
    wall: float
    warm_up: float
    warm_up_errors: list[str]
    libraries: list[str]
    inputs: dict[str, Path]
    skipped: list[str]
    tally: Tally
    lost: list[tuple]
    started_utc: str = ""
    load_average: tuple[float, float] = (0.0, 0.0)  # the machine's 1-minute load average at the start and end

    @property
    def errors(self) -> collections.Counter[str]:
        total = collections.Counter[str]()
        for counter in self.tally.errors.values():
            total.update(counter)
        return total

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.tally.latencies.values()) + sum(self.errors.values())

    @property
    def searches(self) -> int:
        return sum(len(v) for k, v in self.tally.latencies.items() if k.startswith("search "))

    def markdown(self) -> str:
        tally, errors = self.tally, self.errors
        lines = [
            "# Load on the local cluster",
            "",
            f"`python benchmarks/load.py --clients {self.clients} --seconds {self.seconds:g} --probes {self.probes}"
            + (" --new-files" if self.new_files else "")
            + "` "
            "(`make load`), "
            f"{self.started_utc or datetime.date.today()} UTC, {platform.machine()} with {os.cpu_count()} CPUs "
            f"(load average {self.load_average[0]:.1f} at the start, {self.load_average[1]:.1f} at the end), the four "
            "services, Redis and SeaweedFS on this one machine (`make up`).",
            f"Libraries: {', '.join(self.libraries)}; searched: "
            + ", ".join(f"{m} ({p.name})" for m, p in self.inputs.items())
            + (f"; no input for {', '.join(self.skipped)}" if self.skipped else "")
            + ". Each client loops: search, feedback on a model of its answer, list libraries, for each kind. "
            f"One search of each kind first, untimed ({self.warm_up:.1f} s: the first search of a library fits "
            "its estimator).",
            "",
            f"Requests: {self.requests} in {self.wall:.1f} s ({self.requests / self.wall:.1f}/s); errors: "
            + (", ".join(f"{code} {n}" for code, n in errors.most_common()) if errors else "none")
            + f"; acknowledged feedback: {len(tally.feedback) + tally.quarantined} ({tally.quarantined} quarantined: "
            f"stored, not learned from), learned ones missing from the graph afterwards: {len(self.lost)}. "
            f"Searches: {self.searches} ({self.searches / self.wall:.1f}/s).",
            "",
            "| call | ok | errors | p50 ms | p99 ms |",
            "|---|---:|---|---:|---:|",
        ]
        for kind in sorted(set(tally.latencies) | set(tally.errors)):
            done = tally.latencies.get(kind, [])
            failed = ", ".join(f"{code} {n}" for code, n in tally.errors.get(kind, {}).items()) or "0"
            lines.append(
                f"| {kind} | {len(done)} | {failed} | {percentile(done, 50):.0f} | {percentile(done, 99):.0f} |"
            )
        if self.warm_up_errors:
            lines += ["", "Warm-up searches that failed and were tried again (not counted above):", ""]
            lines += [f"- {message}" for message in self.warm_up_errors]
        if tally.first_error:
            lines += ["", "First message of each error:", ""]
            lines += [f"- {key}: {message}" for key, message in sorted(tally.first_error.items())]
        return "\n".join(lines) + "\n"


def drive(
    addresses: dict[str, str],
    *,
    clients: int,
    seconds: float,
    scratch: Path,
    probes: int = DEFAULT_PROBES,
    new_files: bool = False,
) -> Report:
    """`clients` threads, each with its own channel, for `seconds`; then the feedback check."""
    client = Client(query=addresses["query"])
    libraries = client.list_libraries()
    client.close()
    modalities = sorted({str(lib.meta.get("modality", "")) for lib in libraries})
    available = {"tabular": CSV, "xrd": xrd_scan(scratch / "silicon.xy")}
    inputs = {modality: available[modality] for modality in modalities if modality in available}
    skipped = [m for m in modalities if m not in available]
    # Untimed warm-up: the first search of a library after its import fits its estimator (up to a minute,
    # longer on a busy machine, where it can miss a deadline: tried again, and said in the report).
    warm_up = time.monotonic()
    warm_up_errors: list[str] = []
    client = Client(query=addresses["query"])
    try:
        for modality, path in inputs.items():
            for attempt in range(3):
                try:
                    client.search(path, k=5, probe_budget=probes, timeout=600)
                    break
                except ModsnetError as exc:
                    warm_up_errors.append(f"{modality}: {exc.code}: {str(exc).splitlines()[0][:160]}")
                    if attempt == 2:
                        raise
    finally:
        client.close()
    warm_up = time.monotonic() - warm_up
    tally = Tally()
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=run_client,
            args=(n, addresses["query"], inputs, probes, scratch if new_files else None, stop, tally),
            daemon=True,
        )
        for n in range(clients)
    ]
    started_utc = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")
    load_before = os.getloadavg()[0]
    wall = for_seconds(threads, stop, seconds)  # calls in flight finish; their time counts
    load_after = os.getloadavg()[0]
    names = [f"{lib.name} ({lib.meta.get('modality', '?')})" for lib in libraries]
    lost = missing_feedback(addresses, tally.feedback)
    return Report(
        *(clients, seconds, probes, new_files, wall, warm_up, warm_up_errors, names, inputs, skipped, tally, lost),
        started_utc=started_utc,
        load_average=(load_before, load_after),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--probes", type=int, default=DEFAULT_PROBES, help="probe budget of each search (0: none)")
    parser.add_argument(
        "--new-files", action="store_true", help="search a file no search has seen each time (default: the same file)"
    )
    parser.add_argument("--dir", type=Path, default=ROOT / ".cluster", help="the local cluster's folder")
    parser.add_argument("--out", type=Path, default=None, help="write the table here (markdown)")
    args = parser.parse_args(argv)
    state = localcluster.up(args.dir.resolve())  # idempotent: starts what is missing
    with tempfile.TemporaryDirectory(prefix="modsnet-load-") as scratch:
        report = drive(
            state["addresses"],
            clients=args.clients,
            seconds=args.seconds,
            probes=args.probes,
            new_files=args.new_files,
            scratch=Path(scratch),
        )
    text = report.markdown()
    print(text)
    if args.out:
        # Notes written by hand below the marker (profiles, before/after runs) survive a new run.
        kept = args.out.read_text().partition(KEEP_MARKER)[2] if args.out.is_file() else ""
        args.out.write_text(text + ("\n" + KEEP_MARKER + kept if kept else ""))
    return 1 if report.errors or report.lost else 0


if __name__ == "__main__":
    sys.exit(main())
