"""The dog-image dataset: found in a zip or a folder, decoded once into memory, served as augmented batches.

Input (the SageMaker training channel): a dataset zip, a folder holding one zip, or an extracted folder, each in
the dogImages layout (``train/``, ``valid/``, ``test/`` with one folder per class), with or without one root folder
above the splits. The zip is read in place: no extraction to disk.

Why a decode cache: the seed decoded and resized every full-size JPEG every epoch. Here each image is decoded
once (PIL draft mode lets libjpeg scale down by 1/2, 1/4 or 1/8 while decoding) and resized to the training
size, into one uint8 tensor in channels-last order (N, H, W, 3): about 1 GB for 6,680 images at 224 px. A batch
is then a gather, a per-sample horizontal flip (the seed's augmentation) and a normalisation, already in the
channels_last memory format the CPU and GPU kernels prefer. No DataLoader workers: on few cores they compete with
the compute threads for the same cores.

Bad data: an image that fails to decode is skipped, logged and counted; a split where more than
``max_corrupt_fraction`` of the images are corrupt stops the run. An empty class folder, a class in valid/test
that train lacks, or a missing split raises ``DatasetError`` naming the folder.
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image, ImageOps

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DatasetError(ValueError):
    """The dataset's layout or content cannot be trained on; the message says which folder and why."""


@dataclass
class ImageRef:
    path: str  # inside the zip, or relative to the dataset root folder
    label: int


@dataclass
class DatasetIndex:
    """Where every image is and its label, before any decoding."""

    classes: list[str]
    splits: dict[str, list[ImageRef]]
    read_bytes: Callable[[str], bytes]
    source: str


@dataclass
class DecodedSplit:
    """One split decoded to uint8 (N, H, W, 3), with the files skipped as corrupt."""

    images: torch.Tensor
    labels: torch.Tensor
    corrupt_files: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # of the decoded images, in order (corrupt ones left out)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _is_image(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and base.lower().endswith(IMAGE_SUFFIXES)


def _find_split_prefix(paths: list[str], source: str) -> str:
    """The folder prefix ("" or "root/") under which train/ lives."""
    candidates = set()
    for path in paths:
        parts = path.split("/")
        if parts[0] == "__MACOSX":
            continue
        if len(parts) > 1 and parts[0] == "train":
            candidates.add("")
        elif len(parts) > 2 and parts[1] == "train":
            candidates.add(f"{parts[0]}/")
    if not candidates:
        raise DatasetError(f"{source}: no train/ folder at the top or under one root folder (dogImages layout)")
    if len(candidates) > 1:
        raise DatasetError(f"{source}: several candidate dataset roots {sorted(candidates)}; expected one")
    return candidates.pop()


def _index_paths(paths: list[str], read_bytes: Callable[[str], bytes], source: str) -> DatasetIndex:
    """Build the index from every path in the source (directories end with "/")."""
    prefix = _find_split_prefix(paths, source)
    class_folders: dict[str, set[str]] = {split: set() for split in SPLITS}
    images: dict[str, dict[str, list[str]]] = {split: {} for split in SPLITS}
    for path in paths:
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix) :].split("/")
        if len(parts) < 2 or parts[0] not in SPLITS or not parts[1]:
            continue
        split, class_name = parts[0], parts[1]
        class_folders[split].add(class_name)
        if len(parts) == 3 and _is_image(parts[2]):
            images[split].setdefault(class_name, []).append(path)
    for split in SPLITS:
        if not class_folders[split]:
            raise DatasetError(f"{source}: split folder {prefix}{split}/ is missing or has no class folders")
        for class_name in sorted(class_folders[split]):
            if not images[split].get(class_name):
                raise DatasetError(f"{source}: class folder {prefix}{split}/{class_name}/ has no images")
    classes = sorted(class_folders["train"])
    class_to_label = {name: label for label, name in enumerate(classes)}
    for split in ("valid", "test"):
        unknown = sorted(class_folders[split] - set(classes))
        if unknown:
            raise DatasetError(f"{source}: {split}/ has class folders that train/ lacks: {unknown[:5]}")
    splits = {
        split: [
            ImageRef(path, class_to_label[class_name])
            for class_name in sorted(images[split])
            for path in sorted(images[split][class_name])
        ]
        for split in SPLITS
    }
    return DatasetIndex(classes=classes, splits=splits, read_bytes=read_bytes, source=source)


def _index_zip(zip_path: Path) -> DatasetIndex:
    archive = zipfile.ZipFile(zip_path)
    paths = archive.namelist()
    # Directory entries may be absent in zips made by some tools: derive each file's folders too.
    folders = {path.rsplit("/", 1)[0] + "/" for path in paths if "/" in path.rstrip("/")}
    return _index_paths(sorted(set(paths) | folders), archive.read, str(zip_path))


def _index_folder(folder: Path) -> DatasetIndex:
    paths = []
    for directory, subdirectories, files in os.walk(folder):
        relative = Path(directory).relative_to(folder).as_posix()
        relative = "" if relative == "." else f"{relative}/"
        paths.extend(f"{relative}{name}/" for name in subdirectories)
        paths.extend(f"{relative}{name}" for name in files)

    def read_bytes(path: str) -> bytes:
        return (folder / path).read_bytes()

    return _index_paths(sorted(paths), read_bytes, str(folder))


def index_dataset(location: str | os.PathLike[str]) -> DatasetIndex:
    """Index a dataset zip, a folder holding exactly one zip, or an extracted dogImages folder."""
    location = Path(location)
    if location.is_file():
        return _index_zip(location)
    if not location.is_dir():
        raise DatasetError(f"dataset location {location} does not exist")
    zips = sorted(location.glob("*.zip"))
    has_folders = any(child.is_dir() for child in location.iterdir())
    if len(zips) == 1 and not has_folders:
        return _index_zip(zips[0])
    if len(zips) > 1 and not has_folders:
        raise DatasetError(f"{location} holds several zips {[z.name for z in zips]}; expected one dataset")
    return _index_folder(location)


def decode_image(data: bytes, image_size: int) -> torch.Tensor:
    """Decode and resize to (image_size, image_size, 3) uint8; raises on a corrupt or truncated file."""
    with Image.open(io.BytesIO(data)) as image:
        # draft() lets libjpeg scale down while decoding, which is most of the decode cost for large photos.
        image.draft("RGB", (image_size, image_size))
        # Phone photos are stored sideways with an EXIF orientation tag; inference.py turns them upright too.
        ImageOps.exif_transpose(image, in_place=True)
        rgb = image.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)
    return torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(image_size, image_size, 3)


def decode_split(
    index: DatasetIndex,
    split: str,
    image_size: int,
    *,
    max_corrupt_fraction: float,
    workers: int | None = None,
) -> DecodedSplit:
    """Decode every image of a split once; skip and count corrupt ones, fail above the allowed share."""
    refs = index.splits[split]

    def load(ref: ImageRef) -> torch.Tensor | None:
        try:
            return decode_image(index.read_bytes(ref.path), image_size)
        except Exception as error:  # PIL raises OSError, SyntaxError, ValueError... for bad bytes
            logger.warning("skipping corrupt image %s: %s", ref.path, error)
            return None

    # PIL releases the GIL while decoding, so threads use every core before training starts.
    with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
        decoded = list(pool.map(load, refs))
    corrupt = [ref.path for ref, image in zip(refs, decoded, strict=True) if image is None]
    if refs and len(corrupt) / len(refs) > max_corrupt_fraction:
        raise DatasetError(
            f"{index.source}: {len(corrupt)} of {len(refs)} images in {split}/ are corrupt "
            f"(more than the allowed {max_corrupt_fraction:.1%}), e.g. {corrupt[:3]}"
        )
    kept = [(image, ref) for ref, image in zip(refs, decoded, strict=True) if image is not None]
    images = torch.stack([image for image, _ in kept]) if kept else torch.empty(0, image_size, image_size, 3)
    labels = torch.tensor([ref.label for _, ref in kept], dtype=torch.long)
    paths = [ref.path for _, ref in kept]
    return DecodedSplit(images=images.to(torch.uint8), labels=labels, corrupt_files=corrupt, paths=paths)


def normalise(images_nhwc: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in channels_last memory, ImageNet-normalised."""
    batch = images_nhwc.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255
    return ((batch - mean) / std).contiguous(memory_format=torch.channels_last)


def progressive_sizes(final_size: int, epochs: int, *, start_fraction: float = 0.5, multiple: int = 16) -> list[int]:
    """Training resolution per epoch for progressive resizing: a linear ramp from ``start_fraction`` of
    ``final_size`` in epoch 1 up to ``final_size``, reached one epoch before the end (the last two epochs run at
    the final size, so the network ends on the resolution it is evaluated and served at).

    Sizes are rounded down to a ``multiple`` (ResNet halves the resolution five times) and never below 32 px or
    above ``final_size``. Compute per image scales with the pixel count, so early epochs cost a fraction of a
    full-size one: e.g. 128 px over 5 epochs gives 64, 80, 96, 128, 128 (0.64 of the pixels of 5 full epochs).
    """
    if epochs < 1:
        return []
    start = max(min(32, final_size), min(final_size, int(final_size * start_fraction)))
    ramp_end = max(1, epochs - 1)  # epoch at which the final size is reached
    sizes = []
    for epoch in range(1, epochs + 1):
        if epoch >= ramp_end:
            sizes.append(final_size)
            continue
        exact = start + (final_size - start) * (epoch - 1) / (ramp_end - 1)
        sizes.append(max(min(32, final_size), min(final_size, int(exact) // multiple * multiple)))
    return sizes


def resize_batch(batch: torch.Tensor, size: int) -> torch.Tensor:
    """A normalised (N, 3, H, W) batch resized to (size, size), bilinear with antialiasing, channels_last."""
    if batch.shape[-1] == size and batch.shape[-2] == size:
        return batch
    resized = torch.nn.functional.interpolate(batch, size=(size, size), mode="bilinear", antialias=True)
    return resized.contiguous(memory_format=torch.channels_last)


def image_batches(
    split: DecodedSplit,
    batch_size: int,
    device: torch.device,
    *,
    shuffle: bool,
    flip: bool,
    generator: torch.Generator | None = None,
    max_batches: int | None = None,
    size: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of normalised images and labels; random order and per-sample horizontal flips when training.

    ``size``: resize each batch to this resolution (progressive resizing trains early epochs below the decoded
    size); None keeps the decoded size.
    """
    count = len(split)
    order = torch.randperm(count, generator=generator) if shuffle else torch.arange(count)
    for number, start in enumerate(range(0, count, batch_size)):
        if max_batches is not None and number >= max_batches:
            return
        indices = order[start : start + batch_size]
        images = split.images[indices]
        if flip:
            flipped = torch.rand(len(indices), generator=generator) < 0.5
            images[flipped] = images[flipped].flip(2)
        batch = normalise(images, device)
        if size is not None:
            batch = resize_batch(batch, size)
        yield batch, split.labels[indices].to(device, non_blocking=True)


def feature_batches(
    features: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    max_batches: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of cached backbone features.

    ``features`` is (N, V, D): V views per image (the image and its mirror when training), one picked at random
    per sample, which is the same flip augmentation as on images.
    """
    count, views = features.shape[0], features.shape[1]
    order = torch.randperm(count, generator=generator) if shuffle else torch.arange(count)
    for number, start in enumerate(range(0, count, batch_size)):
        if max_batches is not None and number >= max_batches:
            return
        indices = order[start : start + batch_size]
        view = torch.randint(views, (len(indices),), generator=generator) if views > 1 else torch.zeros_like(indices)
        yield features[indices, view.to(features.device)], labels[indices]
