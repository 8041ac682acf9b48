"""Initial weights (the pinned pretrained file of the job's channel, a file, or random init when asked for) and what
each trainable choice freezes; which CPUs compute bf16 and int8 natively."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import dog_model
import pytest
import torch
from torchvision.models import ResNet18_Weights


def pinned_file(folder: Path, state: dict[str, torch.Tensor], stem: str = "resnet18") -> Path:
    """``state`` saved as torchvision names its files: ``<stem>-<first 8 hex digits of the SHA-256>.pth``."""
    folder.mkdir(parents=True, exist_ok=True)
    draft = folder / "draft.bin"
    torch.save(state, draft)
    return draft.rename(folder / f"{stem}-{dog_model.file_sha256(draft)[:8]}.pth")


def test_pretrained_weights_come_from_the_channel_checked_against_the_hash_in_their_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN the pretrained channel holding a ResNet18 file named as torchvision names ResNet18_Weights.DEFAULT
    imagenet_like = dog_model.build_model(1000).state_dict()
    staged = pinned_file(tmp_path / "pretrained", imagenet_like)
    model = dog_model.build_model(5)

    # WHEN the job loads its initial weights
    with caplog.at_level(logging.INFO, logger="dog_model"):
        used = dog_model.load_initial_weights(model, "pretrained", pretrained_dir=str(tmp_path / "pretrained"))

    # THEN the backbone is the file's, the 5-class head stays new, only the head trains, and the log names the file
    assert used == "pretrained" and dog_model.resolve_trainable("auto", used) == "fc"
    assert torch.equal(model.state_dict()["layer3.0.conv1.weight"], imagenet_like["layer3.0.conv1.weight"])
    assert model.fc.weight.shape == (5, 512)
    assert staged.name in caplog.text
    # AND "imagenet", the earlier name, is the same thing
    assert dog_model.load_initial_weights(dog_model.build_model(5), "imagenet", pretrained_dir=str(staged)) == (
        "pretrained"
    )


def test_torchvisions_file_name_pins_its_sha256() -> None:
    assert dog_model.IMAGENET_RESNET18_FILE == Path(ResNet18_Weights.DEFAULT.url).name == "resnet18-f37072fd.pth"
    assert dog_model.pinned_sha256_prefix(dog_model.IMAGENET_RESNET18_FILE) == "f37072fd"
    assert dog_model.pinned_sha256_prefix("resnet18-standin-6a8c9f61.pth") == "6a8c9f61"
    assert dog_model.pinned_sha256_prefix("resnet18.pth") is None


def test_pretrained_asked_for_without_the_channel_fails_saying_what_to_stage() -> None:
    with pytest.raises(dog_model.PretrainedWeightsUnavailable) as failure:
        dog_model.load_initial_weights(dog_model.build_model(3), "pretrained", pretrained_dir="")
    message = str(failure.value)
    assert "no 'pretrained' input channel" in message and "SM_CHANNEL_PRETRAINED" in message
    assert "weights/resnet18-f37072fd.pth" in message and "make stage-weights STACK=<stack name>" in message
    assert "weights=random trains from random init instead" in message


def test_a_channel_whose_file_is_not_the_one_its_name_pins_fails(tmp_path: Path) -> None:
    staged = pinned_file(tmp_path / "pretrained", dog_model.build_model(1000).state_dict())
    staged.write_bytes(staged.read_bytes()[:-1] + b"x")  # one byte changed: a corrupted or substituted object

    pattern = rf"{re.escape(staged.name)} has SHA-256 [0-9a-f]{{64}}, not "
    with pytest.raises(dog_model.PretrainedWeightsUnavailable, match=pattern):
        dog_model.load_initial_weights(dog_model.build_model(3), "pretrained", pretrained_dir=str(staged.parent))


@pytest.mark.parametrize("files", [[], ["resnet18-00000000.pth", "resnet18-11111111.pth"]])
def test_a_channel_without_exactly_one_weights_file_fails(tmp_path: Path, files: list[str]) -> None:
    (tmp_path / "pretrained").mkdir()
    for name in files:
        (tmp_path / "pretrained" / name).write_bytes(b"weights")

    with pytest.raises(dog_model.PretrainedWeightsUnavailable, match=r"holds (no \.pth file|several \.pth files)"):
        dog_model.check_initial_weights("pretrained", str(tmp_path / "pretrained"))


def test_a_weights_file_whose_name_pins_nothing_is_refused_as_pretrained(tmp_path: Path) -> None:
    torch.save(dog_model.build_model(1000).state_dict(), tmp_path / "resnet18.pth")

    with pytest.raises(dog_model.PretrainedWeightsUnavailable, match="does not pin its content"):
        dog_model.load_initial_weights(dog_model.build_model(3), "pretrained", pretrained_dir=str(tmp_path))


def test_random_init_only_when_asked_and_auto_is_refused() -> None:
    assert dog_model.load_initial_weights(dog_model.build_model(3), "random") == "random"
    with pytest.raises(dog_model.PretrainedWeightsUnavailable, match="weights=auto is no more"):
        dog_model.load_initial_weights(dog_model.build_model(3), "auto")


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


def test_a_weights_file_given_by_path_is_held_to_the_hash_its_name_pins(tmp_path: Path) -> None:
    good = pinned_file(tmp_path / "good", dog_model.build_model(1000).state_dict())
    assert dog_model.load_initial_weights(dog_model.build_model(3), str(good)) == str(good)
    bad = tmp_path / "resnet18-00000000.pth"
    bad.write_bytes(good.read_bytes())

    with pytest.raises(dog_model.PretrainedWeightsUnavailable, match="not the 00000000"):
        dog_model.load_initial_weights(dog_model.build_model(3), str(bad))


@pytest.mark.parametrize(
    ("capability", "flags", "bf16", "int8"),
    [
        ("AVX512", {"avx512f", "avx512_bf16", "avx512_vnni"}, True, True),
        ("AVX512", {"avx512f", "amx_bf16", "amx_int8"}, True, True),
        # ATEN_CPU_CAPABILITY=avx2 on the same CPU: its AVX-512 instructions go unused, bf16 would be emulated
        ("AVX2", {"avx512f", "avx512_bf16", "avx512_vnni"}, False, False),
        ("AVX2", {"avx2", "avx_vnni"}, False, True),
        ("AVX2", {"avx2"}, False, False),
    ],
)
def test_native_bf16_and_int8_need_the_instructions_and_kernels_that_use_them(
    monkeypatch: pytest.MonkeyPatch, capability: str, flags: set[str], bf16: bool, int8: bool
) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(dog_model, "_cpu_flags", lambda: flags)

    assert (dog_model.cpu_has_native_bf16(), dog_model.cpu_has_int8_dot_product()) == (bf16, int8)


def test_kernels_capped_at_avx2_train_and_serve_in_float32() -> None:
    probe = "import dog_model, training_loop; print(dog_model.cpu_has_native_bf16(), training_loop.choose_compute())"
    environment = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "PYTHONPATH": str(Path(dog_model.__file__).parent)}

    printed = subprocess.run([sys.executable, "-c", probe], env=environment, capture_output=True, text=True, check=True)

    assert printed.stdout.startswith("False Compute(device=device(type='cpu'), autocast_dtype=None)"), printed
