"""The dataset reader: zip or folder, with or without a root folder; corrupt images; layout errors; batches."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import dog_data
import pytest
import torch
from conftest import TINY_CLASSES, extract

from offline.synthetic_dataset import write_dataset_zip


def _counts(index: dog_data.DatasetIndex) -> dict[str, int]:
    return {split: len(refs) for split, refs in index.splits.items()}


def test_zip_folder_with_zip_and_extracted_folders_index_alike(tmp_path: Path, tiny_dataset_zip: Path) -> None:
    # GIVEN the same dataset as a zip, a channel folder holding the zip, and extracted with and without the root
    channel = tmp_path / "channel"
    channel.mkdir()
    shutil.copy(tiny_dataset_zip, channel)
    with_root = extract(tiny_dataset_zip, tmp_path / "with_root")
    without_root = with_root / "dogImages"

    # WHEN each is indexed
    indexes = [dog_data.index_dataset(p) for p in (tiny_dataset_zip, channel, with_root, without_root)]

    # THEN they agree on classes (label order = sorted folder names) and counts
    assert all(index.classes == indexes[0].classes for index in indexes)
    assert indexes[0].classes[0] == "001.Affenpinscher" and len(indexes[0].classes) == TINY_CLASSES
    assert all(_counts(index) == {"train": 48, "valid": 16, "test": 16} for index in indexes)


def test_zip_without_directory_entries_is_indexed(tmp_path: Path, tiny_dataset_zip: Path) -> None:
    # Some zip tools write only file entries; the class folders must still be found.
    bare = tmp_path / "bare.zip"
    with zipfile.ZipFile(tiny_dataset_zip) as source, zipfile.ZipFile(bare, "w") as target:
        for info in source.infolist():
            if not info.is_dir():
                target.writestr(info.filename, source.read(info))

    assert _counts(dog_data.index_dataset(bare))["train"] == 48


def test_decode_gives_uint8_nhwc_at_the_asked_size(tiny_dataset_zip: Path) -> None:
    index = dog_data.index_dataset(tiny_dataset_zip)

    split = dog_data.decode_split(index, "valid", 24, max_corrupt_fraction=0.0)

    assert split.images.shape == (16, 24, 24, 3) and split.images.dtype == torch.uint8
    assert sorted(set(split.labels.tolist())) == list(range(TINY_CLASSES))
    assert split.corrupt_files == []


def test_decoding_times_this_thread_against_the_pool_and_the_later_splits_follow_the_faster(
    tiny_dataset_zip: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN chunks small enough that train (48 images) has the trial's chunks and valid (16) too few for a trial
    monkeypatch.setattr(dog_data, "DECODE_CHUNK", 8)
    monkeypatch.setattr(dog_data.os, "cpu_count", lambda: 2)
    index = dog_data.index_dataset(tiny_dataset_zip)
    pooled = dog_data.decode_splits(index, 24, max_corrupt_fraction=0.0, budget_bytes=1 << 30, splits=("train",))

    # WHEN the splits are decoded with the number of threads left to the trial
    with caplog.at_level("INFO", logger="dog_data"):
        decoded = dog_data.decode_splits(index, 24, max_corrupt_fraction=0.0, budget_bytes=1 << 30)

    # THEN train timed both ways and says which it chose; valid, too small to time, was decoded the chosen way
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("decoding train on ")]
    assert "(per image: this thread " in line and ", 2 threads " in line
    assert decoded["train"].decode_workers == (1 if line.startswith("decoding train on this thread") else 2)
    assert decoded["valid"].decode_workers is None
    assert not any(r.getMessage().startswith("decoding valid") for r in caplog.records)
    # AND either way the images are those the pool decodes, in the same order
    assert torch.equal(decoded["train"].images, pooled["train"].images)
    assert decoded["train"].paths == pooled["train"].paths


def test_decode_splits_passes_the_trials_choice_to_the_later_splits(
    tiny_dataset_zip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: dict[str, int | None] = {}
    decode_split = dog_data.decode_split

    def recording(index: dog_data.DatasetIndex, split: str, *args: object, **kwargs: object) -> dog_data.DecodedSplit:
        asked[split] = kwargs.get("workers")  # type: ignore[assignment]
        decoded = decode_split(index, split, *args, **kwargs)  # type: ignore[arg-type]
        if split == "train":
            decoded.decode_workers = 1  # as if the trial had found this thread faster
        return decoded

    monkeypatch.setattr(dog_data, "decode_split", recording)
    index = dog_data.index_dataset(tiny_dataset_zip)
    dog_data.decode_splits(index, 24, max_corrupt_fraction=0.0, budget_bytes=1 << 30)
    assert asked == {"train": None, "valid": 1, "test": 1}


def test_decoding_reports_each_chunk_of_each_split_corrupt_images_included(
    tmp_path: Path, tiny_dataset_zip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN chunks of 20 images and one corrupt image in train (48 images)
    monkeypatch.setattr(dog_data, "DECODE_CHUNK", 20)
    index = dog_data.index_dataset(_with_corrupt_images(tiny_dataset_zip, tmp_path / "d", 1))
    reported: list[tuple[str, int, int]] = []

    # WHEN the splits are decoded with a progress callback
    decoded = dog_data.decode_splits(
        index, 16, max_corrupt_fraction=0.05, budget_bytes=1 << 30,
        progress=lambda split, done, total: reported.append((split, done, total)),
    )  # fmt: skip

    # THEN every chunk of every split was reported, up to the split's whole count (the corrupt image counts as done)
    counts = _counts(index)
    assert reported[:3] == [("train", 20, 48), ("train", 40, 48), ("train", 48, 48)]
    assert [r for r in reported if r[0] == "valid"][-1] == ("valid", counts["valid"], counts["valid"])
    assert [r for r in reported if r[0] == "test"][-1] == ("test", counts["test"], counts["test"])
    assert len(decoded["train"]) == 47


def _with_corrupt_images(tiny_dataset_zip: Path, target: Path, how_many: int) -> Path:
    folder = extract(tiny_dataset_zip, target) / "dogImages" / "train" / "002.Afghan_hound"
    victims = sorted(folder.glob("*.jpg"))[:how_many]
    for victim in victims:
        victim.write_bytes(victim.read_bytes()[:40])  # a truncated JPEG: header only
    return target


def test_corrupt_image_is_skipped_and_counted(tmp_path: Path, tiny_dataset_zip: Path) -> None:
    # GIVEN one truncated JPEG among 48 training images
    index = dog_data.index_dataset(_with_corrupt_images(tiny_dataset_zip, tmp_path / "d", 1))

    # WHEN the split is decoded allowing up to 5% corrupt images
    split = dog_data.decode_split(index, "train", 16, max_corrupt_fraction=0.05)

    # THEN the bad file is skipped and named, the rest kept
    assert len(split) == 47
    assert len(split.corrupt_files) == 1 and "002.Afghan_hound" in split.corrupt_files[0]


def test_too_many_corrupt_images_stop_the_run(tmp_path: Path, tiny_dataset_zip: Path) -> None:
    index = dog_data.index_dataset(_with_corrupt_images(tiny_dataset_zip, tmp_path / "d", 3))

    with pytest.raises(dog_data.DatasetError, match=r"3 of 48 images in train/ are corrupt"):
        dog_data.decode_split(index, "train", 16, max_corrupt_fraction=0.05)


def test_empty_class_folder_is_a_clear_error(tmp_path: Path, tiny_dataset_zip: Path) -> None:
    root = extract(tiny_dataset_zip, tmp_path / "d") / "dogImages"
    for image in (root / "valid" / "003.Airedale_terrier").iterdir():
        image.unlink()

    with pytest.raises(dog_data.DatasetError, match=r"valid/003\.Airedale_terrier/ has no images"):
        dog_data.index_dataset(tmp_path / "d")


def test_empty_class_folder_inside_a_zip_is_a_clear_error(tmp_path: Path, tiny_dataset_zip: Path) -> None:
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(tiny_dataset_zip) as source, zipfile.ZipFile(broken, "w") as target:
        for info in source.infolist():
            akita_image = info.filename.startswith("dogImages/train/004.Akita/") and not info.is_dir()
            if not akita_image:
                target.writestr(info, source.read(info))

    with pytest.raises(dog_data.DatasetError, match=r"train/004\.Akita/ has no images"):
        dog_data.index_dataset(broken)


def test_missing_split_and_unknown_class_are_clear_errors(tmp_path: Path, tiny_dataset_zip: Path) -> None:
    root = extract(tiny_dataset_zip, tmp_path / "d") / "dogImages"
    shutil.copytree(root / "test" / "001.Affenpinscher", root / "test" / "999.Unknown")
    with pytest.raises(dog_data.DatasetError, match=r"test/ has class folders that train/ lacks: \['999.Unknown'\]"):
        dog_data.index_dataset(root)

    shutil.rmtree(root / "test")
    with pytest.raises(dog_data.DatasetError, match=r"test/ is missing"):
        dog_data.index_dataset(root)


def test_no_train_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "photos" / "a").mkdir(parents=True)

    with pytest.raises(dog_data.DatasetError, match="no train/ folder"):
        dog_data.index_dataset(tmp_path)


def test_image_batches_are_normalised_channels_last_and_flip_some_samples(tmp_path: Path) -> None:
    # GIVEN images whose left half is black and right half white
    images = torch.zeros(64, 8, 8, 3, dtype=torch.uint8)
    images[:, :, 4:, :] = 255
    split = dog_data.DecodedSplit(images=images, labels=torch.arange(64))

    # WHEN one training batch of all of them is drawn
    batch, labels = next(
        dog_data.image_batches(split, 64, torch.device("cpu"), shuffle=True, flip=True, generator=torch.Generator())
    )

    # THEN it is NCHW-shaped in channels_last memory, normalised, shuffled, and some (not all) samples are mirrored
    assert batch.shape == (64, 3, 8, 8) and batch.is_contiguous(memory_format=torch.channels_last)
    mirrored = batch[:, 0, 0, 0] > 0  # white on the left means flipped
    assert 0 < int(mirrored.sum()) < 64
    assert labels.tolist() != list(range(64)) and sorted(labels.tolist()) == list(range(64))
    assert batch.min() < -1.5 and batch.max() > 1.5  # (0 - mean) / std and (1 - mean) / std


def test_feature_batches_pick_one_view_per_sample() -> None:
    features = torch.stack([torch.zeros(32, 4), torch.ones(32, 4)], dim=1)  # view 0 zeros, view 1 ones

    batch, labels = next(
        dog_data.feature_batches(features, torch.arange(32), 32, shuffle=False, generator=torch.Generator())
    )

    assert batch.shape == (32, 4) and labels.tolist() == list(range(32))
    assert 0 < int(batch[:, 0].sum()) < 32


def test_realistic_jpegs_decode_with_draft(tmp_path: Path) -> None:
    path = write_dataset_zip(tmp_path / "r.zip", num_classes=2, counts=(2, 2, 2), realistic=True)

    split = dog_data.decode_split(dog_data.index_dataset(path), "train", 64, max_corrupt_fraction=0.0)

    assert split.images.shape == (2, 64, 64, 3)


def test_progressive_sizes_ramp_up_and_end_at_the_final_size() -> None:
    # GIVEN progressive resizing to a final 128 px (or 224 px) over a few epochs
    sizes = dog_data.progressive_sizes(128, 5)
    long = dog_data.progressive_sizes(224, 10)

    # THEN it starts at half the size, never shrinks, and the last two epochs run at the final size
    assert sizes == [64, 80, 96, 128, 128]
    assert long[0] == 112 and long[-2:] == [224, 224] and long == sorted(long)
    assert all(size % 16 == 0 for size in long)
    # AND one or two epochs are all at the final size
    assert dog_data.progressive_sizes(224, 1) == [224] and dog_data.progressive_sizes(224, 2) == [224, 224]


def test_image_batches_resize_to_the_asked_size_in_channels_last() -> None:
    # GIVEN a decoded split at 64 px
    split = dog_data.DecodedSplit(torch.randint(0, 256, (8, 64, 64, 3), dtype=torch.uint8), torch.arange(8))

    # WHEN batches are asked at 32 px, and at the decoded size
    small = list(dog_data.image_batches(split, 4, torch.device("cpu"), shuffle=False, flip=False, size=32))
    same = list(dog_data.image_batches(split, 4, torch.device("cpu"), shuffle=False, flip=False, size=64))

    # THEN the images come at 32 px in channels_last (the mean survives the antialiased downscale), labels intact
    assert [tuple(b.shape) for b, _ in small] == [(4, 3, 32, 32)] * 2
    assert small[0][0].is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(small[0][0].mean(dim=(2, 3)), same[0][0].mean(dim=(2, 3)), atol=0.01)
    assert torch.equal(torch.cat([labels for _, labels in small]), torch.arange(8))
