"""What the probe-selector's diversity term buys: leave-one-dataset-out with probes, diversity off and on.

    .venv/bin/python benchmarks/probe_diversity.py [--libraries tabzoo xrdzoo oboe transfergraph-image
        transfergraph-text] [--diversity 0 0.5] [--budget 10] [--out docs/benchmarks-probes.md]

For each library, one evaluation run (`services.recommender.evaluation`, the same protocol and targets as
`modsnet eval NAME --with-probes`) with one GNN method per diversity value, so the rows compare like with
like: same targets, same folds, same seed. Diversity 0 is the paper's selector (the top `budget` models by
Score); the default (`services.recommender.probes.DIVERSITY`) trades Score against how alike the picked
models behave across the library's datasets. The built-in libraries are read from modsnet/libraries; the
TransferGraph and OBOE records are imported from ../shared/data (skipped with a note when it is absent).
Writes a markdown page and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

from modsnet.data.bundle import Bundle, read_bundle
from services.recommender.estimators.gnn import GnnConfig
from services.recommender.evaluation import (
    EvaluationReport,
    default_targets,
    evaluate,
    graph_from_bundle,
    modsnet_method,
)
from services.recommender.probes import DIVERSITY

ROOT = Path(__file__).resolve().parents[1]
BUILT_IN = ("tabzoo", "xrdzoo")
SHARED = ("oboe", "transfergraph-image", "transfergraph-text")
COLUMNS = ("pearson", "spearman", "weighted_tau", "p@1", "p@5", "regret@1", "regret@5")


def load(name: str, shared: Path, work: Path) -> Bundle | None:
    """The library as a bundle: built in, or imported from the shared records; None when they are absent."""
    if name in BUILT_IN:
        return read_bundle(ROOT / "modsnet" / "libraries" / name)
    if not shared.is_dir():
        return None
    from modsnet.offline.importers.oboe import import_oboe
    from modsnet.offline.importers.transfergraph import import_transfergraph

    if name == "oboe":
        import_oboe(shared / "oboe", work / name)
    else:
        modality = name.split("-", 1)[1]
        import_transfergraph(shared / "transfergraph" / modality, work / name, modality)  # type: ignore[arg-type]
    return read_bundle(work / name)


def run(bundle: Bundle, diversities: list[float], budget: int) -> EvaluationReport:
    snapshot, _ = graph_from_bundle(bundle)
    targets = default_targets(snapshot)
    methods = {
        f"diversity {d:g}": partial(modsnet_method, config=replace(GnnConfig(), probe_diversity=d)) for d in diversities
    }
    return evaluate(
        bundle,
        methods=list(methods),
        extra_methods=methods,
        targets=targets,
        with_probes=True,
        probe_budget=budget,
        fold_size=10 if len(targets) > 20 else 1,
    )


def section(report: EvaluationReport) -> list[str]:
    means = {r.method: r.means for r in report.results}
    head = f"## {report.library}: {len(report.targets)} targets, {report.folds} fits per method"
    head += f", probe budget {report.probe_budget}"
    lines = [head, "", "| selector | " + " | ".join(COLUMNS) + " | seconds |", "|---|" + "---:|" * (len(COLUMNS) + 1)]
    for result in report.results:
        cells = [_cell(means[result.method].get(c)) for c in COLUMNS]
        lines.append(f"| {result.method} | " + " | ".join(cells) + f" | {result.seconds:.0f} |")
    return [*lines, ""]


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--libraries", nargs="+", default=[*BUILT_IN, *SHARED])
    parser.add_argument("--diversity", nargs="+", type=float, default=[0.0, DIVERSITY])
    parser.add_argument("--budget", type=int, default=10)
    parser.add_argument("--shared-data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-probes.md")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    command = " ".join(["benchmarks/probe_diversity.py", *(shlex.quote(a) for a in (argv or sys.argv[1:]))])
    lines = [
        "# Probe-selector: diversity",
        "",
        f"`.venv/bin/python {command}`, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs shared with other work.",
        "",
        "Leave-one-dataset-out with probes (the protocol of `modsnet eval NAME --with-probes`); one run per",
        "library, so the rows share targets, folds and seed. `diversity 0`: the paper's probe-selector (the",
        "top models by Score); above 0: maximal marginal relevance, Score traded against the picked models'",
        "correlation across the library's datasets (`services/recommender/probes.py`). A probe is the",
        "target's recorded score (tabzoo, xrdzoo, OBOE: a real measurement) or recorded transferability",
        "score (TransferGraph: LogME or H-score).",
        "",
    ]
    with tempfile.TemporaryDirectory() as work:
        for name in args.libraries:
            bundle = load(name, args.shared_data, Path(work))
            if bundle is None:
                lines += [f"## {name}", "", f"skipped: {args.shared_data} is absent", ""]
                continue
            report = run(bundle, args.diversity, args.budget)
            lines += section(report)
            print("\n".join(section(report)), flush=True)
    lines.append(f"Whole benchmark: {time.perf_counter() - started:.0f} s.")
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
