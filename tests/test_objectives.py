"""Objectives (best score, score per cost, Pareto front) and hardware profiles: the ranking on hand-made
sets, then end to end through the embedded cluster by the SDK, a raw gRPC stub and the CLI."""

from __future__ import annotations

import io
import json
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pandas as pd
import pytest
from google.protobuf.json_format import ParseDict
from synthetic import make_table
from test_cli import modsnet

from modsnet.cli import print_search
from modsnet.data.graph import Constraints, Cost, ModelNode, Objective
from modsnet.data.profiles import PROFILES, combine, objective_named, profile_named
from modsnet.embedded import EmbeddedCluster
from modsnet.runtime.convert import objective_from_pb
from modsnet.runtime.errors import InvalidArgument
from modsnet.v1 import common_pb2 as pb
from modsnet.v1 import query_pb2 as qpb
from modsnet.v1 import query_pb2_grpc, recommender_pb2, recommender_pb2_grpc
from services.recommender import objectives
from services.recommender.estimators.base import Prediction

# ------------------------------------------------------------------------------------------------ the ranking


def brute_layers(gains: list[float], costs: list[float]) -> list[int]:
    """Fronts by the definition: peel off the non-dominated points, again and again."""
    left, layers, front = set(range(len(gains))), [0] * len(gains), 0

    def dominates(a: int, b: int) -> bool:
        return gains[a] >= gains[b] and costs[a] <= costs[b] and (gains[a] > gains[b] or costs[a] < costs[b])

    while left:
        top = {i for i in left if not any(dominates(j, i) for j in left)}
        for i in top:
            layers[i] = front
        left -= top
        front += 1
    return layers


def test_pareto_layers_match_the_definition_with_ties() -> None:
    rng = random.Random(7)
    for _ in range(300):
        n = rng.randint(1, 14)
        # Few distinct values, so equal gains, equal costs and equal points are common.
        gains = [float(rng.randint(0, 4)) for _ in range(n)]
        costs = [float(rng.randint(1, 4)) for _ in range(n)]
        assert objectives.pareto_layers(gains, costs) == brute_layers(gains, costs), (gains, costs)


def models_with(costs: dict[str, Cost]) -> dict[str, ModelNode]:
    return {m: ModelNode("lib", m, {"family": "tree" if m < "d" else "linear"}, cost) for m, cost in costs.items()}


def predictions(scores: dict[str, float]) -> list[Prediction]:
    return [Prediction(m, s, 0.01) for m, s in scores.items()]


# a: best score, no recorded memory; b, c: equal points; d: cheapest; e: dominated by d (same cost, lower score);
# f: dominated by b and c (same score, more memory); g: dominated by d.
HAND_MADE = {
    "a": (0.95, Cost(1.0, 0.002, 0.0)),
    "b": (0.90, Cost(2.0, 0.004, 3e6)),
    "c": (0.90, Cost(2.0, 0.004, 3e6)),
    "d": (0.80, Cost(0.5, 0.0002, 1e6)),
    "e": (0.70, Cost(0.5, 0.0001, 1e6)),
    "f": (0.90, Cost(0.0, 0.008, 5e6)),
    "g": (0.75, Cost(3.0, 0.0005, 2e6)),
}
SCORES = {m: s for m, (s, _) in HAND_MADE.items()}
MODELS = models_with({m: c for m, (_, c) in HAND_MADE.items()})


def test_the_pareto_front_of_a_hand_made_set_with_ties_and_a_missing_cost() -> None:
    selection = objectives.select(
        predictions(SCORES), MODELS, Constraints(), Objective("pareto", "memory_bytes"), sign=1.0
    )
    assert selection.front == {"b", "c", "d"}
    ranked = [p.model_id for p in selection.ranking]
    assert ranked[:3] == ["b", "c", "d"]  # the front, best score first (b and c tie: by id)
    assert set(ranked[3:]) == {"f", "g", "e"} and "a" not in ranked  # a has no recorded memory: not free
    assert [p.model_id for p in selection.missing_cost] == ["a"]
    pick = objectives.choose(selection, [], Objective("pareto", "memory_bytes"), higher_is_better=True, k=3)
    assert pick is not None and pick.model_id == "b" and "Pareto front of score against memory" in pick.reason
    found = objectives.removals(
        selection, ranked[:3], 0.90, Objective("pareto", "memory_bytes"), Constraints(), {}, sign=1.0, k=3
    )
    missing = next(r for r in found if r.reason == "missing-cost")
    assert (missing.removed, missing.better, missing.best_score, missing.model_ids) == (1, 1, 0.95, ["a"])
    assert missing.explanation == (
        "no recorded memory, so left out of the pareto (memory) ranking (never ranked as free): 1 model scoring"
        " up to 0.950 (top pick 0.900), 1 of them predicted better: a"
    )
    # The best-score top 3 among models with a cost is b, c, f: f is not shown, and is no better than b.
    passed = next(r for r in found if r.reason == "objective")
    assert (passed.removed, passed.better, passed.model_ids) == (1, 0, ["f"])
    assert passed.explanation.startswith("objective pareto (memory) left out, of the best-score top 3, 1 model scoring")


def test_score_per_cost_floors_tiny_costs_and_leaves_out_unknown_ones() -> None:
    objective = Objective("score-per-cost", "inference_seconds")
    selection = objectives.select(predictions(SCORES), MODELS, Constraints(), objective, sign=1.0)
    ranked = [p.model_id for p in selection.ranking]
    # d (0.2 ms), e (0.1 ms) and g (0.5 ms) are all under the 1 ms floor: the score decides among them; d's
    # 0.8 per ms beats a's 0.95 per 2 ms. Every model has an inference cost here.
    assert ranked == ["d", "g", "e", "a", "b", "c", "f"]
    assert selection.values["d"] == pytest.approx(0.80 / 1e-3) and selection.values["a"] == pytest.approx(0.95 / 2e-3)
    objective = Objective("score-per-cost", "train_seconds")
    selection = objectives.select(predictions(SCORES), MODELS, Constraints(), objective, sign=1.0)
    assert [p.model_id for p in selection.missing_cost] == ["f"]  # no recorded training time
    assert "f" not in [p.model_id for p in selection.ranking]
    pick = objectives.choose(selection, [], objective, higher_is_better=True, k=2)
    assert pick is not None and pick.model_id == "d" and not pick.measured
    with pytest.raises(InvalidArgument, match="lower is better"):
        objectives.check(objective, higher_is_better=False, library="errors")


def test_each_limit_says_what_it_removed_against_the_top_pick() -> None:
    requested = Constraints(max_train_seconds=1.5, exclude_models=frozenset({"a", "f"}))
    limits, sources = combine(requested, PROFILES["edge"])
    selection = objectives.select(predictions(SCORES), MODELS, limits, Objective(), sign=1.0)
    assert [p.model_id for p in selection.ranking] == ["d", "e"]
    found = objectives.removals(selection, ["d", "e"], 0.80, Objective(), limits, sources, sign=1.0, k=2)
    # Train limit first (the order of the limits), then the exclusions; edge's limits removed nothing here.
    train, exclude = found
    assert (train.reason, train.source, train.removed, train.better) == ("max-train-seconds", "request", 3, 2)
    assert train.model_ids == ["b", "c", "g"] and train.best_score == 0.90
    assert train.explanation == (
        "max-train-seconds 1.5 removed 3 models scoring up to 0.900 (top pick 0.800), 2 of them predicted better"
    )
    assert (exclude.reason, exclude.model_ids, exclude.better) == ("exclude", ["a", "f"], 2)
    # A model failing two limits counts under each: g trains 3 s and is now excluded too.
    both = Constraints(max_train_seconds=1.5, exclude_models=frozenset({"g"}))
    selection = objectives.select(predictions(SCORES), MODELS, both, Objective(), sign=1.0)
    assert selection.excluded == 3 and [len(selection.removed[n]) for n in ("max-train-seconds", "exclude")] == [3, 1]
    # With a profile: the request's 1 ms is stricter than edge's 10 ms, so the request removed a, b, c and f.
    limits, sources = combine(Constraints(max_inference_seconds=0.001), PROFILES["edge"])
    selection = objectives.select(predictions(SCORES), MODELS, limits, Objective(), sign=1.0)
    assert [p.model_id for p in selection.ranking] == ["d", "g", "e"]
    (inference,) = objectives.removals(selection, ["d"], 0.80, Objective(), limits, sources, sign=1.0, k=1)
    assert (inference.reason, inference.source, inference.removed, inference.better) == (
        "max-inference-seconds",
        "request",
        4,
        4,
    )


def test_a_profile_combines_with_the_request_the_stricter_winning() -> None:
    edge = profile_named("edge")
    assert edge is not None
    limits, sources = combine(Constraints(max_inference_seconds=0.005), edge)
    assert (limits.max_inference_seconds, sources["max-inference-seconds"]) == (0.005, "request")
    assert (limits.max_memory_bytes, sources["max-memory-bytes"]) == (50e6, "profile edge")
    limits, sources = combine(Constraints(max_inference_seconds=1.0, require_metadata={"family": "tree"}), edge)
    assert (limits.max_inference_seconds, sources["max-inference-seconds"]) == (0.010, "profile edge")
    assert limits.require_metadata == {"family": "tree"} and limits.max_train_seconds == 0.0
    assert combine(None, None) == (Constraints(), {n: "request" for n in (*sources,)})
    with pytest.raises(InvalidArgument, match="profile 'edgy' is not a profile; the profiles are cpu-small, edge, gpu"):
        profile_named("edgy")


def test_objective_names_and_their_wire_form_are_checked() -> None:
    assert objective_named("per-memory") == Objective("score-per-cost", "memory_bytes")
    assert objective_named("pareto") == Objective("pareto", "inference_seconds")
    assert objective_named("pareto", "train-seconds") == Objective("pareto", "train_seconds")
    with pytest.raises(InvalidArgument, match="objective 'cheap' is not one of score, per-train-seconds"):
        objective_named("cheap")
    with pytest.raises(InvalidArgument, match="pareto cost 'disk' is not one of train-seconds"):
        objective_named("pareto", "disk")
    with pytest.raises(InvalidArgument, match=r"objective\.kind: 7 is not one of SCORE, SCORE_PER_COST, PARETO"):
        objective_from_pb(pb.Objective(kind=7))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=r"objective\.cost: PARETO ranks by a cost; set one of TRAIN_SECONDS"):
        objective_from_pb(pb.Objective(kind=pb.Objective.PARETO))
    assert objective_from_pb(pb.Objective()) == Objective()


def test_with_no_model_left_every_removed_one_counts_as_better() -> None:
    # a has no recorded memory: it passes a memory limit (as unknown costs always have), so it is excluded.
    limits = Constraints(max_memory_bytes=10.0, exclude_models=frozenset({"a"}))
    selection = objectives.select(predictions(SCORES), MODELS, limits, Objective(), sign=1.0)
    assert selection.ranking == [] and objectives.choose(selection, [], Objective(), higher_is_better=True, k=3) is None
    memory, _ = objectives.removals(selection, [], None, Objective(), limits, {}, sign=1.0, k=3)
    assert (memory.removed, memory.better) == (6, 6) and memory.explanation.endswith("(no model left)")


# -------------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def costly(tmp_path_factory: pytest.TempPathFactory, synth_bundle: Path) -> Iterator[EmbeddedCluster]:
    """One cluster (kNN estimator: the ranking under test comes after the estimator) holding the synthetic
    library with spread costs: model j infers in 5 ms x (j + 1); m4 has no recorded training time."""
    home = tmp_path_factory.mktemp("objectives")
    bundle = Path(shutil.copytree(synth_bundle, home / "costly"))
    records = pd.read_csv(bundle / "interactions.csv")
    j = records["model_id"].str[1:].astype(int)
    records["inference_seconds"] = 0.005 * (j + 1)
    records.loc[records["model_id"] == "m4", "train_seconds"] = 0.0
    records.to_csv(bundle / "interactions.csv", index=False)
    make_table(150, 6, 3, 7).to_csv(home / "mine.csv", index=False)
    with EmbeddedCluster(home / "home", import_builtins=False, estimator="knn") as running:
        running.client.import_library(bundle)
        yield running


def test_the_sdk_ranks_by_an_objective_within_a_profile(costly: EmbeddedCluster) -> None:
    csv = costly.home.parent / "mine.csv"
    plain = costly.client.search(csv, k=6, probe_budget=0)
    best = {m.model_id: m.predicted_score for m in plain.models}
    answer = costly.client.search(csv, k=6, probe_budget=0, objective="pareto", pareto_cost="inference-seconds")
    assert answer.objective == pb.Objective(kind=pb.Objective.PARETO, cost=pb.Objective.INFERENCE_SECONDS)
    points = [(m.predicted_score, m.cost.inference_seconds) for m in answer.models]
    layers = brute_layers([s for s, _ in points], [c for _, c in points])
    assert [m.on_front for m in answer.models] == [layer == 0 for layer in layers]
    assert answer.models[0].on_front and answer.recommendation.model_id == answer.models[0].model_id
    # edge: inference <= 10 ms keeps m0 and m1; the answer says what the limit cost.
    answer = costly.client.search(csv, k=3, probe_budget=0, profile="edge", objective="per-train-seconds")
    assert [m.model_id for m in answer.models] == ["m0", "m1"] and answer.profile == "edge"
    assert answer.constraints.max_inference_seconds == 0.010 and answer.excluded_by_constraints == 4
    (removal,) = answer.removals
    assert (removal.reason, removal.source, removal.removed) == ("max-inference-seconds", "profile edge", 4)
    top = answer.models[0].predicted_score
    assert removal.better == sum(1 for m, s in best.items() if m not in ("m0", "m1") and s > top)
    assert removal.best_score == max(s for m, s in best.items() if m not in ("m0", "m1"))
    assert answer.models[0].objective_value == pytest.approx(best["m0"] / 0.1)
    # Without the profile, m4 (no recorded training time) is named, not ranked as free.
    answer = costly.client.search(csv, k=6, probe_budget=0, objective="per-train-seconds")
    assert "m4" not in [m.model_id for m in answer.models]
    missing = next(r for r in answer.removals if r.reason == "missing-cost")
    assert list(missing.model_ids) == ["m4"] and "no recorded train seconds" in missing.explanation
    with pytest.raises(InvalidArgument, match="the profiles are cpu-small, edge, gpu, server"):
        costly.client.search(csv, profile="tiny")
    assert [p.name for p in costly.client.list_profiles()] == sorted(PROFILES)


def test_the_grpc_api_takes_an_objective_and_a_profile_and_names_bad_ones(costly: EmbeddedCluster) -> None:
    csv = (costly.home.parent / "mine.csv").read_bytes()

    def search(header: qpb.SearchHeader) -> qpb.SearchResponse:
        messages = iter([qpb.SearchRequest(header=header), qpb.SearchRequest(chunk=csv)])
        with grpc.insecure_channel(costly.addresses["query"]) as channel:
            return query_pb2_grpc.QueryStub(channel).Search(messages, timeout=60)

    header = qpb.SearchHeader(
        library="synth",
        k=2,
        filename="mine.csv",
        profile="cpu-small",
        objective=pb.Objective(kind=pb.Objective.SCORE_PER_COST, cost=pb.Objective.MEMORY_BYTES),
        constraints=pb.Constraints(require_metadata={"family": "up"}),
    )
    answer = search(header)
    assert {m.model_id for m in answer.models} <= {"m0", "m2", "m4"} and answer.profile == "cpu-small"
    assert [r.reason for r in answer.removals] == ["require-metadata"] and answer.removals[0].removed == 3
    for bad, field, names in (
        (qpb.SearchHeader(filename="mine.csv", profile="fast"), "profile 'fast'", "cpu-small, edge, gpu, server"),
        (qpb.SearchHeader(filename="mine.csv", objective=pb.Objective(kind=9)), "objective.kind: 9", "PARETO"),  # type: ignore[arg-type]
    ):
        with pytest.raises(grpc.RpcError) as refused:
            search(bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in refused.value.details() and names in refused.value.details()
    request = recommender_pb2.RecommendRequest(library="synth", k=3, profile="laptop")
    with grpc.insecure_channel(costly.addresses["recommender"]) as channel, pytest.raises(grpc.RpcError) as refused:
        recommender_pb2_grpc.RecommenderStub(channel).Recommend(request, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "profile 'laptop'" in refused.value.details()
    with grpc.insecure_channel(costly.addresses["query"]) as channel:
        listed = query_pb2_grpc.QueryStub(channel).ListProfiles(qpb.ListProfilesRequest(), timeout=10)
    edge = next(p for p in listed.profiles if p.name == "edge")
    assert (edge.constraints.max_inference_seconds, edge.constraints.max_memory_bytes) == (0.010, 50_000_000)


def test_the_cli_prints_the_objective_column_the_front_and_what_was_left_out(costly: EmbeddedCluster) -> None:
    query = ["--query-addr", costly.addresses["query"]]
    csv = str(costly.home.parent / "mine.csv")
    unused = costly.home.parent / "unused"
    done = modsnet(*query, "search", csv, "-k", "4", "--probe-budget", "0", "--objective", "pareto",
                   "--pareto-cost", "train-seconds", "--max-train-seconds", "0.25", "--json", home=unused)  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["objective"] == {"kind": "PARETO", "cost": "TRAIN_SECONDS"}
    assert [r["reason"] for r in answer["removals"]] == ["max-train-seconds", "missing-cost"]
    out = io.StringIO()  # the table, as the same command prints it without --json
    print_search(ParseDict(answer, qpb.SearchResponse()), out=out)
    text = out.getvalue()
    header = next(line for line in text.splitlines() if line.startswith("#"))
    assert header.split()[:5] == ["#", "model", "predicted", "±", "front"]
    assert "objective: the Pareto front of predicted score against 'train s' first (front: *)" in text
    assert "Left out:\n  max-train-seconds 0.25 removed 3 models" in text
    listed = modsnet(*query, "profiles", home=unused)
    assert listed.returncode == 0 and listed.stdout.splitlines()[2].split()[:4] == ["edge", "-", "10", "ms"]
    assert not unused.exists()
