"""The decoded-image cache beyond memory: the budget plan, the on-disk (memory-mapped) mode, its log line and its
scratch file, and a training job forced onto disk training exactly as in memory."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import dog_data
import pytest
import torch
from conftest import FAST_ARGS, SageMakerPaths
from test_dog_data import _with_corrupt_images
from test_training_job import run_script

SIZE = 32
PER_IMAGE = SIZE * SIZE * 3


def test_bytes_per_image_at_224_px() -> None:
    assert dog_data.decoded_bytes(1, 224) == 150_528
    assert dog_data.decoded_bytes(1000, 224) / 2**20 == pytest.approx(143.55, abs=0.01)


def test_plan_keeps_a_split_in_memory_up_to_the_byte_and_spills_one_byte_beyond() -> None:
    counts = {"train": 10}
    assert not dog_data.plan_decoded_cache(counts, SIZE, 10 * PER_IMAGE)["train"].on_disk
    assert dog_data.plan_decoded_cache(counts, SIZE, 10 * PER_IMAGE - 1)["train"].on_disk


def test_plan_shares_the_budget_in_split_order_and_a_spilled_split_takes_none_of_it() -> None:
    # GIVEN room for 12 images: train (10) fits, valid (5) then no longer does, test (2) still does
    plan = dog_data.plan_decoded_cache({"train": 10, "valid": 5, "test": 2}, SIZE, 12 * PER_IMAGE)
    assert [plan[name].on_disk for name in ("train", "valid", "test")] == [False, True, False]
    assert plan["valid"].budget_left == plan["test"].budget_left == 2 * PER_IMAGE


def test_budget_is_the_override_or_a_share_of_the_container_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    assert dog_data.memory_budget_bytes(2) == 2 * 2**20
    monkeypatch.setattr(dog_data, "container_memory_bytes", lambda: 8 * 2**30)
    assert dog_data.memory_budget_bytes(0) == 4 * 2**30 == 8 * 2**30 * dog_data.DEFAULT_BUDGET_FRACTION
    monkeypatch.undo()
    assert dog_data.container_memory_bytes() > 0


def test_on_disk_split_gives_the_same_images_and_batches_and_leaves_no_file(
    tmp_path: Path, tiny_dataset_zip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN pages released after every batch, so reads come back through the file each time
    monkeypatch.setattr(dog_data, "RELEASE_EVERY_BYTES", 1)
    index = dog_data.index_dataset(tiny_dataset_zip)
    cache_dir = tmp_path / "cache"
    memory = dog_data.decode_split(index, "train", SIZE, max_corrupt_fraction=0.0)
    disk = dog_data.decode_split(index, "train", SIZE, max_corrupt_fraction=0.0, cache_dir=cache_dir)

    assert not memory.on_disk and disk.on_disk and Path(disk.cache_file or "").parent == cache_dir
    assert disk.images.dtype == torch.uint8 and disk.images.shape == memory.images.shape
    assert torch.equal(disk.images, memory.images) and torch.equal(disk.labels, memory.labels)
    assert disk.paths == memory.paths
    # the scratch file is unlinked once mapped: nothing is left behind, and it is never reused
    assert list(cache_dir.iterdir()) == []

    def batches(split: dog_data.DecodedSplit) -> list[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(7)
        return list(
            dog_data.image_batches(split, 16, torch.device("cpu"), shuffle=True, flip=True, generator=generator)
        )

    for (memory_images, memory_labels), (disk_images, disk_labels) in zip(batches(memory), batches(disk), strict=True):
        assert torch.equal(memory_images, disk_images) and torch.equal(memory_labels, disk_labels)
    # flipping batches never wrote into the cache
    assert torch.equal(disk.images, memory.images)


def test_on_disk_split_skips_corrupt_images_as_in_memory(tmp_path: Path, tiny_dataset_zip: Path) -> None:
    index = dog_data.index_dataset(_with_corrupt_images(tiny_dataset_zip, tmp_path / "d", 1))
    memory = dog_data.decode_split(index, "train", SIZE, max_corrupt_fraction=0.05)
    disk = dog_data.decode_split(index, "train", SIZE, max_corrupt_fraction=0.05, cache_dir=tmp_path / "c")
    assert len(disk) == len(memory) == 47 and disk.corrupt_files == memory.corrupt_files
    assert torch.equal(disk.images, memory.images)
    with pytest.raises(dog_data.DatasetError, match="corrupt"):
        dog_data.decode_split(index, "train", SIZE, max_corrupt_fraction=0.0, cache_dir=tmp_path / "c")
    assert list((tmp_path / "c").iterdir()) == []  # a failed decode removes its scratch file too


def test_decode_splits_logs_each_decision_with_its_figures(
    tmp_path: Path, tiny_dataset_zip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    index = dog_data.index_dataset(tiny_dataset_zip)
    caplog.set_level(logging.INFO, logger="dog_data")
    # GIVEN a budget that holds train (48 images) but nothing more
    splits = dog_data.decode_splits(
        index, SIZE, max_corrupt_fraction=0.0, budget_bytes=48 * PER_IMAGE, cache_dir=tmp_path / "c"
    )
    assert {name: split.on_disk for name, split in splits.items()} == {"train": False, "valid": True, "test": True}
    messages = [record.getMessage() for record in caplog.records if "decoded cache" in record.getMessage()]
    assert messages[0] == "decoded cache: train split: 48 images x 3 KiB = 0.1 MiB <= budget left 0.1 MiB -> in memory"
    assert messages[1] == (
        f"decoded cache: valid split: 16 images x 3 KiB = 0.0 MiB > budget left 0.0 MiB -> on-disk cache in "
        f"{tmp_path / 'c'}"
    )


def test_a_job_on_an_on_disk_cache_trains_exactly_as_in_memory(
    sagemaker_env: SageMakerPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the whole network trained on images (the cache is read every epoch), with and without a tiny budget
    args = ["--epochs", "1", "--trainable", "all", "--profiler", "false", "--debug_hook", "false", *FAST_ARGS]
    run_script("hpo.py", [*args, "--decoded_cache_budget_mb", "1000"], monkeypatch)
    in_memory = json.loads((sagemaker_env.model_dir / "metrics.json").read_text())
    cache_dir = tmp_path / "scratch"
    stdout = run_script(
        "hpo.py",
        [*args, "--decoded_cache_budget_mb", "0.0001", "--decoded_cache_dir", str(cache_dir)],
        monkeypatch,
    )
    on_disk = json.loads((sagemaker_env.model_dir / "metrics.json").read_text())

    # THEN the same losses and accuracies, and no scratch file left
    assert "test_accuracy=" in stdout
    for key in ("test_loss", "test_accuracy"):
        assert on_disk[key] == in_memory[key]
    assert [epoch["train_loss"] for epoch in on_disk["epochs"]] == [e["train_loss"] for e in in_memory["epochs"]]
    assert list(cache_dir.iterdir()) == []
