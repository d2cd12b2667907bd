"""The estimator: a trained graph answering queries (inductive and transductive), under torch or ONNX Runtime."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from modsnet.data.graph import Snapshot

from ...probes import MEASURED, PROXY_KINDS, ProbeSelector, virtual_edges
from ..base import Evidence, Prediction, ProbeRecord, Scored
from .config import _Z_HIGH, _Z_LOW, NAME, QUERY_DATA_RELATIONS, FitInfo, GnnConfig
from .graph import _nearest
from .network import INPUTS
from .onnx_export import OnnxScorer, export_onnx, with_constants
from .training import TrainedGraph

# A scored dataset with fewer records is predicted from its neighbours, its records calibrating the rest:
# the mean and spread of two or three scores are no scale to turn predicted z into the metric with.
_OWN_SCALE_RECORDS = 5


@dataclass
class _Query:
    """The inputs of one query plus what turns its z back into the metric."""

    inputs: dict[str, np.ndarray]
    anchor: np.ndarray  # weights over scored datasets (sum 1) for the metric's mean and spread
    similarity: np.ndarray  # sim_D over scored datasets in [0, 1], for the probe-selector and evidence
    measured: dict[int, float] = field(default_factory=dict)  # model position -> measured score


def _positive_prefix(values: np.ndarray) -> int:
    """How many of `values` come before the first one <= 0 (NaN is not: it does not end the prefix)."""
    stops = np.flatnonzero(values <= 0)
    return int(stops[0]) if len(stops) else len(values)


class GnnEstimator(TrainedGraph):
    """Heterogeneous GNN estimator with the public surface of `KnnPopularityEstimator`."""

    name = NAME

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        probes: Sequence[ProbeRecord] = (),
        config: GnnConfig | None = None,
        evidence: int = 3,
        weights: Sequence[Mapping[str, Tensor]] | None = None,
        cancel: threading.Event | None = None,
        progress: Callable[[int, int], None] | None = None,
    ):
        """Fit on `snapshot`, or with `weights` (from `state()`) put trained members on it without training.

        Weights fit any snapshot of the same models and feature sets: only the node counts differ between
        graph versions, and the members' parameters do not depend on them. Loading them onto a newer
        version folds new records into the precomputed embeddings in seconds instead of a refit; weights
        of another shape raise `ValueError`.
        """
        start = time.perf_counter()
        config = config or GnnConfig()
        self.evidence_count = evidence
        self.interval_scale = 1.0  # σ's multiplier, set by calibration (services/recommender/calibration.py)
        torch.set_num_threads(config.threads)
        super().__init__(snapshot, probes, config, weights, cancel, progress)
        self.scorer: Any = None  # an OnnxScorer once `serve_onnx` ran; torch otherwise
        self.onnx_model: bytes | None = None  # what the scorer runs, when exported in memory
        self.fit_info = FitInfo(
            len(self.dataset_ids),
            len(self.model_ids),
            len(snapshot.interactions),
            self.feature_names,
            time.perf_counter() - start,
            self.config.members,
            [r[1] for r in self.relations],
            self.probe_kind,
        )

    # -- queries ------------------------------------------------------------------------------------

    def shared_features(self, features: Mapping[str, float]) -> list[str]:
        return [n for n in self.feature_names if n in features]

    def query(
        self,
        features: Mapping[str, float],
        *,
        known_dataset: str | None = None,
        distances: Mapping[str, float] | None = None,
        probes: Sequence[ProbeRecord] = (),
    ) -> _Query:
        """The query module's inputs for a dataset node that only receives messages.

        Its edges: `similar` from `distances` (or, for a node of the graph, its similarity rows),
        `near` from its features, `source_of` from models naming it, and with probes the virtual probe
        edges (`probed`, `probed_z`) and `agree`, the datasets on which the probed models ranked alike.
        """
        cfg = self.config
        known = self.node_index.get(known_dataset) if known_dataset else None
        n_nodes = len(self.nodes)
        x = (
            self.x_data[known : known + 1]
            if known is not None and not features
            else self.scaler.transform([dict(features)])
        )
        distance = self.distance[known].copy() if known is not None and not distances else np.full(n_nodes, np.inf)
        for d, value in (distances or {}).items():
            if d in self.node_index:
                distance[self.node_index[d]] = float(value)
        if known is not None:
            distance[known] = np.inf
        weights = {name: np.zeros(n_nodes) for name in QUERY_DATA_RELATIONS}
        order, w = _nearest(distance, cfg.neighbours)
        weights["similar"][order] = w
        order, w = self._near(x[0, :-1], exclude=known)
        weights["near"][self.rated[order]] = w
        no_probe = (np.zeros(0, dtype=np.int64), np.zeros(0))
        kind = self.edge_kind(probes)
        probe_index, probe_z = virtual_edges(probes, kind, self.model_index) if kind else no_probe
        if len(probe_index):
            order, w = self._agreeing(probe_index, probe_z, self.rated[self.rated != known])
            weights["agree"][order] = w
        sources = np.array(self.sources.get(known, []) if known is not None else [], dtype=np.int64)
        index = np.concatenate([sources, probe_index]).astype(np.int64)
        spans = {"source_of": slice(0, len(sources)), "probed": slice(len(sources), len(index))}
        values = {"source_of": np.ones(len(sources)), "probed": np.ones(len(probe_index)), "probed_z": probe_z}
        model_rows = []
        for rel in self.query_module.model_relations:
            row = np.zeros(max(1, len(index)))  # one silent edge to model 0 when there is none: no empty input
            span = spans.get(rel[1], spans["probed"])
            if span.stop > span.start:
                row[span] = values[rel[1]] / (span.stop - span.start)
            model_rows.append(row)
        data_rows = [weights[rel[1]] for rel in self.query_module.data_relations]
        inputs: dict[str, np.ndarray] = {
            "features": x.astype(np.float32),
            "dataset_weights": np.array(data_rows, dtype=np.float32).reshape(len(data_rows), n_nodes),
            "model_index": index if len(index) else np.zeros(1, dtype=np.int64),
            "model_weights": np.array(model_rows, dtype=np.float32).reshape(len(model_rows), max(1, len(index))),
        }
        combined = np.sum(list(weights.values()), axis=0)[self.rated]
        anchor = combined / combined.sum() if combined.sum() > 0 else np.full(len(self.rated), 1.0 / len(self.rated))
        similarity = anchor / anchor.max()
        measured = {}
        if cfg.probes:
            measured = {
                self.model_index[p.model_id]: p.value
                for p in probes
                if p.probe == MEASURED and p.model_id in self.model_index
            }
        return _Query(inputs, anchor, similarity, measured)

    def edge_kind(self, probes: Sequence[ProbeRecord]) -> str | None:
        """The probe kind that becomes edges: the kind learnt from, else a proxy of measured scores.

        An estimator that learnt from measured scores ("score") also takes a proxy kind (XRD finders'
        agreement with each other): both rank models on the query, and edges only use that ranking (z
        among the probed). A proxy is never returned as the model's score.
        """
        if not self.config.probes:
            return None
        kinds = {p.probe for p in probes if p.model_id in self.model_index}
        if self.probe_kind in kinds:
            return self.probe_kind
        if self.probe_kind == MEASURED:
            proxies = sorted(k for k in kinds if k in PROXY_KINDS)
            return proxies[0] if proxies else None
        return None

    def probes_used(self, probes: Sequence[ProbeRecord], *, known_dataset: str | None = None) -> int:
        """How many probed models `predict` turns into probe edges (none on the transductive path)."""
        if known_dataset in self.dataset_ids:
            return 0
        kind = self.edge_kind(probes)
        return len({p.model_id for p in probes if p.probe == kind and p.model_id in self.model_index})

    def run(self, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread of z for every model, through ONNX Runtime when serving from ONNX, else torch."""
        mean, std = self._run_module(inputs)
        return mean.astype(float), std.astype(float)

    def _run_module(self, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """`run` as the module gives it (float32): what `score_all` scales straight into float64 (one pass each)."""
        arguments = self._module_inputs(inputs)
        if self.scorer is not None:
            return self.scorer.run_module(arguments)
        with torch.no_grad():
            mean, std = self.query_module(*(torch.from_numpy(a) for a in arguments.values()))
        return mean.numpy(), std.numpy()

    def _module_inputs(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What the query module takes, in its order, for a query's inputs (`query`): the inputs themselves."""
        return {k: np.asarray(inputs[k]) for k in INPUTS}

    def _run_torch(self, arguments: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            mean, std = self.query_module(*(torch.from_numpy(a) for a in arguments.values()))
        return mean.numpy().astype(float), std.numpy().astype(float)

    def behaviour(self) -> np.ndarray:
        """Every scored dataset's z per model (NaN where no record): how models rise and fall together."""
        return np.clip(self.z[self.rated], _Z_LOW, _Z_HIGH)

    def selector(self) -> ProbeSelector:
        z = self.behaviour()  # NaN (no edge) stays NaN
        return ProbeSelector(
            z, self.model_similarity, self.model_ids, enabled=self.config.probes, diversity=self.config.probe_diversity
        )

    def select_probes(
        self,
        features: Mapping[str, float],
        *,
        known_dataset: str | None = None,
        distances: Mapping[str, float] | None = None,
        budget: int | None = None,
        among: Collection[str] | None = None,
    ) -> list[str]:
        """The models the probe-selector would probe on this query (empty when probes are off)."""
        q = self.query(features, known_dataset=known_dataset, distances=distances)
        budget = self.config.probe_budget if budget is None else budget
        return self.selector().select(q.similarity, budget, among=among)

    def predict(
        self,
        features: dict[str, float],
        *,
        known_dataset: str | None = None,
        distances: Mapping[str, float] | None = None,
        probes: Sequence[ProbeRecord] = (),
    ) -> list[Prediction]:
        """A prediction for every model of the library, in library order.

        `known_dataset` naming a scored dataset is the transductive path; naming a dataset node without
        records (or none) is the inductive one, using the node's similarity rows, or `distances`
        (dataset id -> distance) for a new dataset. `probes` become virtual probe edges; measured ones
        (probe "score") are also returned as the model's score.
        """
        return self.score_all(features, known_dataset=known_dataset, distances=distances, probes=probes).predictions()

    def score_all(
        self,
        features: Mapping[str, float],
        *,
        known_dataset: str | None = None,
        distances: Mapping[str, float] | None = None,
        probes: Sequence[ProbeRecord] = (),
    ) -> Scored:
        """`predict` as vectors: one pass of the query module over the precomputed library side (one
        product with every model's embedding), the per-model `Prediction` built only when asked for."""
        own = self.node_index.get(known_dataset) if known_dataset in self.dataset_ids else None
        own_records: set[int] = set()
        if own is not None:
            observed, values = self._records_of(own)
            if len(observed) >= _OWN_SCALE_RECORDS:
                return self._transductive(own)
            # Too few records to know the dataset's own score scale: predict it as a new node from its
            # neighbours and let its records calibrate the rest, as measured probes do.
            own_records = {int(j) for j in observed}
            records = [
                ProbeRecord(self.model_ids[j], self.nodes[own], MEASURED, float(v))
                for j, v in zip(observed, values, strict=True)
            ]
            probes = [*records, *(p for p in probes if p.probe != MEASURED or p.model_id not in self.model_index)]
        q = self.query(features, known_dataset=known_dataset, distances=distances, probes=probes)
        mean_z, std_z = self._run_module(q.inputs)  # float32, each scaled into float64 once below
        anchor_mean = float(q.anchor @ self.row_mean[self.rated])
        anchor_spread = float(q.anchor @ self.row_spread[self.rated])
        # sign · (mean + spread · z), bit for bit (sign is ±1), in two passes over the models instead of five.
        predicted = np.multiply(mean_z, self.sign * anchor_spread, dtype=float)
        predicted += self.sign * anchor_mean
        if q.measured:
            # Measured probes calibrate the rest: their mean residual shifts every other model, shrunk
            # by one pseudo-record (as the kNN estimator's transductive path does).
            js = list(q.measured)
            residual = np.array([q.measured[j] for j in js]) - predicted[js]
            predicted = predicted + residual.sum() / (len(js) + 1)
        uncertainty = np.multiply(std_z, self.interval_scale * anchor_spread, dtype=float)
        scores, spread = predicted, uncertainty  # float vectors already (`run`); copied only to be written
        if q.measured:
            scores, spread = predicted.copy(), uncertainty.copy()
            for j, value in q.measured.items():
                scores[j], spread[j] = value, 0.0
        order: list[np.ndarray] = []  # datasets by similarity to the query, sorted once, on first need

        def build(j: int) -> Prediction:
            if not order:
                order.append(np.argsort(-q.similarity, kind="stable"))
            evidence = self._evidence(j, q.similarity, order[0])
            model_id = self.model_ids[j]
            if j in q.measured:
                score = q.measured[j]
                why = (
                    f"measured {score:.3g} on this very dataset ({known_dataset})"
                    if j in own_records
                    else f"probed: measured {score:.3g} on this dataset"
                )
                return Prediction(model_id, score, 0.0, evidence, why)
            return Prediction(
                model_id, float(predicted[j]), float(uncertainty[j]), evidence,
                self._explain(j, evidence, float(mean_z[j])),
            )  # fmt: skip

        return Scored(scores, spread, build)

    def _transductive(self, own: int) -> Scored:
        mean_z, std_z = self._graph_mean[own], self._graph_std[own]
        predicted = self.sign * (self.row_mean[own] + self.row_spread[own] * mean_z)
        observed = self.has[own]
        residual = self.scores[own, observed] - predicted[observed]
        predicted = predicted + residual.sum() / (observed.sum() + 1)
        spread = self.interval_scale * self.row_spread[own] * std_z
        scores = np.where(observed, self.scores[own], predicted).astype(float)
        uncertainty = np.where(observed, 0.0, spread).astype(float)

        def build(j: int) -> Prediction:
            model_id = self.model_ids[j]
            if observed[j]:
                score = float(self.scores[own, j])
                return Prediction(
                    model_id,
                    score,
                    0.0,
                    [Evidence(self.nodes[own], 1.0, score)],
                    f"measured {score:.3g} on this very dataset ({self.nodes[own]})",
                )
            return Prediction(
                model_id,
                float(predicted[j]),
                float(self.interval_scale * self.row_spread[own] * std_z[j]),
                [],
                f"predicted z {mean_z[j]:+.2f} from the graph around {self.nodes[own]}",
            )

        return Scored(scores, uncertainty, build)

    def _evidence(self, j: int, similarity: np.ndarray, order: np.ndarray) -> list[Evidence]:
        """The first `evidence_count` datasets in `order` (most similar first) that scored model j, among
        those of positive similarity. One gather of model j's column, not a Python step per dataset: a model
        with few records made that loop walk most of the library's datasets."""
        ahead = order[: _positive_prefix(similarity[order])]
        rows = self.rated[ahead]
        column = self._column_scores(rows, j)
        found = np.flatnonzero(~np.isnan(column))[: self.evidence_count]
        return [Evidence(self.nodes[int(rows[h])], float(similarity[ahead[h]]), float(column[h])) for h in found]

    def _records_of(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Dataset node i's models with a record, and their scores."""
        observed = np.nonzero(self.has[i])[0]
        return observed, self.scores[i, observed]

    def _column_scores(self, rows: np.ndarray, j: int) -> np.ndarray:
        """The scores of model j on dataset nodes `rows`, NaN where no record."""
        return np.where(self.has[rows, j], self.scores[rows, j], np.nan)

    @staticmethod
    def _explain(j: int, evidence: list[Evidence], z: float) -> str:
        what = f"predicted {z:+.2f} standard deviations from the typical model"
        if not evidence:
            return f"{what}; no close dataset has a record of it"
        near = ", ".join(f"{e.score:.3g} on {e.dataset_id} (similarity {e.similarity:.2f})" for e in evidence)
        return f"{what}; scored {near}"

    # -- ONNX -----------------------------------------------------------------------------------------

    def export_onnx(self, path: str | Path | io.BytesIO) -> None:
        """Write the query module as ONNX (opset 18, the legacy exporter), with its wiring as metadata."""
        export_onnx(
            self.query_module,
            self._module_inputs(self.query({}).inputs),
            path,
            feature_names=self.feature_names,
            config=self.config,
        )

    def serve_onnx(
        self,
        path: str | Path | None = None,
        *,
        providers: Sequence[str] | None = None,
        like: GnnEstimator | None = None,
        model: bytes | None = None,
    ) -> OnnxScorer:
        """Export (to `path`, or in memory) and make `predict` run on ONNX Runtime from now on.

        `like`, an estimator of the same weights serving from ONNX (the one of an older graph version): its
        model with this graph's constants swapped in, when that scores as this module does (checked on one
        query); otherwise, or with a `path`, a new export. `model`, this module's export made elsewhere (by
        the process that trained it): served as it is when it scores as this module does (same check).
        """
        if path is None and model is not None:
            scorer = OnnxScorer(model, providers=providers)
            if self._scores_alike(scorer):
                self.scorer, self.onnx_model = scorer, model
                return scorer
        if path is None and like is not None and like.onnx_model is not None:
            model = with_constants(like.onnx_model, self.query_module)
            if model is not None:
                scorer = OnnxScorer(model, providers=providers)
                if self._scores_alike(scorer):
                    self.scorer, self.onnx_model = scorer, model
                    return scorer
        target: str | Path | io.BytesIO = path if path is not None else io.BytesIO()
        self.export_onnx(target)
        self.onnx_model = target.getvalue() if isinstance(target, io.BytesIO) else None
        self.scorer = OnnxScorer(self.onnx_model or target, providers=providers)  # type: ignore[arg-type]
        return self.scorer

    def _scores_alike(self, scorer: OnnxScorer) -> bool:
        arguments = self._module_inputs(self.query({}).inputs)
        mean, std = self._run_torch(arguments)
        got_mean, got_std = scorer.run(arguments)
        return bool(np.allclose(got_mean, mean, atol=1e-5) and np.allclose(got_std, std, atol=1e-5))
