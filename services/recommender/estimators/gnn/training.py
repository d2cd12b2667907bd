"""Training: the ensemble fitted episodically on the prepared graph, checkpoints, and the query constants.

Each step hides every interaction of a few scored datasets (they become cold nodes, half of them given
simulated probe edges) and fits their z from the rest of the graph. Trained members (fitted, or loaded
from a checkpoint) then embed the full graph once: those embeddings are the constants of a query.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from scipy import sparse
from torch import Tensor

from modsnet.data.graph import Snapshot

from ...probes import MEASURED
from ..base import ProbeRecord
from .config import DATA, MODEL, EdgeType, GnnConfig
from .graph import PreparedGraph, _tensor
from .network import QueryScorer, _Constants, _MemberConstants, _neighbour_prior, _Net


def _loss(predicted: Tensor, target: Tensor, observed: Tensor, rank_weight: float) -> Tensor:
    """MSE on the observed z plus ListNet: cross-entropy between softmaxes of true and predicted z per row."""
    mask = observed.float()
    mse = ((predicted - target) ** 2 * mask).sum() / mask.sum().clamp(min=1.0)
    if rank_weight <= 0:
        return mse
    very_negative = torch.finfo(predicted.dtype).min / 4
    true_p = torch.softmax(target.masked_fill(~observed, very_negative), dim=1)
    log_q = torch.log_softmax(predicted.masked_fill(~observed, very_negative), dim=1)
    listnet = -(true_p * log_q * mask).sum(dim=1).mean()
    return mse + rank_weight * listnet


class TrainingCancelled(Exception):
    """Training stopped between two steps because its `cancel` event was set."""


class TrainedGraph(PreparedGraph):
    """The prepared graph with its trained ensemble and the constants a query needs."""

    def __init__(
        self,
        snapshot: Snapshot,
        probes: Sequence[ProbeRecord],
        config: GnnConfig,
        weights: Sequence[Mapping[str, Tensor]] | None = None,
        cancel: threading.Event | None = None,
        progress: Callable[[int, int], None] | None = None,
    ):
        super().__init__(snapshot, probes, config)
        self._cancel = cancel
        self._progress = progress  # (steps done, steps in all) after each step, for status lines
        if weights is not None:
            self._load(weights)
        else:
            # Tiny Adam moments otherwise turn into denormals, 100x slower on CPU. The flag is process-wide
            # processor state (it breaks subnormal floats for everything else), so it is on for training only.
            torch.set_flush_denormal(True)
            try:
                self._fit()
            finally:
                torch.set_flush_denormal(False)

    def _prior(
        self, rows: np.ndarray, visible: np.ndarray, popularity: np.ndarray, extra: sparse.csr_array | None = None
    ) -> Tensor:
        """The neighbour prior of dataset nodes `rows` from the visible datasets' records (zero when off).

        `extra` adds dynamic in-edges (the agree relation of probed nodes) to the static ones.
        """
        if not self.config.use_prior:
            return torch.zeros(len(rows), len(self.model_ids))
        seen = np.zeros(len(self.nodes))
        seen[visible] = 1.0
        neighbours = self._neighbours if extra is None else self._neighbours + extra
        weights = _tensor(neighbours[rows].toarray() * seen)
        z, has = _tensor(self._z_filled), _tensor(self.has)
        return _neighbour_prior(weights, z, has, _tensor(popularity), self.config.prior_strength)

    def _simulated_probes(
        self, hidden: np.ndarray, popularity: np.ndarray, rng: np.random.Generator
    ) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Probe edges for half the hidden datasets, chosen as the selector would (popular models first)."""
        out = []
        budget = self.config.probe_budget
        for i in hidden:
            if rng.random() < 0.5:
                continue
            if self.probe_kind == MEASURED:
                js, values = self._z_row(int(i))
            else:
                recorded = self.recorded.get(int(i), {})
                js = np.array(sorted(recorded), dtype=np.int64)
                values = np.array([recorded[int(j)] for j in js])
            if len(js) < 2:
                continue
            noisy = popularity[js] + rng.gumbel(size=len(js))
            pick = np.argsort(-noisy)[:budget]
            chosen, raw = js[pick], values[pick]
            spread = raw.std()
            z = (raw - raw.mean()) / spread if spread > 1e-12 else np.zeros(len(raw))
            out.append((int(i), chosen, z))
        return out

    def _fit(self) -> None:
        cfg = self.config
        self.members: list[_Net] = []
        n_rated = len(self.rated)
        hide = max(1, round(cfg.mask_fraction * n_rated))
        labels = _tensor(np.where(self.has, self._z_filled, 0.0))
        observed = torch.from_numpy(self.has)
        steps = cfg.steps if n_rated > 1 else 0
        for member in range(cfg.members):
            seed = cfg.seed * 1000 + member
            torch.manual_seed(seed)
            rng = np.random.default_rng(seed)
            net = _Net(self.x_data.shape[1], self.model_dim, self.relations, cfg)
            optimiser = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
            net.train()
            for step in range(steps):
                if self._cancel is not None and self._cancel.is_set():
                    raise TrainingCancelled("the GNN's training was cancelled (the service is stopping)")
                hidden = rng.choice(self.rated, size=min(hide, n_rated - 1), replace=False)
                visible = np.setdiff1d(self.rated, hidden)
                summaries = self._popularity(visible)
                popularity = summaries[:, 0]
                probes = self._simulated_probes(hidden, popularity, rng) if cfg.probes else []
                x_data, x_model, index, weight = self._inputs(visible, probes, summaries)
                layers = net.embed(x_data, x_model, index, weight)
                rows = torch.from_numpy(hidden)
                side = net.model_side(layers[-1][MODEL], _tensor(popularity))
                agree = self._agree_edges(probes, visible) if probes else None
                extra = agree.matrix(len(self.nodes), len(self.nodes)) if agree is not None else None
                prior = self._prior(hidden, visible, popularity, extra)
                predicted = net.score(layers[-1][DATA][rows], side, prior)
                loss = _loss(predicted, labels[rows], observed[rows], cfg.rank_weight)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                if self._progress is not None:
                    self._progress(member * steps + step + 1, cfg.members * steps)
            net.eval()
            self.members.append(net)
        self._precompute()

    def state(self) -> list[dict[str, Tensor]]:
        """The members' trained parameters: what a checkpoint keeps (the rest is rebuilt from the graph)."""
        return [{k: v.detach().clone() for k, v in net.state_dict().items()} for net in self.members]

    def _load(self, weights: Sequence[Mapping[str, Tensor]]) -> None:
        if len(weights) != self.config.members:
            raise ValueError(f"{len(weights)} members in the weights, the config says {self.config.members}")
        self.members = []
        for state in weights:
            net = _Net(self.x_data.shape[1], self.model_dim, self.relations, self.config)
            try:
                net.load_state_dict(dict(state), strict=True)
            except RuntimeError as error:  # another shape: other features, relations or config
                raise ValueError(f"weights do not fit this graph: {str(error).splitlines()[0]}") from error
            net.eval()
            self.members.append(net)
        self._precompute()

    def _z_row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Dataset node i's models with a record, and their (unclipped) z."""
        js = np.nonzero(self.has[i])[0]
        return js, self.z[i, js]

    def _embedded(
        self, x_data: Tensor, x_model: Tensor, index: dict[EdgeType, Tensor], weight: dict[EdgeType, Tensor],
        popularity: np.ndarray,
    ) -> tuple[list[_MemberConstants], list[Tensor]]:  # fmt: skip
        """Each member on the full graph: its constants of a query, and its final dataset embeddings."""
        members, final_data = [], []
        with torch.no_grad():
            for net in self.members:
                layers = net.embed(x_data, x_model, index, weight)
                projected, bias = net.model_side(layers[-1][MODEL], _tensor(popularity))
                members.append(
                    _MemberConstants([h[DATA] for h in layers[:-1]], [h[MODEL] for h in layers[:-1]], projected, bias)
                )
                final_data.append(layers[-1][DATA])
        return members, final_data

    # -- the library side: one implementation, the graph's reads behind hooks (dense here, sparse.py) ---------

    scorer_class: type[QueryScorer] = QueryScorer  # the query module (the sparse GNN's takes the prior as an input)

    def _precompute(self) -> None:
        """Every node's embeddings on the full graph, per layer and member: the constants of a query (the
        network's per-member constants, the records the query module's neighbour prior reads, popularity), the
        query module over them, and what the transductive answers need (`_keep_answers`)."""
        x_data, x_model, index, weight, popularity = self._library_inputs()
        members, final_data = self._embedded(x_data, x_model, index, weight, popularity)
        self.popularity = popularity
        z, has = self._prior_records()
        self.constants = _Constants(members, z, has, _tensor(popularity), self.config.prior_strength)
        self.query_module = self.scorer_class(self.members, self.constants).eval()
        self._keep_answers(final_data, members)

    def _library_inputs(self) -> tuple[Tensor, Tensor, dict[EdgeType, Tensor], dict[EdgeType, Tensor], np.ndarray]:
        """Node features and edges of the full graph (every scored dataset visible, no probe edges), and each
        model's popularity (its mean clipped z)."""
        summaries = self._popularity(self.rated)
        x_data, x_model, index, weight = self._inputs(self.rated, [], summaries)
        return x_data, x_model, index, weight, summaries[:, 0]

    def _prior_records(self) -> tuple[Tensor, Tensor]:
        """The records the query module's neighbour prior reads: the clipped z and its mask, (datasets x models)."""
        return _tensor(self._z_filled), _tensor(self.has)

    def _keep_answers(self, final_data: list[Tensor], members: list[_MemberConstants]) -> None:
        """Every dataset node's transductive answer, per member: their mean and spread (members x nodes x models)."""
        prior = self._prior(np.arange(len(self.nodes)), self.rated, self.popularity)
        with torch.no_grad():
            finals = [
                net.score(h, (m.projected, m.bias), prior).numpy()
                for net, h, m in zip(self.members, final_data, members, strict=True)
            ]
        stacked = np.stack(finals)  # members × nodes × models: the transductive answers
        self._graph_mean, self._graph_std = stacked.mean(axis=0), stacked.std(axis=0)
