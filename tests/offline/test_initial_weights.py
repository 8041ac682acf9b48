"""The offline run's initial weights: ImageNet's file where this machine has it, else the labelled stand-in."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import dog_model
import pytest
import torch
from torchvision.models import ResNet18_Weights

from offline import initial_weights
from offline.initial_weights import StandInFile, choose_initial_weights, imagenet_weights_file


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


@pytest.mark.parametrize(
    "environment",
    [{}, {"XDG_CACHE_HOME": "/cache"}, {"TORCH_HOME": "/models/torch"}, {"TORCH_HOME": "~/t", "XDG_CACHE_HOME": "/x"}],
)
def test_the_imagenet_file_is_where_torch_keeps_it(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TORCH_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    expected = Path(torch.hub.get_dir()) / "checkpoints" / Path(ResNet18_Weights.DEFAULT.url).name
    assert imagenet_weights_file() == expected


def test_without_imagenet_weights_the_jobs_get_the_stand_in_that_says_what_it_is(torch_home: Path) -> None:
    weights = choose_initial_weights("auto")

    # (a staged file, loaded through the jobs' pretrained channel: the file is written when the run starts)
    assert (weights.hyperparameter, weights.kind, weights.file) == ("pretrained", "stand-in", None)
    assert weights.staged and "loaded through the jobs' pretrained channel" in weights.description
    assert "STAND-IN for ImageNet" in weights.description
    assert str(torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in weights.description
    assert f"seed {dog_model.STAND_IN_SEED})" in weights.description
    assert "Accuracy figures are not ImageNet figures" in weights.description


def test_the_stand_in_file_is_pinned_and_a_job_loads_it_through_its_channel_as_imagenets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN the stand-in's weights file as the offline run writes it (a child process, torch not imported here)
    staged = StandInFile(tmp_path / "weights").result()
    assert re.fullmatch(r"resnet18-standin-[0-9a-f]{8}\.pth", staged.name)
    assert dog_model.verify_pinned_file(staged).startswith(staged.name.removesuffix(".pth").rsplit("-", 1)[1])
    model = dog_model.build_model(5)

    # WHEN a job loads the file of its pretrained channel
    with caplog.at_level(logging.INFO, logger="dog_model"):
        used = dog_model.load_initial_weights(model, choose_initial_weights("stand-in").hyperparameter,
                                              pretrained_dir=str(staged.parent))  # fmt: skip

    # THEN the backbone is the stand-in's, the 5-class head stays new, and only the head trains (cached features)
    stand_in = dog_model.stand_in_state_dict()
    assert torch.equal(model.state_dict()["layer4.1.conv2.weight"], stand_in["layer4.1.conv2.weight"])
    assert stand_in["fc.weight"].shape == (1000, 512) and model.fc.weight.shape == (5, 512)
    assert used == "pretrained" and dog_model.resolve_trainable("auto", used) == "fc"
    assert staged.name in caplog.text


def test_the_stand_in_built_in_the_job_says_what_it_is(caplog: pytest.LogCaptureFixture) -> None:
    model = dog_model.build_model(5)
    with caplog.at_level(logging.INFO, logger="dog_model"):
        used = dog_model.load_initial_weights(model, initial_weights.STAND_IN)
    assert used == "stand-in" and dog_model.resolve_trainable("auto", used) == "fc"
    assert "STAND-IN for ImageNet" in caplog.text and "not ImageNet figures" in caplog.text


def test_the_stand_in_is_the_same_network_in_every_job() -> None:
    first = dog_model.stand_in_state_dict()
    torch.manual_seed(12345)  # whatever the job's own seed
    second = dog_model.stand_in_state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)
    # AND building it leaves the job's own random stream (its seeded head, its batches) where it was
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    dog_model.stand_in_state_dict()
    assert torch.equal(torch.rand(3), expected)


def test_imagenet_weights_in_the_torch_hub_cache_are_used(torch_home: Path) -> None:
    cached = imagenet_weights_file()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"weights")

    weights = choose_initial_weights("auto")

    # staged as on AWS under torchvision's own name (the template's default key), loaded through the channel
    assert (weights.kind, weights.hyperparameter, weights.file) == ("imagenet", "pretrained", str(cached))


def test_imagenet_asked_for_but_missing_says_where_to_put_it(torch_home: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"resnet18-f37072fd\.pth does not exist.*--weights stand-in"):
        choose_initial_weights("imagenet")


def test_random_is_the_from_scratch_path() -> None:
    weights = choose_initial_weights("random")
    assert weights.hyperparameter == "random" and not weights.staged
    assert dog_model.resolve_trainable("auto", "random") == "all"


def test_an_unknown_choice_is_refused() -> None:
    with pytest.raises(ValueError, match="weights must be one of"):
        choose_initial_weights("resnet50")


def test_the_offline_names_are_the_training_codes() -> None:
    assert initial_weights.STAND_IN == dog_model.STAND_IN
    assert initial_weights.PRETRAINED == dog_model.PRETRAINED
    assert initial_weights.IMAGENET_RESNET18_FILE == dog_model.IMAGENET_RESNET18_FILE
