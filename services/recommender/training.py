"""The GNN's training (calibration's held-out fits, the blend's weights, the served fit) as one function, run
in a worker process of the recommender or, with `training_processes` -1, in the serving process itself.

Why a process: a training is seconds to minutes of Python holding the GIL (torch's steps are small ops), and
in the serving process it took a fifth of the GIL from the searches and feedback it serves (issue 13,
docs/benchmarks-concurrency.md, "Fourth pass"). The worker gets the snapshot (a few MB pickled: the records
are numpy columns; 9 MB at 10,000 models x 20 datasets) and sends back only what rebuilds the served estimator
without refitting, as a checkpoint does: the members' weights, the blend's weights with its interval scales,
and the ONNX export. The serving process puts the weights on the same snapshot (`TrainedGnn.estimator`, the
precomputed embeddings: about a second at TabZoo's size), which scores exactly as the worker's estimator did.

Progress goes back as messages (`modsnet.runtime.workers.report`), a few a second; a service that stops kills
the worker (its `cancel` event), and a worker that dies is a failed training like any other.

The refresh after feedback (the served weights put on a newer graph, `refresh_in_worker`) runs in a worker too,
of a pool of its own (a retraining must not hold it up): it was a third of the serving process's CPU under
feedback (issue 13, docs/benchmarks-concurrency.md, "Run 7"). A new record moves its model's embedding, hence
every dataset's at the next layer, so the GNN's precomputed embeddings and constants are rebuilt whole. The kNN
member beside it keeps what it chose on held-out datasets at the last training (conditioning on probes, the
latent rank: `KnnChoices`, three quarters of a refresh's CPU when chosen again) and refits only the rest on the
new records; a training chooses afresh. So a refreshed estimator is no longer bit-identical to a from-scratch
fit of its graph where another choice would have won there (on TabZoo, none did with up to 10% of the records
new; a retraining comes every `retrain_after` records: "Run 9"). The worker sends the estimator back pickled
with its tensors as numpy arrays and without what is rebuilt on use (`pickled_by_value`).
"""

from __future__ import annotations

import io
import os
import pickle
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from modsnet.data.graph import Snapshot
from modsnet.runtime import workers

from .estimators.blend import BlendedEstimator, BlendWeights, calibration_folds, fit_blend
from .estimators.knn import KnnChoices

if TYPE_CHECKING:
    from .estimators.gnn import GnnConfig, GnnEstimator

# (fit, fits, step, steps, phase): fit `fit` of the training's `fits` (calibration's, then the served one), step
# `step` of `steps` in it; phase "fitting" or what comes after the fits.
Report = Callable[[int, int, int, int, str], None]
REPORT_SECONDS = 0.25  # the least time between two progress messages of a worker (a new fit always sends)


def fit_gnn(
    snapshot: Snapshot,
    config: GnnConfig,
    *,
    neighbours: int,
    cancel: threading.Event | None = None,
    report: Report | None = None,
    sparse: bool = False,
) -> BlendedEstimator:
    """The served estimator of `snapshot`: the GNN fitted once per calibration fold and once on everything,
    blended with the kNN and popularity (`fit_blend`). `cancel` stops it between two steps (`TrainingCancelled`).
    `sparse`: the GNN trained on sampled neighbourhoods, without (datasets x models) arrays (`gnn/sparse.py`)."""
    from .estimators.gnn.training import TrainingCancelled

    # How many fits: counted here, where the training runs (it reads every record: in a worker, off the
    # serving process).
    fits = sum(map(len, calibration_folds(snapshot))) + 1 if report is not None else 0
    fit, steps = [0], [0]

    def advance(step: int, of: int) -> None:
        steps[0] = of
        if report is not None:
            report(fit[0], fits, step, of, "fitting")

    def one(graph: Snapshot) -> GnnEstimator:
        if cancel is not None and cancel.is_set():  # between two fits too: a stopping service starts no other
            raise TrainingCancelled("the GNN's training was cancelled (the service is stopping)")
        fit[0] += 1
        advance(0, steps[0])
        return gnn_class(sparse)(graph, config=config, cancel=cancel, progress=advance)

    return fit_blend(snapshot, one, neighbours=neighbours)


def gnn_class(sparse: bool) -> type[GnnEstimator]:
    """The GNN estimator held dense, or sparse (trained on sampled neighbourhoods) for a library past the
    recommender's `gnn_max_cells`."""
    if sparse:
        from .estimators.gnn.sparse import SparseGnnEstimator

        return SparseGnnEstimator
    from .estimators.gnn import GnnEstimator

    return GnnEstimator


@dataclass(frozen=True)
class TrainedGnn:
    """What a training sends back: all the serving process needs to serve it, without a fit."""

    weights: list[dict[str, np.ndarray]]  # the members' parameters (`GnnEstimator.state()`, as numpy arrays)
    blend: dict[str, Any]  # `BlendWeights.to_dict()`: the members' weights and the interval scales
    seconds: float  # the fits'
    onnx_model: bytes | None  # the export of the served fit's query module
    pid: int  # the process that trained
    sparse: bool = False  # trained as the sparse GNN
    knn_choices: KnnChoices | None = None  # what the kNN beside it chose on held-out datasets (`KnnChoices`)

    def estimator(self, snapshot: Snapshot, config: GnnConfig, *, neighbours: int) -> BlendedEstimator:
        """The trained estimator on `snapshot` (the one it was trained on): the weights put on the graph, the kNN
        and popularity fitted beside them with the kNN's choices of the training (on the same graph: the same kNN
        as the worker's, without choosing again), the blend as learned."""
        return on_graph(
            snapshot, config, self.weights, self.blend, neighbours=neighbours, sparse=self.sparse,
            knn_choices=self.knn_choices,
        )  # fmt: skip


def on_graph(
    snapshot: Snapshot,
    config: GnnConfig,
    weights: Sequence[Mapping[str, Any]],
    blend: BlendWeights | dict[str, Any],
    *,
    neighbours: int,
    sparse: bool = False,
    knn_choices: KnnChoices | None = None,
) -> BlendedEstimator:
    """Trained weights put on `snapshot`, the kNN and popularity fitted beside them, blended by `blend`: the one
    path from trained weights to a served estimator (a worker's training, a refresh in a worker or in the serving
    process, a checkpoint). `ValueError` when the weights do not fit the graph.

    `weights`: the members' parameters as numpy arrays (`TrainedGnn`, `as_numpy`) or as torch tensors (a served
    estimator's `state()`, a checkpoint's). `blend`: `BlendWeights` or its `to_dict()`. `sparse`: the GNN held
    sparse (`gnn_class`). `knn_choices`: the kNN keeps them (`KnnChoices`; None: it chooses on this graph's
    held-out datasets)."""
    import torch

    tensors = [
        {name: torch.from_numpy(array) if isinstance(array, np.ndarray) else array for name, array in member.items()}
        for member in weights
    ]
    gnn = gnn_class(sparse)(snapshot, config=config, weights=tensors)
    blend_weights = blend if isinstance(blend, BlendWeights) else BlendWeights.from_dict(blend)
    return BlendedEstimator.assemble(gnn, snapshot, blend_weights, neighbours=neighbours, knn_choices=knn_choices)


def as_numpy(weights: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
    """`GnnEstimator.state()` as numpy arrays: pickled by value (torch's own reducers, which multiprocessing picks
    up, would pass tensors through shared memory)."""
    return [{name: tensor.numpy() for name, tensor in member.items()} for member in weights]


@dataclass(frozen=True)
class RefreshedGnn:
    """What a refresh in a worker sends back: the refreshed estimator, whole, and the ONNX model it scores with."""

    estimator: bytes | None  # the `BlendedEstimator`, pickled by this module (None: the weights did not fit)
    onnx_model: bytes | None  # the older model with this graph's constants, else a new export
    refused: str  # why the weights did not fit this graph ("" when they did)
    seconds: float  # the worker's, from receiving the task to pickling the answer
    pid: int

    def load(self) -> BlendedEstimator:
        assert self.estimator is not None, self.refused
        estimator: BlendedEstimator = pickle.loads(self.estimator)
        return estimator


REFRESH_NICENESS = 10  # added to a refresh worker's: upkeep yields the cores to the requests it serves
_SETTLED = False  # in a refresh worker: its settings made


def _as_the_serving_process() -> None:
    """BLAS on one thread, as in the serving process (`single_threaded_blas`): on a loaded machine OpenBLAS's own
    threads spin against everything else. And a lower priority: in the serving process a refresh only ran when
    the GIL let it; in its own process on a saturated machine it took whole cores from the searches (at load 10-13
    on 2 cores, 0.79x the searches/s of the refresh in process), while on an idle core it runs as fast."""
    global _SETTLED
    if not _SETTLED:
        from modsnet.features import single_threaded_blas

        single_threaded_blas()
        os.nice(REFRESH_NICENESS)
        _SETTLED = True


def warm_refresh_worker() -> int:
    """Nothing but the imports a refresh needs (torch and the GNN: seconds) and the serving process's BLAS
    settings, in the worker ahead of its first refresh; its process id."""
    from .estimators.gnn import GnnEstimator  # noqa: F401

    _as_the_serving_process()
    return os.getpid()


def refresh_in_worker(
    snapshot: Snapshot,
    config: GnnConfig,
    weights: list[dict[str, np.ndarray]],
    blend: dict[str, Any],
    neighbours: int,
    like_model: bytes | None,
    sparse: bool = False,
    knn_choices: KnnChoices | None = None,
) -> RefreshedGnn:
    """The served weights put on a newer graph (`on_graph`), in a worker process, with the ONNX model to serve it:
    `like_model` (the served, older graph's) with the new constants when it takes them, else a new export. The
    serving process checks that model against the estimator's own module before serving it (`serve_onnx`).
    `knn_choices`: the served kNN's, kept (`KnnChoices`)."""
    from .estimators.gnn.onnx_export import with_constants

    start = time.perf_counter()
    _as_the_serving_process()
    try:
        estimator = on_graph(
            snapshot, config, weights, blend, neighbours=neighbours, sparse=sparse, knn_choices=knn_choices
        )
    except ValueError as error:
        return RefreshedGnn(None, None, str(error), time.perf_counter() - start, os.getpid())
    gnn = estimator.primary
    model = with_constants(like_model, gnn.query_module) if like_model is not None else None  # type: ignore[union-attr]
    if model is None:
        exported = io.BytesIO()
        gnn.export_onnx(exported)  # type: ignore[union-attr]
        model = exported.getvalue()
    # Pickled here, not by the pool's pipe: tensors go by value (see `as_numpy`), as numpy arrays.
    return RefreshedGnn(pickled_by_value(estimator), model, "", time.perf_counter() - start, os.getpid())


def pickled_by_value(estimator: BlendedEstimator) -> bytes:
    """`estimator` pickled with every torch tensor as a numpy array (put back with `torch.from_numpy`: no copy).

    Torch's own reducer loads each tensor through its serialization machinery, about 0.3 ms a tensor: 170 tensors
    (a 2-member GNN's layers and constants) were nine tenths of what loading a refreshed estimator cost the
    serving process, where its numpy arrays of several MB loaded in a millisecond (docs/benchmarks-concurrency.md,
    "Run 9")."""
    import torch

    class ByValue(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if (
                type(obj) in (torch.Tensor, torch.nn.Parameter)
                and obj.layout == torch.strided
                and obj.device.type == "cpu"
                and obj.dtype != torch.bfloat16  # (numpy has none)
            ):  # anything else goes by torch's own reducer
                parameter = type(obj) is torch.nn.Parameter
                return _tensor, (obj.detach().numpy(), parameter, obj.requires_grad)
            return NotImplemented

    out = io.BytesIO()
    ByValue(out, protocol=pickle.HIGHEST_PROTOCOL).dump(estimator)
    return out.getvalue()


def _tensor(array: np.ndarray, parameter: bool, requires_grad: bool) -> Any:
    """A tensor of `pickled_by_value` back: over the array's memory, a parameter where it was one."""
    import torch

    tensor = torch.from_numpy(array)
    if parameter:
        return torch.nn.Parameter(tensor, requires_grad=requires_grad)
    return tensor.requires_grad_(requires_grad)


def _throttled(send: Callable[[Any], None]) -> Report:
    last = {"fit": -1, "at": 0.0}

    def report(fit: int, fits: int, step: int, steps: int, phase: str) -> None:
        now = time.monotonic()
        if fit != last["fit"] or now - last["at"] >= REPORT_SECONDS or (steps and step == steps):
            last["fit"], last["at"] = fit, now
            send((fit, fits, step, steps, phase))

    return report


def train_in_worker(snapshot: Snapshot, config: GnnConfig, neighbours: int, sparse: bool = False) -> TrainedGnn:
    """`fit_gnn` in a worker process (`modsnet.runtime.workers`), reporting its progress to the caller."""
    start = time.perf_counter()
    report = _throttled(workers.report)
    estimator = fit_gnn(snapshot, config, neighbours=neighbours, report=report, sparse=sparse)
    seconds = time.perf_counter() - start
    report(0, 0, 0, 0, "exporting to ONNX")
    model = io.BytesIO()
    estimator.primary.export_onnx(model)  # type: ignore[union-attr]  # the GNN here, never the kNN
    onnx_model = model.getvalue()
    return TrainedGnn(
        as_numpy(estimator.state()), estimator.blend.to_dict(), seconds, onnx_model, os.getpid(), sparse,
        estimator.knn.choices,
    )  # fmt: skip
