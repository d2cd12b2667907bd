"""The GNN without (datasets x models) arrays, for libraries past `GNN_MAX_CELLS` (issue 13).

The same network (`_Net`), relations, head, episodes and query module inputs as the dense estimator; what
changes is how the graph is held and walked:

* **records**: scores and z as `ScoreMatrix` (CSR by dataset, CSC by model), the relations as in-edges
  (`sampling.InEdges`): memory grows with the records, not with datasets x models. The dataset-side arrays
  (features, the similarity distances between dataset nodes) are as in the dense graph: datasets², not cells.
* **training**: each step makes `batch` scored datasets cold, takes up to `labels` of each one's models as
  the models its loss is on, adds simulated probe and agree edges as the dense episodes do, and samples the
  k-hop neighbourhood of those datasets and models with `fanout` in-neighbours per relation and hop
  (`NeighbourhoodSampler`). The network runs on that subgraph only (its edges as sparse matrices); the
  models' popularity summaries and the neighbour prior are computed from the records with the cold datasets'
  left out, for the sampled models only. A step's memory is bounded by batch, labels and fan-out.
* **the library side** (once per graph version): every node's embeddings per layer on the full graph, each
  relation a sparse (destination x source) matrix product: memory is the edges plus nodes x hidden.
* **a query**: the dense query module's arithmetic (`QueryScorer.ensemble`) over those embeddings, with the
  neighbour prior computed from the ~16 neighbours' records (`ScoreMatrix.weighted_row_sum`) instead of a
  (datasets x models) constant; the transductive answer of a scored dataset is computed when asked, from its
  final embedding. Served as the dense GNN's is, from its ONNX export under ONNX Runtime: the prior comes in
  as an input (`prior`), the library side as the per-version constants (`with_constants` swaps them on a
  refresh); the export holds no (datasets x models) array. At 100k models that is 0.65x torch's CPU per
  `score_all` (docs/benchmarks-scale.md, run 9).

Left out against the dense estimator: the `alike` relation and the probe-selector's model redundancy
(sim_M costs models² to build; the relation stays, empty, and the selector gets the identity, as the kNN's
does), and probe kinds other than measured scores are not learnt from (the library's recorded LogME rows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse
from torch import Tensor

from modsnet.data.graph import Snapshot, interaction_columns_of

from ...probes import MEASURED
from ..base import Evidence, Prediction, ProbeRecord, Scored
from ..matrix import ScoreMatrix
from .config import _Z_HIGH, _Z_LOW, DATA, MODEL, EdgeType, GnnConfig
from .graph import _MIN_SPREAD, _Edges, _tensor, model_summaries
from .network import QueryScorer, _MemberConstants, _Net
from .sampling import InEdges, NeighbourhoodSampler
from .serving import GnnEstimator
from .training import TrainingCancelled, _loss


@dataclass(frozen=True)
class SamplingConfig:
    """The sparse GNN's episodes: cold datasets per step, models each one's loss is on, in-neighbours kept per
    relation and hop."""

    batch: int = 16
    labels: int = 256
    fanout: int = 10


def _sparse_tensor(src: np.ndarray, dst: np.ndarray, weight: np.ndarray, n_src: int, n_dst: int) -> Tensor:
    """Edges as a (n_dst, n_src) sparse weight matrix (repeated edges summed)."""
    index = torch.from_numpy(np.stack([np.asarray(dst, dtype=np.int64), np.asarray(src, dtype=np.int64)]))
    values = torch.from_numpy(np.asarray(weight, dtype=np.float32))
    return torch.sparse_coo_tensor(index, values, (n_dst, n_src), check_invariants=False).coalesce()


# A query's prior is computed on the models its neighbours' records name when the models are at least this many
# times the records (`_query_prior`); over every model otherwise (measured: 100k models, ~7,400 records: 0.32 ms
# over every model, 0.49 ms on those named; 1M: see docs/benchmarks-scale.md, run 12).
_PRIOR_SPARSITY = 16


class SparseQueryScorer(QueryScorer):
    """The query module with the neighbour prior as an input (no z constant): `forward(..., prior)`."""

    def forward(  # type: ignore[no-untyped-def, override]
        self, features: Tensor, dataset_weights: Tensor, model_index: Tensor, model_weights: Tensor, prior: Tensor
    ):
        return self.ensemble(features, dataset_weights, model_index, model_weights, prior)


class SparseGnnEstimator(GnnEstimator):
    """`GnnEstimator` held and trained sparse; see the module's doc."""

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        probes: Sequence[ProbeRecord] = (),
        config: GnnConfig | None = None,
        evidence: int = 3,
        weights: Sequence[Mapping[str, Tensor]] | None = None,
        sampling: SamplingConfig | None = None,
        **kwargs: object,
    ):
        self.sampling = sampling or SamplingConfig()
        super().__init__(snapshot, probes=probes, config=config, evidence=evidence, weights=weights, **kwargs)  # type: ignore[arg-type]

    # -- the graph, sparse ---------------------------------------------------------------------------

    def _prepare_scores(self, snapshot: Snapshot) -> None:
        self.model_ids = [m.model_id for m in snapshot.models]
        self.model_index = {m: j for j, m in enumerate(self.model_ids)}
        self.nodes = [d.dataset_id for d in snapshot.datasets]
        records = interaction_columns_of(snapshot)
        rated = records.rated_dataset_ids()
        known = set(self.nodes)
        self.nodes.extend(d for d in rated if d not in known)  # records of a dataset without a node still count
        self.node_index = {d: i for i, d in enumerate(self.nodes)}
        self.dataset_ids = rated
        self.rated = np.array([self.node_index[d] for d in rated], dtype=np.int64)
        self.score_matrix = ScoreMatrix.of_means(records, self.model_ids, self.nodes)
        goodness = self.score_matrix.with_data(self.sign * self.score_matrix.data)
        counts, row_mean, spread = goodness.row_stats()
        scored = counts > 0
        wide = scored & (spread > _MIN_SPREAD)
        typical = float(np.median(spread[wide])) if wide.any() else 0.05
        self.row_mean = np.where(scored, row_mean, 0.0)
        self.row_spread = np.where(wide, spread, typical)
        rows = self.score_matrix.row_of
        z = (goodness.data - self.row_mean[rows]) / self.row_spread[rows]
        self.z_matrix = self.score_matrix.with_data(z)  # unclipped, as the dense `z`
        self.z_clipped = np.clip(z, _Z_LOW, _Z_HIGH)
        self._zc = self.score_matrix.with_data(self.z_clipped)  # what edges, labels and the prior read
        n_nodes, n_models = len(self.nodes), len(self.model_ids)
        # Interactions both ways: the CSR rows are a dataset's in-edges from models, the CSC a model's.
        colptr, column_rows, order = self.z_matrix._by_column
        clipped = self.z_clipped
        self._rated_in = InEdges(
            MODEL, DATA, self.score_matrix.indptr, self.score_matrix.indices,
            {"rated": np.ones(len(clipped)), "rated_z": clipped}, hideable="dst",
        )  # fmt: skip
        self._rates_in = InEdges(
            DATA,
            MODEL,
            colptr,
            column_rows,
            {"rates": np.ones(len(clipped)), "rates_z": clipped[order]},
            hideable="src",
        )
        self._z_csr = sparse.csr_array(
            (clipped, self.score_matrix.indices, self.score_matrix.indptr), (n_nodes, n_models)
        )
        self._has_csr = sparse.csr_array(
            (np.ones(len(clipped)), self.score_matrix.indices, self.score_matrix.indptr), (n_nodes, n_models)
        )
        # Per-model sums over every scored dataset, for the popularity summaries (a step subtracts its cold ones).
        self._model_count = np.bincount(self.score_matrix.indices, minlength=n_models).astype(float)
        self._model_sum = np.bincount(self.score_matrix.indices, weights=clipped, minlength=n_models)
        self._model_squares = np.bincount(self.score_matrix.indices, weights=clipped**2, minlength=n_models)
        self._model_fails = np.bincount(self.score_matrix.indices, weights=clipped < -2.0, minlength=n_models)
        self._model_worst = np.full(n_models, np.inf)
        np.minimum.at(self._model_worst, self.score_matrix.indices, clipped)

    def _model_similarity(self) -> sparse.csr_array:
        return sparse.csr_array(sparse.identity(len(self.model_ids), format="csr"))  # sim_M is models²: see the doc

    def _z_block(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        return self.z_matrix.columns(columns)[rows]

    def _records_of(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.score_matrix.row(i)

    def _z_row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.z_matrix.row(i)

    def _column_scores(self, rows: np.ndarray, j: int) -> np.ndarray:
        return self.score_matrix.column_at(j, rows)

    def _prepare_probes(self, probes: Sequence[ProbeRecord]) -> None:
        self.recorded: dict[int, dict[int, float]] = {}
        self.probe_kind = MEASURED

    def _static_in_edges(self) -> list[InEdges]:
        """The relations a cold dataset keeps (similar, near, source_of, source, alike) as in-edges."""
        n = {DATA: len(self.nodes), MODEL: len(self.model_ids)}
        out = []
        for src_kind, name, dst_kind in self.relations:
            edges = self.static.get(name)
            if edges is None:
                continue
            # Each node's in-weights of these sum to 1 (kernels, or means already): a sample rescales the kept.
            out.append(
                InEdges.of(src_kind, dst_kind, edges.src, edges.dst, {name: edges.weight}, n[dst_kind], mean=False)
            )
        return out

    # -- popularity and the prior, from the records ----------------------------------------------------

    def _summaries(self, hidden: np.ndarray) -> np.ndarray:
        """The dense `_popularity` of every model with datasets `hidden` left out (`model_summaries`), from the
        per-model sums over every scored dataset less the hidden ones' records."""
        count, total = self._model_count.copy(), self._model_sum.copy()
        squares, fails, worst = self._model_squares.copy(), self._model_fails.copy(), self._model_worst.copy()
        if len(hidden):
            _, cols, values = self._zc.gather(hidden)
            np.subtract.at(count, cols, 1.0)
            np.subtract.at(total, cols, values)
            np.subtract.at(squares, cols, values**2)
            np.subtract.at(fails, cols, (values < -2.0).astype(float))
            touched = np.unique(cols)
            worst[touched] = self._worst_without(touched, hidden)
        safe = np.maximum(count, 1.0)
        mean = np.where(count > 0, total / safe, 0.0)
        std = np.sqrt(np.maximum(np.where(count > 0, squares / safe - mean**2, 0.0), 0.0))
        return model_summaries(count, mean, std, worst, fails, len(self.rated) - len(hidden))

    def _worst_without(self, models: np.ndarray, hidden: np.ndarray) -> np.ndarray:
        colptr, column_rows, order = self.z_matrix._by_column
        starts, lengths = colptr[models], colptr[models + 1] - colptr[models]
        which = np.repeat(np.arange(len(models)), lengths)
        spans = starts[which] + np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        keep = ~np.isin(column_rows[spans], hidden)
        worst = np.full(len(models), np.inf)
        np.minimum.at(worst, which[keep], self.z_clipped[order[spans[keep]]])
        return worst

    def _prior_of(
        self, rows: np.ndarray, visible: np.ndarray, popularity: np.ndarray, models: np.ndarray | None,
        extra: sparse.csr_array | None = None,
    ) -> Tensor:  # fmt: skip
        """The neighbour prior of dataset nodes `rows` on `models` (None: every model) from the visible datasets'
        records: the dense `_prior` through sparse products."""
        n_models = len(self.model_ids) if models is None else len(models)
        if not self.config.use_prior:
            return torch.zeros(len(rows), n_models)
        seen = np.zeros(len(self.nodes))
        seen[visible] = 1.0
        neighbours = self._neighbours if extra is None else self._neighbours + extra
        weights = sparse.csr_array(neighbours[rows] * seen[None, :])
        numerator, denominator = weights @ self._z_csr, weights @ self._has_csr
        if models is not None:
            numerator, denominator = numerator[:, models], denominator[:, models]
            popularity = popularity[models]
        c = self.config.prior_strength
        prior = (numerator.toarray() + c * popularity[None, :]) / (denominator.toarray() + c)
        return _tensor(prior)

    # -- training --------------------------------------------------------------------------------------

    def _fit(self) -> None:
        cfg, sampling = self.config, self.sampling
        self.members: list[_Net] = []
        n_rated = len(self.rated)
        batch = max(1, min(sampling.batch, n_rated - 1))
        steps = cfg.steps if n_rated > 1 else 0
        sizes = {DATA: len(self.nodes), MODEL: len(self.model_ids)}
        relations = [self._rated_in, self._rates_in, *self._static_in_edges()]
        for member in range(cfg.members):
            seed = cfg.seed * 1000 + member
            torch.manual_seed(seed)
            rng = np.random.default_rng(seed)
            sampler = NeighbourhoodSampler(
                relations, sizes, [sampling.fanout] * cfg.layers, seed=seed, labels=sampling.labels,
                label_edges=self._rated_in,
            )  # fmt: skip
            net = _Net(self.x_data.shape[1], self.model_dim, self.relations, cfg)
            optimiser = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
            net.train()
            for step in range(steps):
                if self._cancel is not None and self._cancel.is_set():
                    raise TrainingCancelled("the GNN's training was cancelled (the service is stopping)")
                loss = self._step(net, sampler, rng.choice(self.rated, size=batch, replace=False), rng)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                if self._progress is not None:
                    self._progress(member * steps + step + 1, cfg.members * steps)
            net.eval()
            self.members.append(net)
        self._precompute()

    def _step(self, net: _Net, sampler: NeighbourhoodSampler, hidden: np.ndarray, rng: np.random.Generator) -> Tensor:
        """One episode: `hidden` made cold, its sampled neighbourhood embedded, the loss on its labelled models."""
        cfg = self.config
        hidden = np.sort(hidden)
        cold = np.zeros(len(self.nodes), dtype=bool)
        cold[hidden] = True
        visible = self.rated[~cold[self.rated]]
        summaries = self._summaries(hidden)
        popularity = summaries[:, 0]
        probes = self._simulated_probes(hidden, popularity, rng) if cfg.probes else []
        agree = self._agree_edges(probes, visible) if probes else _Edges.empty()
        seeds = sampler.seeds_of(hidden)
        targets = seeds[MODEL]
        probed = np.concatenate([index for _, index, _ in probes]) if probes else np.zeros(0, dtype=np.int64)
        extra_data = np.setdiff1d(agree.src, hidden)
        sub = sampler.sample(
            {DATA: np.concatenate([hidden, extra_data]), MODEL: np.union1d(targets, probed)}, cold
        )  # fmt: skip
        n_data, n_model = len(sub.nodes[DATA]), len(sub.nodes[MODEL])
        sizes = {DATA: n_data, MODEL: n_model}
        edges = dict(sub.edges)
        if cfg.probes:
            dst = np.concatenate([np.full(len(idx), i) for i, idx, _ in probes]) if probes else probed
            values = np.concatenate([v for _, _, v in probes]) if probes else np.zeros(0)
            src_local, dst_local = sub.local(MODEL, probed), sub.local(DATA, dst)
            degree = np.bincount(dst_local, minlength=n_data).astype(float)
            edges["probed"] = (src_local, dst_local, 1.0 / np.maximum(degree[dst_local], 1.0))
            edges["probed_z"] = (src_local, dst_local, values / np.maximum(degree[dst_local], 1.0))
            edges["agree"] = (sub.local(DATA, agree.src), sub.local(DATA, agree.dst), agree.weight)
        index = {}
        for rel in self.relations:
            src, dst, weight = edges.get(rel[1], (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)))
            index[rel] = _sparse_tensor(src, dst, weight, sizes[rel[0]], sizes[rel[2]])
        x_data = _tensor(self.x_data[sub.nodes[DATA]])
        model_summaries = summaries[sub.nodes[MODEL]] if cfg.use_popularity else summaries[sub.nodes[MODEL], :0]
        x_model = _tensor(np.hstack([self.x_model_static[sub.nodes[MODEL]], model_summaries]))
        layers = net.embed(x_data, x_model, index, {})
        h_model = layers[-1][MODEL][torch.from_numpy(sub.local(MODEL, targets))]
        side = net.model_side(h_model, _tensor(popularity[targets]))
        extra = agree.matrix(len(self.nodes), len(self.nodes)) if len(agree.src) else None
        prior = self._prior_of(hidden, visible, popularity, targets, extra)
        predicted = net.score(layers[-1][DATA][: len(hidden)], side, prior)
        which, cols, values = self._zc.gather(hidden)
        at = np.searchsorted(targets, cols)
        found = (at < len(targets)) & (targets[np.minimum(at, len(targets) - 1)] == cols)
        labels = np.zeros((len(hidden), len(targets)), dtype=np.float32)
        observed = np.zeros((len(hidden), len(targets)), dtype=bool)
        labels[which[found], at[found]] = values[found]
        observed[which[found], at[found]] = True
        return _loss(predicted, torch.from_numpy(labels), torch.from_numpy(observed), cfg.rank_weight)

    # -- the library side ------------------------------------------------------------------------------

    scorer_class = SparseQueryScorer  # the prior an input: no (datasets x models) constant

    def _library_inputs(self) -> tuple[Tensor, Tensor, dict[EdgeType, Tensor], dict[EdgeType, Tensor], np.ndarray]:
        """Node features and every relation as a sparse matrix of the full graph (no probe edges), and popularity."""
        summaries = self._summaries(np.zeros(0, dtype=np.int64))
        sizes = {DATA: len(self.nodes), MODEL: len(self.model_ids)}
        edges: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for both in (self._rated_in, self._rates_in):
            dst = np.repeat(np.arange(len(both.indptr) - 1), both.degree())
            degree = both.degree()[dst].astype(float)
            for name, values in both.values.items():
                edges[name] = (both.src, dst, values / np.maximum(degree, 1.0))
        for name, static in self.static.items():
            edges[name] = (static.src, static.dst, static.weight)
        index: dict[EdgeType, Tensor] = {}
        for rel in self.relations:
            src, dst, weight = edges.get(rel[1], (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)))
            index[rel] = _sparse_tensor(src, dst, weight, sizes[rel[0]], sizes[rel[2]])
        x_model = np.hstack([self.x_model_static, summaries if self.config.use_popularity else summaries[:, :0]])
        return _tensor(self.x_data), _tensor(x_model), index, {}, summaries[:, 0]

    def _prior_records(self) -> tuple[Tensor, Tensor]:
        """None: a query's prior comes from its neighbours' records, computed per query (`_query_prior`)."""
        empty = torch.zeros(0, len(self.model_ids))
        return empty, empty

    def _keep_answers(self, final_data: list[Tensor], members: list[_MemberConstants]) -> None:
        """The final dataset embeddings: a transductive answer is computed when asked (`_transductive`)."""
        self._final_data = final_data

    # -- queries ---------------------------------------------------------------------------------------

    def _query_prior(self, dataset_weights: np.ndarray) -> np.ndarray:
        """The neighbour prior (1, models) of a query with these dataset weights: `_neighbour_prior` over the
        datasets it has an edge from, from their records. A model none of them scored has no support, so its
        prior is (0 + c · pop) / (0 + c), its popularity: where the records are few beside the models (at 1M
        models ~16 x 3,300), only the models they name are computed, over a float32 copy of popularity made once
        per graph version, instead of 1M-long sums and quotients each query. The sums add the same terms in the
        same order either way."""
        together = np.asarray(dataset_weights, dtype=float).sum(axis=0)
        rows = np.nonzero(together)[0]
        c = self.config.prior_strength
        which, cols, z = self._zc.gather(rows)
        w = together[rows][which]
        n_models = len(self.model_ids)
        if len(cols) * _PRIOR_SPARSITY >= n_models:  # a small library: over every model, no sort
            numerator = np.bincount(cols, weights=w * z, minlength=n_models)
            denominator = np.bincount(cols, weights=w, minlength=n_models)
            return ((numerator + c * self.popularity) / (denominator + c))[None, :].astype(np.float32)
        base = self.__dict__.get("_popularity_row")
        if base is None:  # per graph version (an estimator is one version); computed twice at worst, never wrong
            base = self._popularity_row = self.popularity.astype(np.float32)[None, :]
        prior = base.copy()
        touched, at = np.unique(cols, return_inverse=True)
        numerator = np.bincount(at, weights=w * z, minlength=len(touched))
        denominator = np.bincount(at, weights=w, minlength=len(touched))
        prior[0, touched] = (numerator + c * self.popularity[touched]) / (denominator + c)
        return prior

    def _module_inputs(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The query's inputs and its neighbour prior (1, models), computed from the neighbours' records."""
        arguments = super()._module_inputs(inputs)
        if self.config.use_prior:
            arguments["prior"] = self._query_prior(inputs["dataset_weights"])
        else:
            arguments["prior"] = np.zeros((1, len(self.model_ids)), dtype=np.float32)
        return arguments

    def behaviour(self) -> ScoreMatrix:  # type: ignore[override]
        """Every scored dataset's z per model (rows in `rated` order, as the dense `behaviour`), as records."""
        which, cols, values = self._zc.gather(self.rated)
        indptr = np.zeros(len(self.rated) + 1, dtype=np.int64)
        np.cumsum(np.bincount(which, minlength=len(self.rated)), out=indptr[1:])
        return ScoreMatrix((len(self.rated), len(self.model_ids)), indptr, cols.astype(np.int64), values)

    def _transductive(self, own: int) -> Scored:
        with torch.no_grad():
            prior = self._prior_of(np.array([own]), self.rated, self.popularity, None)
            finals = [
                (net.score(h[own : own + 1], (m.projected, m.bias), prior)).squeeze(0).numpy()
                for net, h, m in zip(self.members, self._final_data, self.constants.members, strict=True)
            ]
        stacked = np.stack(finals).astype(float)
        mean_z, std_z = stacked.mean(axis=0), stacked.std(axis=0)
        predicted = self.sign * (self.row_mean[own] + self.row_spread[own] * mean_z)
        js, values = self.score_matrix.row(own)
        predicted = predicted + (values - predicted[js]).sum() / (len(js) + 1)
        observed = np.zeros(len(self.model_ids), dtype=bool)
        observed[js] = True
        scores = predicted.astype(float)
        scores[js] = values
        uncertainty = np.where(observed, 0.0, self.interval_scale * self.row_spread[own] * std_z).astype(float)

        def build(j: int) -> Prediction:
            model_id = self.model_ids[j]
            if observed[j]:
                score = float(scores[j])
                return Prediction(
                    model_id, score, 0.0, [Evidence(self.nodes[own], 1.0, score)],
                    f"measured {score:.3g} on this very dataset ({self.nodes[own]})",
                )  # fmt: skip
            return Prediction(
                model_id, float(predicted[j]), float(uncertainty[j]), [],
                f"predicted z {mean_z[j]:+.2f} from the graph around {self.nodes[own]}",
            )  # fmt: skip

        return Scored(scores, uncertainty, build)
