"""The `modsnet` command's part for objectives and hardware profiles: the `search` flags that name them, the
lines a search prints about them, and `modsnet profiles`.

Kept apart from `cli.py` so that the command's main file only calls in here. Imports are light (no
numerical stack): the CLI imports this module at start.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from modsnet.data.profiles import COST_NAMES, DEFAULT_PARETO_COST, OBJECTIVE_NAMES, PROFILES, Profile, objective_named
from modsnet.v1 import common_pb2 as pb
from modsnet.v1 import query_pb2 as qpb


def add_search_arguments(search: argparse.ArgumentParser) -> None:
    search.add_argument(
        "--objective",
        choices=OBJECTIVE_NAMES,
        default="score",
        help="what to rank by: the best predicted score (default), the best score per unit of a cost "
        "(per-train-seconds, per-inference-seconds, per-memory; costs under 1 ms or 1 MB count as 1 ms or "
        "1 MB), or the Pareto front of score against --pareto-cost",
    )
    search.add_argument(
        "--pareto-cost",
        choices=tuple(COST_NAMES),
        help=f"the cost of --objective pareto (default {DEFAULT_PARETO_COST})",
    )
    search.add_argument(
        "--profile",
        default="",
        help="a hardware profile whose limits combine with the --max-* flags, the stricter winning "
        "(`modsnet profiles` lists them: " + ", ".join(sorted(PROFILES)) + ")",
    )


def check_search_arguments(args: argparse.Namespace) -> None:
    """InvalidArgument for a flag combination no service would take (a pareto cost without pareto), before
    any service is started."""
    objective_named(args.objective, args.pareto_cost or "")


# -- a search's answer -------------------------------------------------------------------------------------

_COST_FIELDS = {
    pb.Objective.TRAIN_SECONDS: ("train_seconds", "train s", "per train s"),
    pb.Objective.INFERENCE_SECONDS: ("inference_seconds", "infer s", "per infer s"),
    pb.Objective.MEMORY_BYTES: ("memory_bytes", "size", "per MB"),
}


def objective_line(response: qpb.SearchResponse) -> str | None:
    """One line on the objective and the profile; None for the plain default (best score, no profile)."""
    objective = response.objective
    parts = []
    if objective.kind == pb.Objective.SCORE_PER_COST:
        _, _, per = _COST_FIELDS[objective.cost]
        floor = "1 MB" if objective.cost == pb.Objective.MEMORY_BYTES else "1 ms"
        parts.append(f"objective: best predicted score {per} first (costs under {floor} count as {floor})")
    elif objective.kind == pb.Objective.PARETO:
        _, column, _ = _COST_FIELDS[objective.cost]
        parts.append(f"objective: the Pareto front of predicted score against '{column}' first (front: *)")
    if response.profile:
        c = response.constraints
        limits = [
            f"{name} <= {value}"
            for name, value in (
                ("train", _seconds(c.max_train_seconds)),
                ("inference", _seconds(c.max_inference_seconds)),
                ("memory", _megabytes(c.max_memory_bytes)),
            )
            if value
        ]
        parts.append(f"profile {response.profile}: " + (", ".join(limits) or "no limits"))
    return "; ".join(parts) or None


def extra_column(response: qpb.SearchResponse) -> tuple[str, list[str]] | None:
    """The column the objective ranks by (value per cost, or front membership), one cell per model."""
    objective = response.objective
    if objective.kind == pb.Objective.SCORE_PER_COST:
        _, _, per = _COST_FIELDS[objective.cost]
        return per, [f"{m.objective_value:.4g}" for m in response.models]
    if objective.kind == pb.Objective.PARETO:
        return "front", ["*" if m.on_front else "" for m in response.models]
    return None


def removal_lines(response: qpb.SearchResponse) -> list[str]:
    return [f"  {r.explanation}" for r in response.removals]


def _seconds(value: float) -> str:
    if not value:
        return ""
    for unit, size in (("h", 3600.0), ("min", 60.0), ("s", 1.0)):
        if value >= size:
            return f"{value / size:g} {unit}"
    return f"{value * 1000:g} ms"


def _megabytes(value: float) -> str:
    if not value:
        return ""
    return f"{value / 1e9:g} GB" if value >= 1e9 else f"{value / 1e6:g} MB"


# -- modsnet profiles ----------------------------------------------------------------------------------------


def print_profiles(profiles: list[Profile], *, as_json: bool, out: TextIO = sys.stdout) -> None:
    if as_json:
        rows = [
            {
                "name": p.name,
                "description": p.description,
                "max_train_seconds": p.max_train_seconds,
                "max_inference_seconds": p.max_inference_seconds,
                "max_memory_bytes": p.max_memory_bytes,
            }
            for p in profiles
        ]
        print(json.dumps(rows, indent=2), file=out)
        return
    table = [("profile", "train", "inference", "memory", "for")]
    for p in profiles:
        table.append(
            (
                p.name,
                _seconds(p.max_train_seconds) or "-",
                _seconds(p.max_inference_seconds) or "-",
                _megabytes(p.max_memory_bytes) or "-",
                p.description,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]).rstrip(), file=out)
    print(
        "\nLimits are maxima (train: seconds to fit on one dataset; inference: seconds over one dataset's "
        "evaluation split; memory: the trained model's size); with --max-* flags the stricter of each wins.",
        file=out,
    )
