"""The offline run's initial weights: ImageNet's file where this machine has it, else the labelled stand-in."""

from __future__ import annotations

from pathlib import Path

import dog_model
import pytest
import torch

from offline.initial_weights import STAND_IN_FILE, choose_initial_weights, imagenet_weights_file


@pytest.fixture
def torch_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_without_imagenet_weights_the_jobs_get_a_stand_in_that_says_what_it_is(torch_hub: Path, tmp_path: Path) -> None:
    weights = choose_initial_weights("auto", tmp_path / "work")

    assert weights.kind == "stand-in" and not weights.pretrained_figures
    assert weights.hyperparameter == str(tmp_path / "work" / STAND_IN_FILE)
    assert "STAND-IN for ImageNet" in weights.description
    assert str(torch_hub / "checkpoints" / "resnet18-f37072fd.pth") in weights.description
    assert "Accuracy figures are not ImageNet figures" in weights.description


def test_the_stand_in_loads_as_a_pretrained_backbone_and_the_job_takes_the_production_path(
    torch_hub: Path, tmp_path: Path
) -> None:
    # GIVEN the stand-in file the offline run hands the jobs as --weights
    weights = choose_initial_weights("stand-in", tmp_path)
    model = dog_model.build_model(5)
    # WHEN a job loads it (training_code's own loader, as for ImageNet's file)
    used = dog_model.load_initial_weights(model, weights.hyperparameter, download_timeout_s=0)
    # THEN the backbone is the file's, the 5-class head stays new, and only the head trains (cached features)
    state = torch.load(weights.hyperparameter, weights_only=True)
    assert torch.equal(model.state_dict()["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])
    assert state["fc.weight"].shape == (1000, 512) and model.fc.weight.shape == (5, 512)
    assert dog_model.resolve_trainable("auto", used) == "fc"


def test_the_stand_in_is_the_same_network_every_time(torch_hub: Path, tmp_path: Path) -> None:
    first = torch.load(choose_initial_weights("stand-in", tmp_path / "a").hyperparameter, weights_only=True)
    torch.manual_seed(12345)  # whatever the caller's random state
    second = torch.load(choose_initial_weights("stand-in", tmp_path / "b").hyperparameter, weights_only=True)
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_imagenet_weights_in_the_torch_hub_cache_are_used(torch_hub: Path, tmp_path: Path) -> None:
    cached = imagenet_weights_file()
    cached.parent.mkdir(parents=True)
    torch.save(dog_model.build_model(1000).state_dict(), cached)

    weights = choose_initial_weights("auto", tmp_path)

    assert (weights.kind, weights.hyperparameter, weights.pretrained_figures) == ("imagenet", "imagenet", True)
    assert not (tmp_path / STAND_IN_FILE).exists()


def test_imagenet_asked_for_but_missing_says_where_to_put_it(torch_hub: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"resnet18-f37072fd\.pth does not exist.*--weights stand-in"):
        choose_initial_weights("imagenet", tmp_path)


def test_random_is_the_from_scratch_path(torch_hub: Path, tmp_path: Path) -> None:
    weights = choose_initial_weights("random", tmp_path)
    assert weights.hyperparameter == "random"
    assert dog_model.resolve_trainable("auto", "random") == "all"


def test_an_unknown_choice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="weights must be one of"):
        choose_initial_weights("resnet50", tmp_path)
