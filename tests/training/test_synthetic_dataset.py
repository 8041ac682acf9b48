"""The synthetic dataset generator: layout, counts, names, determinism, realistic sizes, command line."""

from __future__ import annotations

import io
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from offline import synthetic_dataset
from offline.synthetic_dataset import class_folder_names, write_dataset_zip


def _images_per_split_and_class(path: Path) -> Counter[tuple[str, str]]:
    with zipfile.ZipFile(path) as archive:
        names = [name for name in archive.namelist() if name.endswith(".jpg")]
    return Counter((name.split("/")[1], name.split("/")[2]) for name in names)


def test_zip_has_dogimages_layout_with_counts_spread_over_classes(tmp_path: Path) -> None:
    # GIVEN 5 classes and split counts that do not divide evenly
    path = write_dataset_zip(tmp_path / "d.zip", num_classes=5, counts=(12, 6, 5), image_size=16)

    # WHEN the zip is listed
    counts = _images_per_split_and_class(path)

    # THEN every split holds exactly its count, each class at least one image, under the dogImages root
    for split, total in (("train", 12), ("valid", 6), ("test", 5)):
        per_class = [counts[(split, name)] for name in class_folder_names(5)]
        assert sum(per_class) == total
        assert min(per_class) >= 1 and max(per_class) - min(per_class) <= 1
    with zipfile.ZipFile(path) as archive:
        first = sorted(n for n in archive.namelist() if n.endswith(".jpg"))[0]
    assert first.startswith("dogImages/test/001.Affenpinscher/Affenpinscher_")


def test_class_folder_names_use_real_breeds_then_generated_names() -> None:
    names = class_folder_names(133)

    assert names[0] == "001.Affenpinscher"
    assert names[29] == "030.Border_terrier"
    assert names[30] == "031.Synthetic_breed_031"
    assert names[-1] == "133.Synthetic_breed_133"
    assert len(set(names)) == 133


def test_root_can_be_left_out(tmp_path: Path) -> None:
    path = write_dataset_zip(tmp_path / "d.zip", num_classes=2, counts=(2, 2, 2), image_size=16, root="")

    with zipfile.ZipFile(path) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}

    assert tops == {"train", "valid", "test"}


def test_same_seed_same_images_other_seed_other_images(tmp_path: Path) -> None:
    def write(name: str, seed: int) -> bytes:
        return write_dataset_zip(tmp_path / name, num_classes=2, counts=(4, 2, 2), image_size=16, seed=seed)

    first, again, other = write("a.zip", 7), write("b.zip", 7), write("c.zip", 8)

    def contents(path: Path) -> list[bytes]:
        with zipfile.ZipFile(path) as archive:
            return [archive.read(name) for name in sorted(archive.namelist())]

    assert contents(first) == contents(again)
    assert contents(first) != contents(other)


def test_realistic_jpegs_are_photo_sized(tmp_path: Path) -> None:
    path = write_dataset_zip(tmp_path / "d.zip", num_classes=2, counts=(4, 2, 2), realistic=True, seed=2)

    with zipfile.ZipFile(path) as archive:
        members = [info for info in archive.infolist() if info.filename.endswith(".jpg")]
        sizes = [Image.open(io.BytesIO(archive.read(info))).size for info in members]
    mean_bytes = sum(info.file_size for info in members) / len(members)

    assert mean_bytes > 20_000
    assert all(min(size) >= 200 and max(size) >= 300 for size in sizes)


def test_plain_images_have_the_asked_size(tmp_path: Path) -> None:
    path = write_dataset_zip(tmp_path / "d.zip", num_classes=2, counts=(2, 2, 2), image_size=24)

    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".jpg"))
        assert Image.open(io.BytesIO(archive.read(name))).size == (24, 24)


def test_count_below_class_count_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="valid count 2 is below the class count 3"):
        write_dataset_zip(tmp_path / "d.zip", num_classes=3, counts=(3, 2, 3), image_size=16)


def test_command_line_writes_the_zip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "out" / "cli.zip"

    synthetic_dataset.main([str(target), "--classes", "3", "--counts", "6", "3", "3", "--image-size", "16"])

    assert sum(_images_per_split_and_class(target).values()) == 12
    assert "3 classes" in capsys.readouterr().out
