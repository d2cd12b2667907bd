"""Hardware profiles and objective names: the one place that defines them.

A profile is a named set of cost limits for a kind of hardware (`edge`: inference <= 10 ms, memory <= 50
MB). A search names one and its limits combine with the search's own constraints, the stricter of each
winning (`combine`), so `--profile edge --max-inference-seconds 0.005` asks for 5 ms and
`--profile edge --max-inference-seconds 1` still gets 10 ms. The costs are those the libraries record: mean
seconds to train on one dataset, mean seconds of inference over one dataset's evaluation split, the trained
model's size in bytes. A model without a recorded cost passes a limit on it, as with explicit constraints.

Objectives have one name each for people (the CLI's `--objective`, the SDK's `objective=`): `score`,
`per-train-seconds`, `per-inference-seconds`, `per-memory` and `pareto` (with a cost: `train-seconds`,
`inference-seconds`, `memory`); `objective_named` turns them into the `Objective` record.
"""

from __future__ import annotations

from dataclasses import dataclass

from modsnet.runtime.errors import InvalidArgument

from .graph import Constraints, Objective


@dataclass(frozen=True)
class Profile:
    name: str
    description: str  # one line: the hardware it stands for
    max_train_seconds: float = 0.0  # 0: no limit
    max_inference_seconds: float = 0.0
    max_memory_bytes: float = 0.0

    @property
    def constraints(self) -> Constraints:
        return Constraints(self.max_train_seconds, self.max_inference_seconds, self.max_memory_bytes)


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "cpu-small",
            "a laptop or a small CPU instance",
            max_train_seconds=60.0,
            max_inference_seconds=0.1,
            max_memory_bytes=500e6,
        ),
        Profile(
            "edge",
            "a phone or an embedded board",
            max_inference_seconds=0.010,
            max_memory_bytes=50e6,
        ),
        Profile(
            "gpu",
            "one 16 GB GPU: the model fits in its memory, training takes up to a day",
            max_train_seconds=86_400.0,
            max_memory_bytes=16e9,
        ),
        Profile(
            "server",
            "a CPU server",
            max_train_seconds=3600.0,
            max_inference_seconds=1.0,
            max_memory_bytes=8e9,
        ),
    )
}


def profile_named(name: str) -> Profile | None:
    """The profile of that name; None for ""; InvalidArgument naming the field and the profiles otherwise."""
    if not name:
        return None
    found = PROFILES.get(name)
    if found is None:
        raise InvalidArgument(f"profile {name!r} is not a profile; the profiles are {', '.join(sorted(PROFILES))}")
    return found


# The cost limits of `Constraints` and the names a removal gives them.
_LIMIT_FIELDS = {
    "max-train-seconds": "max_train_seconds",
    "max-inference-seconds": "max_inference_seconds",
    "max-memory-bytes": "max_memory_bytes",
}


def combine(requested: Constraints | None, profile: Profile | None) -> tuple[Constraints, dict[str, str]]:
    """The limits in effect, and where each came from ("request" or "profile NAME"), by limit name.

    Per cost limit the stricter (smaller non-zero) value wins; a tie is the request's. Exclusions and required
    metadata are the request's alone (profiles limit costs only).
    """
    requested = requested or Constraints()
    sources = {"exclude": "request", "require-metadata": "request"}
    if profile is None:
        return requested, {**sources, **{name: "request" for name in _LIMIT_FIELDS}}
    values = {}
    for name, attribute in _LIMIT_FIELDS.items():
        mine, theirs = getattr(requested, attribute), getattr(profile, attribute)
        if theirs and not (mine and mine <= theirs):
            values[attribute], sources[name] = theirs, f"profile {profile.name}"
        else:
            values[attribute], sources[name] = mine, "request"
    return (
        Constraints(
            exclude_models=requested.exclude_models, require_metadata=dict(requested.require_metadata), **values
        ),
        sources,
    )


# -- objective names -------------------------------------------------------------------------------------

COST_NAMES = {"train-seconds": "train_seconds", "inference-seconds": "inference_seconds", "memory": "memory_bytes"}
OBJECTIVE_NAMES = ("score", "per-train-seconds", "per-inference-seconds", "per-memory", "pareto")
DEFAULT_PARETO_COST = "inference-seconds"  # what running a chosen model costs again and again


def objective_named(name: str = "score", pareto_cost: str = "") -> Objective:
    """The objective a person names: `score`, `per-train-seconds`, `per-inference-seconds`, `per-memory`, or
    `pareto` against `pareto_cost` (train-seconds, inference-seconds or memory; default inference-seconds)."""
    name = name or "score"
    if name not in OBJECTIVE_NAMES:
        raise InvalidArgument(f"objective {name!r} is not one of {', '.join(OBJECTIVE_NAMES)}")
    if pareto_cost and name != "pareto":
        raise InvalidArgument(f"a pareto cost goes with the objective pareto, not {name!r}")
    if name == "score":
        return Objective()
    if name == "pareto":
        cost = pareto_cost or DEFAULT_PARETO_COST
        if cost not in COST_NAMES:
            raise InvalidArgument(f"pareto cost {cost!r} is not one of {', '.join(COST_NAMES)}")
        return Objective("pareto", COST_NAMES[cost])
    return Objective("score-per-cost", COST_NAMES[name.removeprefix("per-")])


def objective_name(objective: Objective) -> str:
    """The name people use for an objective: `score`, `per-memory`, `pareto (inference-seconds)`."""
    cost = {v: k for k, v in COST_NAMES.items()}.get(objective.cost, objective.cost)
    if objective.kind == "score-per-cost":
        return f"per-{cost}"
    if objective.kind == "pareto":
        return f"pareto ({cost})"
    return objective.kind
