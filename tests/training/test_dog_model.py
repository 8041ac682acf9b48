"""Initial weights (ImageNet, file, or the announced random fallback) and what each trainable choice freezes."""

from __future__ import annotations

import logging
from pathlib import Path

import dog_model
import pytest
import torch


@pytest.fixture
def no_cached_imagenet_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"


def test_auto_without_cache_or_download_falls_back_to_random_and_says_so(
    no_cached_imagenet_weights: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = dog_model.build_model(3)

    with caplog.at_level(logging.INFO, logger="dog_model"):
        used = dog_model.load_initial_weights(model, "auto", download_timeout_s=0)

    assert used == "random"
    assert "FALLING BACK TO RANDOM INIT" in caplog.text and str(no_cached_imagenet_weights) in caplog.text


def test_imagenet_asked_for_but_unavailable_is_an_error(no_cached_imagenet_weights: Path) -> None:
    with pytest.raises(RuntimeError, match="ImageNet weights asked for but not available"):
        dog_model.load_initial_weights(dog_model.build_model(3), "imagenet", download_timeout_s=0)


def test_cached_imagenet_weights_are_used_without_network(no_cached_imagenet_weights: Path) -> None:
    # GIVEN a file in the torch hub cache where torchvision keeps ResNet18_Weights.DEFAULT
    imagenet_like = dog_model.build_model(1000).state_dict()
    no_cached_imagenet_weights.parent.mkdir(parents=True)
    torch.save(imagenet_like, no_cached_imagenet_weights)
    model = dog_model.build_model(5)

    # WHEN auto weights are loaded
    used = dog_model.load_initial_weights(model, "auto", download_timeout_s=0)

    # THEN the backbone comes from the cache and the 5-class head stays freshly initialised
    assert used == "imagenet"
    assert torch.equal(model.state_dict()["layer3.0.conv1.weight"], imagenet_like["layer3.0.conv1.weight"])
    assert model.fc.weight.shape == (5, 512)


def test_weights_file_may_be_one_of_our_checkpoints(tmp_path: Path) -> None:
    source = dog_model.build_model(7)
    torch.save({"model": source.state_dict(), "epochs_done": 3}, tmp_path / "checkpoint.pth")
    model = dog_model.build_model(7)

    used = dog_model.load_initial_weights(model, str(tmp_path / "checkpoint.pth"))

    assert used == str(tmp_path / "checkpoint.pth")
    assert torch.equal(model.fc.weight, source.fc.weight)  # same class count: the head is loaded too


def test_weights_file_without_a_backbone_is_refused(tmp_path: Path) -> None:
    torch.save({"fc.weight": torch.zeros(3, 512)}, tmp_path / "head.pth")

    with pytest.raises(ValueError, match="no ResNet18 backbone tensors"):
        dog_model.load_initial_weights(dog_model.build_model(3), str(tmp_path / "head.pth"))


@pytest.mark.parametrize(
    ("trainable", "learning"),
    [("fc", {"fc"}), ("layer4", {"layer4", "fc"}), ("all", {"conv1", "bn1", "layer1", "layer4", "fc"})],
)
def test_freeze_leaves_only_the_chosen_part_trainable(trainable: str, learning: set[str]) -> None:
    model = dog_model.build_model(3)

    dog_model.freeze(model, trainable)

    trainable_tops = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert learning <= trainable_tops and trainable_tops <= learning | {"layer2", "layer3"}
    assert ("layer3" in trainable_tops) == (trainable == "all")


def test_auto_trains_the_head_on_imagenet_weights_and_everything_on_random() -> None:
    assert dog_model.resolve_trainable("auto", "imagenet") == "fc"
    assert dog_model.resolve_trainable("auto", "/some/file.pth") == "fc"
    assert dog_model.resolve_trainable("auto", "random") == "all"
    with pytest.raises(ValueError, match="trainable must be one of"):
        dog_model.resolve_trainable("layer2", "random")


def test_backbone_features_are_what_the_head_sees() -> None:
    model = dog_model.build_model(3).eval()
    images = torch.randn(2, 3, 32, 32)

    with torch.no_grad():
        assert torch.allclose(model.fc(dog_model.backbone_features(model, images)), model(images), atol=1e-5)


def test_folded_backbone_gives_the_same_features_and_leaves_the_model_alone() -> None:
    # GIVEN a model in eval mode whose BN layers hold non-trivial statistics and scales
    torch.manual_seed(0)
    model = dog_model.build_model(5).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.normal_()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    images = torch.randn(2, 3, 64, 64)

    # WHEN BN is folded into the convolutions
    folded = dog_model.folded_backbone(model)

    # THEN the features agree to float rounding, the copy has no BN and no trainable parameters, the model is intact
    with torch.no_grad():
        expected = dog_model.backbone_features(model, images)
        assert torch.allclose(dog_model.backbone_features(folded, images), expected, atol=1e-4 * expected.abs().max())
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in folded.modules())
    assert not any(parameter.requires_grad for parameter in folded.parameters())
    assert all(torch.equal(tensor, before[name]) for name, tensor in model.state_dict().items())


def test_feature_pass_batches_keep_the_pixels_of_32_images_at_224_px() -> None:
    assert [dog_model.feature_batch_size(size) for size in (224, 300, 112, 64, 16)] == [32, 32, 128, 392, 512]
