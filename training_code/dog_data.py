"""The dog-image dataset: found in a zip or a folder, decoded once (into memory, or into a memory-mapped scratch
file beyond a memory budget), served as augmented batches.

Input (the SageMaker training channel): a dataset zip, a folder holding one zip, or an extracted folder, each in
the dogImages layout (``train/``, ``valid/``, ``test/`` with one folder per class), with or without one root folder
above the splits. The zip is read in place: no extraction to disk.

Why a decode cache: the seed decoded and resized every full-size JPEG every epoch. Here each image is decoded
once (PIL draft mode lets libjpeg scale down by 1/2, 1/4 or 1/8 while decoding) and resized to the training
size, straight into one preallocated uint8 tensor in channels-last order (N, H, W, 3): about 1 GB for 6,680
images at 224 px, with no second copy while decoding (the peak is the cache itself). A batch is then a gather, a
per-sample horizontal flip (the seed's augmentation) and a normalisation, already in the channels_last memory
format the CPU and GPU kernels prefer. No DataLoader workers: on few cores they compete with the compute threads
for the same cores.

Datasets larger than memory: the decoded cache costs H*W*3 bytes per image (150,528 B at 224 px: 147 KiB, 144 MiB
per 1,000 images; measured peak RSS in docs/deploy.md, "Larger datasets"). ``decode_splits`` plans the splits
against a budget (``memory_budget_bytes``: half the container's memory by default) in order train, valid, test: a
split that fits what is left of the budget is decoded into memory as above; one that does not is written once to a
scratch file and read back through a copy-on-write ``numpy.memmap``, as a torch tensor over the file. Every reader
(batching, the feature pass, int8 calibration, evaluation) indexes ``DecodedSplit.images`` the same way in both
modes, so there is one batching path. The file is unlinked as soon as it is mapped (or when decoding fails):
nothing is left in the scratch folder, and its disk space returns when the process ends. Pages read from the file
are file-backed and reclaimable; ``DecodedSplit.rows`` also drops them from the process every
``RELEASE_EVERY_BYTES``, so resident memory stays bounded by the batch working set, not the dataset.

Bad data: an image that fails to decode is skipped, logged and counted; a split where more than
``max_corrupt_fraction`` of the images are corrupt stops the run. An empty class folder, a class in valid/test
that train lacks, or a missing split raises ``DatasetError`` naming the folder.
"""

from __future__ import annotations

import functools
import io
import logging
import mmap
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Share of the container's memory the decoded images may take in memory; the rest is for the model, activations,
# optimiser state, the feature cache and the Python process itself.
DEFAULT_BUDGET_FRACTION = 0.5
# Bytes read from an on-disk cache between drops of its pages from this process's resident set.
RELEASE_EVERY_BYTES = 256 * 1024 * 1024
# Images decoded per round: bounds the decoded images waiting to be copied into the cache.
DECODE_CHUNK = 512
# decode_split times this thread against its pool on a split of at least this many chunks.
TRIAL_MIN_CHUNKS = 4
THIS_THREAD = "this thread"


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
    """One split decoded to uint8 (N, H, W, 3), with the files skipped as corrupt.

    ``images`` is an in-memory tensor, or (``cache_file`` set) a tensor over a memory-mapped scratch file; index
    it, or use ``rows``, which also keeps the resident pages of a mapped file bounded.
    """

    images: torch.Tensor
    labels: torch.Tensor
    corrupt_files: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # of the decoded images, in order (corrupt ones left out)
    cache_file: str | None = None  # the (already unlinked) scratch file behind ``images``; None: in memory
    decode_workers: int | None = None  # the threads decode_split's trial chose (1: the calling thread); None: no trial
    _mapping: Any = field(default=None, repr=False)  # the numpy.memmap, kept alive with the tensor
    _read_since_release: int = field(default=0, repr=False)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def on_disk(self) -> bool:
        return self.cache_file is not None

    def rows(self, indices: torch.Tensor | slice) -> torch.Tensor:
        """``images[indices]``; for an on-disk split, drops the file's pages from this process now and then."""
        batch = self.images[indices]
        if self._mapping is not None:
            self._read_since_release += batch.numel()
            if self._read_since_release >= RELEASE_EVERY_BYTES:
                self.release_pages()
        return batch

    def release_pages(self) -> None:
        """Unmap the file pages read so far from this process (they stay in the page cache, re-read on demand);
        a no-op in memory. The mapping is copy-on-write and never written, so no data is lost."""
        self._read_since_release = 0
        raw = getattr(self._mapping, "_mmap", None)
        if raw is not None and hasattr(mmap, "MADV_DONTNEED"):
            raw.madvise(mmap.MADV_DONTNEED)


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


def _faster(seconds_per_image: Mapping[str, float], threads: int) -> str:
    """The way that decoded an image faster in decode_split's trial; without a trial, the pool of ``threads``."""
    pool = THIS_THREAD if threads == 1 else f"{threads} threads"
    return min(seconds_per_image, key=seconds_per_image.__getitem__, default=pool)


def decoded_bytes(images: int, image_size: int) -> int:
    """Bytes of ``images`` decoded uint8 (H, W, 3) images: 150,528 per image at 224 px."""
    return images * image_size * image_size * 3


def container_memory_bytes() -> int:
    """The memory this process may use: the cgroup limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``) when
    one is set and below the host's, else the host's total memory."""
    import psutil

    total = int(psutil.virtual_memory().total)
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            return int(text)
    return total


def memory_budget_bytes(budget_mb: float = 0, *, fraction: float = DEFAULT_BUDGET_FRACTION) -> int:
    """The decoded-cache budget: ``budget_mb`` MiB when given (> 0), else ``fraction`` of the container's memory."""
    if budget_mb > 0:
        return int(budget_mb * 1024 * 1024)
    return int(container_memory_bytes() * fraction)


@dataclass(frozen=True)
class CacheDecision:
    split: str
    images: int
    image_size: int
    budget_left: int  # of the budget, before this split
    on_disk: bool

    @property
    def bytes(self) -> int:
        return decoded_bytes(self.images, self.image_size)

    def describe(self, cache_dir: str | os.PathLike[str]) -> str:
        per_image, where = decoded_bytes(1, self.image_size) / 1024, cache_dir
        figures = f"{self.images:,} images x {per_image:.0f} KiB = {_size(self.bytes)}"
        if self.on_disk:
            return f"{self.split} split: {figures} > budget left {_size(self.budget_left)} -> on-disk cache in {where}"
        return f"{self.split} split: {figures} <= budget left {_size(self.budget_left)} -> in memory"


def _size(count: int) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.1f} MiB"


def plan_decoded_cache(counts: Mapping[str, int], image_size: int, budget_bytes: int) -> dict[str, CacheDecision]:
    """Where each split's decoded images go (pure): in the given order, a split goes in memory when its bytes fit
    what is left of the budget (equal fits), else on disk, taking nothing from the budget."""
    plan, left = {}, budget_bytes
    for split, count in counts.items():
        need = decoded_bytes(count, image_size)
        on_disk = need > left
        plan[split] = CacheDecision(split, count, image_size, left, on_disk)
        if not on_disk:
            left -= need
    return plan


def default_cache_dir() -> str:
    """Scratch folder for on-disk caches: under SageMaker's input folder (on the training volume,
    TrainingVolumeSizeGb, and never uploaded) when there is one, else the system temp folder."""
    input_dir = os.environ.get("SM_INPUT_DIR")
    return str(Path(input_dir) / "decoded_cache") if input_dir else tempfile.gettempdir()


def decode_split(
    index: DatasetIndex,
    split: str,
    image_size: int,
    *,
    max_corrupt_fraction: float,
    workers: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
) -> DecodedSplit:
    """Decode every image of a split once; skip and count corrupt ones, fail above the allowed share.

    ``cache_dir`` None: into memory. A folder: into a scratch file there, mapped back (see the module docstring).
    ``on_chunk(done, total)`` is called after each chunk, for progress lines.
    """
    refs = index.splits[split]

    def load(ref: ImageRef) -> torch.Tensor | None:
        try:
            return decode_image(index.read_bytes(ref.path), image_size)
        except Exception as error:  # PIL raises OSError, SyntaxError, ValueError... for bad bytes
            logger.warning("skipping corrupt image %s: %s", ref.path, error)
            return None

    shape = (image_size, image_size, 3)
    corrupt: list[str] = []
    kept: list[ImageRef] = []
    file_path: Path | None = None
    if cache_dir is None:
        buffer = torch.empty((len(refs), *shape), dtype=torch.uint8)
        # Rows are copied in by numpy: a torch copy of this size runs on OpenMP threads, whose spinning takes
        # the cores from the decoding threads (on 2 cores: 1,500 against 2,250 images/s for 3,000 images).
        rows = buffer.numpy()
    else:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f"decoded-{split}-{image_size}px-", suffix=".u8", dir=cache_dir)
        file_path = Path(name)
        out = os.fdopen(handle, "wb")
    try:
        # PIL releases the GIL while decoding, so threads use every core before training starts when decoding is
        # the cost (photo-sized JPEGs: 860 against 470 images/s on 2 cores at 224 px). On small files the
        # per-image Python work is the cost and threads only contend for the GIL (1 KB JPEGs: 3,450 against 6,300
        # images/s). So, unless ``workers`` is given, a split of enough chunks decodes its second chunk on this
        # thread and its third on the pool (the first warms both up), and the faster way decodes the rest.
        # Chunks bound the decoded images waiting to be copied into the cache (the whole split never sits in a
        # Python list).
        threads = workers or min(4, os.cpu_count() or 1)
        ways = {1: THIS_THREAD, 2: f"{threads} threads"}
        chunk_starts = range(0, len(refs), DECODE_CHUNK)
        seconds_per_image: dict[str, float] = {}
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for number, chunk_start in enumerate(chunk_starts):
                chunk = refs[chunk_start : chunk_start + DECODE_CHUNK]
                trial = workers is None and threads > 1 and len(chunk_starts) >= TRIAL_MIN_CHUNKS and number in ways
                way = ways[number] if trial else _faster(seconds_per_image, threads)
                started = time.perf_counter()
                images = map(load, chunk) if way == THIS_THREAD else pool.map(load, chunk)
                for ref, image in zip(chunk, images, strict=True):
                    if image is None:
                        corrupt.append(ref.path)
                        continue
                    if file_path is None:
                        rows[len(kept)] = image.numpy()
                    else:
                        out.write(image.numpy().tobytes())
                    kept.append(ref)
                if trial:
                    seconds_per_image[way] = (time.perf_counter() - started) / len(chunk)
                if on_chunk is not None:
                    on_chunk(len(kept) + len(corrupt), len(refs))
        chosen_workers = None
        if len(seconds_per_image) == 2:
            faster = _faster(seconds_per_image, threads)
            chosen_workers = 1 if faster == THIS_THREAD else threads
            timings = ", ".join(f"{way} {seconds * 1e3:.2f} ms" for way, seconds in seconds_per_image.items())
            logger.info("decoding %s on %s (per image: %s)", split, faster, timings)
        if refs and len(corrupt) / len(refs) > max_corrupt_fraction:
            raise DatasetError(
                f"{index.source}: {len(corrupt)} of {len(refs)} images in {split}/ are corrupt "
                f"(more than the allowed {max_corrupt_fraction:.1%}), e.g. {corrupt[:3]}"
            )
        labels = torch.tensor([ref.label for ref in kept], dtype=torch.long)
        paths = [ref.path for ref in kept]
        if file_path is None:
            # A view: the few corrupt images' rows stay allocated, rather than a second copy of the split.
            images = buffer[: len(kept)]
            return DecodedSplit(
                images=images, labels=labels, corrupt_files=corrupt, paths=paths, decode_workers=chosen_workers
            )
        out.close()
        if not kept:
            empty = torch.empty((0, *shape), dtype=torch.uint8)
            return DecodedSplit(
                images=empty, labels=labels, corrupt_files=corrupt, paths=paths, decode_workers=chosen_workers
            )
        # Copy-on-write: writable for torch.from_numpy, but no reader writes, and the file is never changed.
        mapping = np.memmap(file_path, dtype=np.uint8, mode="c", shape=(len(kept), *shape))
        return DecodedSplit(
            images=torch.from_numpy(mapping),
            labels=labels,
            corrupt_files=corrupt,
            paths=paths,
            cache_file=str(file_path),
            decode_workers=chosen_workers,
            _mapping=mapping,
        )
    finally:
        if file_path is not None:
            if not out.closed:
                out.close()
            file_path.unlink(missing_ok=True)  # mapped pages stay readable; the space returns at exit


def decode_splits(
    index: DatasetIndex,
    image_size: int,
    *,
    max_corrupt_fraction: float,
    budget_bytes: int,
    cache_dir: str | os.PathLike[str] | None = None,
    splits: tuple[str, ...] = SPLITS,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, DecodedSplit]:
    """Decode the splits, each in memory or on disk as ``plan_decoded_cache`` decides; logs each decision.
    ``progress(split, done, total)`` is called after each chunk of images."""
    cache_dir = cache_dir or default_cache_dir()
    plan = plan_decoded_cache({name: len(index.splits[name]) for name in splits}, image_size, budget_bytes)
    decoded = {}
    workers = None  # the first split large enough for decode_split's trial decides for the splits after it
    for name, decision in plan.items():
        logger.info("decoded cache: %s", decision.describe(cache_dir))
        decoded[name] = decode_split(
            index,
            name,
            image_size,
            max_corrupt_fraction=max_corrupt_fraction,
            workers=workers,
            cache_dir=cache_dir if decision.on_disk else None,
            on_chunk=None if progress is None else functools.partial(progress, name),
        )
        workers = workers or decoded[name].decode_workers
    return decoded


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


def epoch_order(
    count: int, *, shuffle: bool, generator: torch.Generator | None = None, images_per_epoch: int | None = None
) -> torch.Tensor:
    """The indices one epoch visits: all ``count`` in order, or shuffled; the first ``images_per_epoch`` of them."""
    order = torch.randperm(count, generator=generator) if shuffle else torch.arange(count)
    return order if images_per_epoch is None else order[:images_per_epoch]


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
    images_per_epoch: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of normalised images and labels; random order and per-sample horizontal flips when training.

    ``size``: resize each batch to this resolution (progressive resizing trains early epochs below the decoded
    size); None keeps the decoded size. ``images_per_epoch``: only this many of the (shuffled) images, so that
    ranks with shards one image apart take the same number of steps.
    """
    order = epoch_order(len(split), shuffle=shuffle, generator=generator, images_per_epoch=images_per_epoch)
    count = len(order)
    for number, start in enumerate(range(0, count, batch_size)):
        if max_batches is not None and number >= max_batches:
            return
        indices = order[start : start + batch_size]
        images = split.rows(indices)
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
    images_per_epoch: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of cached backbone features.

    ``features`` is (N, V, D): V views per image (the image and its mirror when training), one picked at random
    per sample, which is the same flip augmentation as on images. ``images_per_epoch`` as in ``image_batches``.
    """
    views = features.shape[1]
    order = epoch_order(features.shape[0], shuffle=shuffle, generator=generator, images_per_epoch=images_per_epoch)
    count = len(order)
    for number, start in enumerate(range(0, count, batch_size)):
        if max_batches is not None and number >= max_batches:
            return
        indices = order[start : start + batch_size]
        view = torch.randint(views, (len(indices),), generator=generator) if views > 1 else torch.zeros_like(indices)
        yield features[indices, view.to(features.device)], labels[indices]
