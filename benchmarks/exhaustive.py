"""The cost of exhaustive probing against the search's own (issue 13, point 5), and what each ends with.

    .venv/bin/python benchmarks/exhaustive.py [FILE ...] [--library tabzoo] [--budget 5] [--repeat 3]
        [--out docs/benchmarks-exhaustive.md]

Without files: `examples/saheart.csv` and a synthetic 10,000-row x 20-column table (tests/synthetic.py).
For each table, on one warm embedded cluster:
1. the search (the library's estimator trained first): `--repeat` warm searches with the default probe budget
   (after one untimed search), wall time p50 as the user sees it, and what the search recommends (its
   `recommendation`: the best probed model or the top-1);
2. exhaustive probing: every model of the library measured on the same table by the search's own probe
   (`modsnet.models.probing.measure`: the library's metric on the probe's stratified sample, the same per-probe
   time limit), one after another in this process: its wall and CPU seconds;
3. the ratio of the two, and the decisions compared on the exhaustive measurements (the probe's metric on
   the probe's sample): the search's recommendation, its best probe, and popular-B (the B models with the best
   mean over the library's records, the best of them kept) against the best of all, as regret.
Writes a markdown page and prints it. Seconds are wall seconds on this machine (shared: compare the ratio).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from synthetic import make_table  # noqa: E402

from modsnet.client import DEFAULT_PROBES  # noqa: E402
from modsnet.data.exemplar import load_exemplar  # noqa: E402
from modsnet.embedded import EmbeddedCluster  # noqa: E402
from modsnet.models import probing  # noqa: E402
from modsnet.runtime.stubs import KnowledgeClient, RecommenderClient  # noqa: E402


def popular(snapshot, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    """The `count` models with the best mean score over the library's records (what a user tries without ModsNet)."""
    scores: dict[str, list[float]] = defaultdict(list)
    for record in snapshot.interactions:
        scores[record.model_id].append(record.score)
    means = {m: statistics.fmean(v) for m, v in scores.items()}
    return sorted(means, key=lambda m: -means[m])[:count]


def exhaustive(snapshot, file: Path) -> tuple[dict[str, float], float, float, int]:  # type: ignore[no-untyped-def]
    """Every probeable model measured by the search's probe: scores, wall seconds, CPU seconds, models tried."""
    exemplar = load_exemplar(file, name=file.name)
    models = [m for m in snapshot.models if probing.can_probe(snapshot.library, m)]
    scores: dict[str, float] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    for model in models:
        for probe in probing.measure(snapshot.library, exemplar, [(model, None)], budget_seconds=probing.PROBE_LIMIT_S):
            scores[probe.model_id] = probe.value
    return scores, time.perf_counter() - wall, time.process_time() - cpu, len(models)


def table_section(
    cluster: EmbeddedCluster, knowledge: KnowledgeClient, file: Path, args: argparse.Namespace
) -> list[str]:
    cluster.client.search(file, library=args.library, probe_budget=args.budget)  # warm: estimator, caches
    seconds, answers = [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        answers.append(cluster.client.search(file, library=args.library, probe_budget=args.budget))
        seconds.append(time.perf_counter() - start)
    search_seconds = statistics.median(seconds)
    answer = answers[-1]
    probed = {p.model_id: p.value for p in answer.probes}
    pick = answer.recommendation.model_id or (answer.models[0].model_id if answer.models else "")

    snapshot = knowledge.snapshot(args.library)
    truth, wall, cpu, tried = exhaustive(snapshot, file)
    best_id = max(truth, key=truth.__getitem__)
    best = truth[best_id]

    def regret(model_ids: list[str]) -> str:
        known = [truth[m] for m in model_ids if m in truth]
        return f"{best - max(known):.3f}" if known else "– (not measured)"

    measurements = len(probed) + (pick not in probed)  # the probes, then the pick if no probe was it
    rows = [
        f"### {file.name}",
        "",
        "| | seconds (wall) | models measured | ratio to the search |",
        "|---|---:|---:|---:|",
        f"| search, {args.budget} probes (p50 of {args.repeat}, warm) | {search_seconds:.2f} | {len(probed)} | 1 |",
        f"| exhaustive probing, one after another | {wall:.1f} (CPU {cpu:.1f}) | {len(truth)} of {tried} "
        f"| {wall / search_seconds:.0f}x |",
        "",
        f"Decisions on the exhaustive measurements (the probe's metric on its sample; best: `{best_id}` {best:.3f}):",
        "",
        "| strategy | measurements | kept | regret |",
        "|---|---:|---|---:|",
        f"| the search's recommendation | {measurements} | `{pick}` | {regret([pick])} |",
        f"| the best of the search's probes | {len(probed)} | "
        f"`{max(probed, key=probed.__getitem__) if probed else '–'}` | {regret(list(probed))} |",
    ]
    for count in sorted({args.budget, measurements}):
        chosen = popular(snapshot, count)
        kept = max((m for m in chosen if m in truth), key=truth.__getitem__, default="–")
        rows.append(f"| popular-{count} | {count} | `{kept}` | {regret(chosen)} |")
    rows += [f"| exhaustive | {len(truth)} | `{best_id}` | 0.000 |", ""]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--library", default="tabzoo")
    parser.add_argument("--budget", type=int, default=DEFAULT_PROBES, help="the search's probe budget")
    parser.add_argument("--repeat", type=int, default=3, help="timed searches per table")
    parser.add_argument("--out", type=Path, help="markdown file to write")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="modsnet-exhaustive-") as tmp:
        work = Path(tmp)
        files = list(args.files)
        if not files:
            wide = work / "wide-10000x20.csv"
            make_table(10_000, 19, 3, 5).to_csv(wide, index=False)  # 19 features + the class: 20 columns
            files = [ROOT / "examples" / "saheart.csv", wide]
        lines = [
            "# Exhaustive probing against the search (issue 13)",
            "",
            f"`{shlex.join(['python', 'benchmarks/exhaustive.py', *(argv if argv is not None else sys.argv[1:])])}`, "
            f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f} at the start "
            "(2 shared cores: compare the ratios).",
            "",
        ]
        with EmbeddedCluster(work / "home") as cluster:
            knowledge = KnowledgeClient(cluster.addresses["knowledge"])
            # The estimator trained first, so every timed search is served by it (not by a stand-in).
            RecommenderClient(cluster.addresses["recommender"], timeout=7200).train(args.library)
            for file in files:
                lines += table_section(cluster, knowledge, file, args)
        lines.append(
            f"Whole run: {time.perf_counter() - started:.0f} s, load average {os.getloadavg()[0]:.1f} at the end."
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
