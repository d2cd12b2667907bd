"""The ModsNet estimator ε: an inductive heterogeneous GNN over the bipartite graph G of datasets and models.

Graph (one node per dataset and per model of the snapshot; every relation is a weighted mean, so a
node's degree does not scale its messages):
* interactions, both ways: `rated`/`rates` (plain mean) and `rated_z`/`rates_z` (weighted by the edge's
  score z-scored within its dataset: scores compare within a dataset, not across);
* `similar`: a dataset's nearest datasets by the library's similarity rows (Gaussian kernel weights);
* `near`: a dataset's nearest scored datasets in dataset-feature space (same kernel);
* `source_of`/`source`: a model and a dataset its metadata names (the data it was pre-trained on);
* `alike`: a model's nearest models by metadata (numbers scaled, categories one-hot, text hashed);
* `probed`/`probed_z`: virtual probe edges from the probe-selector, and `agree`: the datasets on which
  the probed models ranked as the probes rank them (only on a query node, or a training node made cold).
Each layer is a `HeteroConv` of `GraphConv`s (summed over relations, residual, ReLU). The head is

    P̂(d, m) = <A h_d, B h_m> + b(h_m) + α · popularity_m + β · prior(d, m)

where popularity is the model's mean z and prior(d, m) the kNN estimator's z from d's `similar`,
`near` and `agree` neighbours shrunk toward popularity: the graph learns a correction on top of the two
structural signals that carry most of the figures (see the ablation in docs/benchmarks-recommender.md).

Training is episodic, to match how the estimator is used: each step hides every interaction of a few
scored datasets (they become cold nodes, half of them given simulated probe edges) and fits their
z-scores from the rest of the graph. Loss: MSE on z (labels clipped to [-6, 3]) + a ListNet ranking
term per dataset (weight `rank_weight`) + λ‖Θ‖² (Adam's weight decay). A few members with different
seeds form an ensemble; their spread is the reported uncertainty.

Inductive path: a query dataset is a new node that only receives messages. That path is a small torch
module with every library-side embedding precomputed (`QueryScorer`), which is what `export_onnx`
writes; `serve_onnx` makes `predict` run it under ONNX Runtime. Transductive path: a scored dataset is
read off the full graph, and its own records are returned as measured. Predicted z turns back into the
metric through the (neighbour-weighted) mean and spread of the neighbouring datasets' scores, as the
kNN estimator does.

The package, by what changes together: `config` (settings, names of the node kinds and relations),
`graph` (graph preparation: arrays and edges from a snapshot), `network` (the torch modules: one
ensemble member and the query module), `training` (episodic training, checkpoints, the precomputed
constants), `serving` (the estimator: queries, predictions, explanations) and `onnx_export` (ONNX export
and ONNX Runtime scoring). Past the recommender's `gnn_max_cells`, `sparse` is the same estimator without
(datasets x models) arrays: the records as sparse matrices, episodes on neighbourhoods drawn by `sampling`
(a k-hop sampler with fan-outs, a torch-geometric `BaseSampler`), the library side by sparse products, and
queries on ONNX Runtime with the neighbour prior as an input of the export.
"""

from .config import DATA, MODEL, NAME, FitInfo, GnnConfig
from .network import INPUTS, QueryScorer
from .onnx_export import OnnxScorer
from .serving import GnnEstimator

__all__ = ["DATA", "INPUTS", "MODEL", "NAME", "FitInfo", "GnnConfig", "GnnEstimator", "OnnxScorer", "QueryScorer"]
