"""Fixtures for the training-code tests: tiny generated datasets and the SageMaker container environment."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from offline.synthetic_dataset import write_dataset_zip

TINY_CLASSES = 4
TINY_IMAGE_SIZE = 32
# Every run in these tests: random init (never the network), tiny images, one thread (the cores are shared, and
# two OpenMP threads stall badly when another process holds a core).
FAST_ARGS = ["--weights", "random", "--image_size", str(TINY_IMAGE_SIZE), "--batch_size", "16", "--num_threads", "1"]


@pytest.fixture(scope="session")
def tiny_dataset_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset_zip(
        tmp_path_factory.mktemp("data") / "dogImages.zip",
        num_classes=TINY_CLASSES,
        counts=(48, 16, 16),
        image_size=TINY_IMAGE_SIZE,
        seed=1,
    )


@pytest.fixture(scope="session")
def learnable_dataset_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset_zip(
        tmp_path_factory.mktemp("learnable") / "dogImages.zip",
        num_classes=TINY_CLASSES,
        counts=(96, 32, 32),
        image_size=TINY_IMAGE_SIZE,
        seed=3,
    )


@dataclass
class SageMakerPaths:
    channel: Path
    model_dir: Path
    output_data_dir: Path


@pytest.fixture
def sagemaker_env(tmp_path: Path, tiny_dataset_zip: Path, monkeypatch: pytest.MonkeyPatch) -> SageMakerPaths:
    """The container contract: a training channel holding the dataset zip, the model and output folders."""
    channel = tmp_path / "input" / "data" / "training"
    channel.mkdir(parents=True)
    (channel / tiny_dataset_zip.name).write_bytes(tiny_dataset_zip.read_bytes())
    paths = SageMakerPaths(channel, tmp_path / "model", tmp_path / "output" / "data")
    monkeypatch.setenv("SM_CHANNEL_TRAINING", str(paths.channel))
    monkeypatch.setenv("SM_MODEL_DIR", str(paths.model_dir))
    monkeypatch.setenv("SM_OUTPUT_DATA_DIR", str(paths.output_data_dir))
    monkeypatch.setenv("SM_NUM_GPUS", "0")
    monkeypatch.delenv("SMDEBUG_CONFIG_FILE_PATH", raising=False)
    return paths


@pytest.fixture(autouse=True)
def no_leftover_smdebug_hook():
    """smdebug keeps its hook in a process-wide singleton: a failed run must not hand it to the next test."""
    yield
    try:
        from smdebug.core.singleton_utils import del_hook
    except ImportError:
        return
    del_hook()


def extract(zip_path: Path, target: Path) -> Path:
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(target)
    return target
