"""A synthetic dogImages-layout dataset: class-dependent images a ResNet can learn, written as a zip.

Layout (the real dataset's)::

    dogImages/train/001.Affenpinscher/Affenpinscher_00001.jpg
    dogImages/valid/...   dogImages/test/...

Each class has a signature a convolutional network picks up in a few epochs even from random weights: a
background hue, a foreground shape (one of seven), and a foreground hue. Position, size, brightness and noise vary
per image, so the classes are not trivially separable by a single pixel. ``realistic=True`` draws photo-like
image sizes (about 300-800 px a side) with sensor-like noise so that the JPEGs weigh roughly what the real
dataset's do (tens of kilobytes) and decoding costs what it costs on real data.

Command line::

    python -m offline.synthetic_dataset OUT.zip --classes 133 --counts 6680 835 836 --image-size 64 \
        [--realistic-jpeg] [--seed 0] [--root dogImages]
"""

from __future__ import annotations

import argparse
import colorsys
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SPLITS = ("train", "valid", "test")

# The first breeds of the real dataset, so that generated class folders look like the real ones.
REAL_BREED_NAMES = (
    "Affenpinscher", "Afghan_hound", "Airedale_terrier", "Akita", "Alaskan_malamute", "American_eskimo_dog",
    "American_foxhound", "American_staffordshire_terrier", "American_water_spaniel", "Anatolian_shepherd_dog",
    "Australian_cattle_dog", "Australian_shepherd", "Australian_terrier", "Basenji", "Basset_hound", "Beagle",
    "Bearded_collie", "Beauceron", "Bedlington_terrier", "Belgian_malinois", "Belgian_sheepdog",
    "Belgian_tervuren", "Bernese_mountain_dog", "Bichon_frise", "Black_and_tan_coonhound",
    "Black_russian_terrier", "Bloodhound", "Bluetick_coonhound", "Border_collie", "Border_terrier",
)  # fmt: skip

SHAPES = ("disc", "square", "triangle", "h_stripes", "v_stripes", "diagonal_stripes", "ring")
_GOLDEN_RATIO_CONJUGATE = 0.6180339887


def class_folder_names(num_classes: int) -> list[str]:
    """Folder names in index order: "001.Affenpinscher", ..., then "031.Synthetic_breed_031" and so on."""
    width = max(3, len(str(num_classes)))
    names = []
    for index in range(num_classes):
        breed = REAL_BREED_NAMES[index] if index < len(REAL_BREED_NAMES) else f"Synthetic_breed_{index + 1:0{width}d}"
        names.append(f"{index + 1:0{width}d}.{breed}")
    return names


def split_counts_per_class(total: int, num_classes: int) -> list[int]:
    """Spread ``total`` images over the classes as evenly as possible (earlier classes get the remainder)."""
    base, remainder = divmod(total, num_classes)
    return [base + (1 if index < remainder else 0) for index in range(num_classes)]


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    red, green, blue = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return round(red * 255), round(green * 255), round(blue * 255)


def _class_signature(class_index: int) -> tuple[float, str, float]:
    # Golden-ratio hue steps keep neighbouring class indices far apart on the colour wheel.
    background_hue = (class_index * _GOLDEN_RATIO_CONJUGATE) % 1.0
    shape = SHAPES[class_index % len(SHAPES)]
    foreground_hue = (background_hue + 0.5 + 0.11 * (class_index // len(SHAPES))) % 1.0
    return background_hue, shape, foreground_hue


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], colour) -> None:
    left, top, right, bottom = box
    stripe = max(2, (right - left) // 6)
    if shape == "disc":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([((left + right) // 2, top), (right, bottom), (left, bottom)], fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=max(2, (right - left) // 5))
    elif shape == "h_stripes":
        for y in range(top, bottom, 2 * stripe):
            draw.rectangle((left, y, right, min(bottom, y + stripe - 1)), fill=colour)
    elif shape == "v_stripes":
        for x in range(left, right, 2 * stripe):
            draw.rectangle((x, top, min(right, x + stripe - 1), bottom), fill=colour)
    else:  # diagonal stripes across the box
        for offset in range(-(bottom - top), right - left, 2 * stripe):
            draw.line((left + offset, bottom, left + offset + (bottom - top), top), fill=colour, width=stripe)


def render_image(
    class_index: int,
    rng: np.random.Generator,
    *,
    image_size: int,
    realistic: bool,
    noise_sigma: float | None = None,
) -> Image.Image:
    """One image of a class: its background hue, shape and foreground hue, with per-image variation.
    ``noise_sigma``: the pixel noise (default 14 realistic, 6 not); more makes the images harder to tell apart."""
    background_hue, shape, foreground_hue = _class_signature(class_index)
    if realistic:
        width = int(np.clip(rng.normal(500, 90), 300, 800))
        height = int(width * rng.choice([0.75, 0.75, 0.667, 1.0, 1.333]))
    else:
        width = height = image_size
    background = _hsv_to_rgb(background_hue + rng.normal(0, 0.015), 0.55, rng.uniform(0.55, 0.9))
    foreground = _hsv_to_rgb(foreground_hue + rng.normal(0, 0.015), 0.85, rng.uniform(0.7, 1.0))
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    short_side = min(width, height)
    size = int(short_side * rng.uniform(0.45, 0.75))
    left = int(rng.integers(0, width - size + 1))
    top = int(rng.integers(0, height - size + 1))
    _draw_shape(draw, shape, (left, top, left + size, top + size), foreground)
    pixels = np.asarray(image, dtype=np.float32)
    if noise_sigma is None:
        noise_sigma = 14.0 if realistic else 6.0
    pixels += rng.normal(0.0, noise_sigma, size=pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _jpeg_bytes(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def write_dataset_zip(
    path: str | Path,
    *,
    num_classes: int = 133,
    counts: Sequence[int] = (6680, 835, 836),
    image_size: int = 64,
    realistic: bool = False,
    seed: int = 0,
    root: str = "dogImages",
    noise_sigma: dict[str, float] | None = None,
) -> Path:
    """Write a dogImages-layout zip and return its path.

    ``counts`` are the images per split (train, valid, test), spread evenly over the classes; every class gets at
    least one image in every split. ``root`` is the single top folder ("" for none). JPEGs are stored, not
    deflated, as they are already compressed. ``noise_sigma``: pixel noise per split name, for a split harder
    (or easier) than the others.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    if len(counts) != len(SPLITS):
        raise ValueError(f"counts must give {len(SPLITS)} numbers (train, valid, test), got {list(counts)}")
    for split, count in zip(SPLITS, counts, strict=True):
        if count < num_classes:
            raise ValueError(
                f"{split} count {count} is below the class count {num_classes}: every class needs an image per split"
            )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f"{root.strip('/')}/" if root.strip("/") else ""
    class_names = class_folder_names(num_classes)
    rng = np.random.default_rng(seed)
    quality = 85 if realistic else 90
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        if prefix:
            archive.writestr(prefix, b"")
        for split, total in zip(SPLITS, counts, strict=True):
            archive.writestr(f"{prefix}{split}/", b"")
            for class_index, count in enumerate(split_counts_per_class(total, num_classes)):
                folder = f"{prefix}{split}/{class_names[class_index]}/"
                archive.writestr(folder, b"")
                breed = class_names[class_index].split(".", 1)[1]
                for number in range(count):
                    image = render_image(
                        class_index,
                        rng,
                        image_size=image_size,
                        realistic=realistic,
                        noise_sigma=(noise_sigma or {}).get(split),
                    )
                    archive.writestr(f"{folder}{breed}_{number + 1:05d}.jpg", _jpeg_bytes(image, quality))
    return path


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="the zip file to write")
    parser.add_argument("--classes", type=int, default=133, help="number of classes (default 133)")
    parser.add_argument(
        "--counts", type=int, nargs=3, default=(6680, 835, 836), metavar=("TRAIN", "VALID", "TEST"),
        help="images per split (default 6680 835 836)",
    )  # fmt: skip
    parser.add_argument("--image-size", type=int, default=64, help="side of the square images in px (default 64)")
    parser.add_argument(
        "--realistic-jpeg", action="store_true",
        help="photo-like sizes (300-800 px) and noise, so files weigh what real ones do; --image-size is ignored",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default="dogImages", help='top folder inside the zip ("" for none)')
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> Path:
    args = _parse_args(argv)
    path = write_dataset_zip(
        args.output,
        num_classes=args.classes,
        counts=tuple(args.counts),
        image_size=args.image_size,
        realistic=args.realistic_jpeg,
        seed=args.seed,
        root=args.root,
    )
    size_mb = path.stat().st_size / 1e6
    print(f"wrote {path} ({args.classes} classes, counts {list(args.counts)}, {size_mb:.1f} MB)")
    return path


if __name__ == "__main__":
    main()
