"""The classifier: torchvision ResNet18 with a head sized to the dataset's classes.

Shared by hpo.py, train_model.py and inference.py (copied into the model artifact's code/ folder), so the
inference side needs nothing but ``build_model`` and ``load_state``; the rest (initial weights, freezing,
backbone features) is for training.

Initial weights: ImageNet ``ResNet18_Weights.DEFAULT`` when they can be had — from the torch hub cache, or
downloaded with every socket operation bounded by a timeout so an offline machine never hangs — otherwise an
explicit fallback (random init, a weights file, or the offline run's labelled stand-in) announced in the log.

What is trained (``trainable``):
- ``fc``: backbone frozen in eval mode, only the head learns. With ImageNet weights this is the best accuracy per
  GPU-minute for dog breeds: ImageNet holds ~120 dog breeds, so its ResNet18 features already separate them and
  a linear head gets close to a full finetune, while the backbone runs once per image (features are cached) instead
  of once per image per epoch, with no backward pass at all.
- ``layer4``: the last stage and the head learn; stem to layer3 frozen in eval mode. A middle ground when the
  linear head plateaus.
- ``all``: full finetune. The only sensible choice from random weights, whose frozen features are noise.
``auto`` picks ``fc`` with ImageNet weights and ``all`` without.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

logger = logging.getLogger(__name__)

TRAINABLE_CHOICES = ("auto", "fc", "layer4", "all")
STAND_IN = "stand-in"
STAND_IN_SEED = 0
# Batch of a frozen-backbone feature pass (no_grad, channels_last) at 224 px: 32 ran ~1.09x faster than 64 and 16,
# and ~1.13x faster than 128, on the 2-core AVX-512 CPU in bf16 (activations stay in cache). Smaller images keep
# that batch's pixel count, up to 512 images: at 16 px batch 32 spent its time in per-layer overhead (0.63 ms an
# image against 0.19 at 512, on the 2-core AVX2 CPU in fp32; 4.1 against 3.2 ms at 64 px). Features do not depend
# on the batch (eval mode).
FEATURE_BATCH_SIZE = 32
FEATURE_BATCH_PIXELS = FEATURE_BATCH_SIZE * 224 * 224
MAX_FEATURE_BATCH_SIZE = 512


def feature_batch_size(image_size: int) -> int:
    """Images per backbone feature pass at ``image_size`` px: the pixels of 32 images at 224 px, 32 to 512."""
    return max(FEATURE_BATCH_SIZE, min(MAX_FEATURE_BATCH_SIZE, FEATURE_BATCH_PIXELS // (image_size * image_size)))


_FROZEN_STEM = ("conv1", "bn1", "layer1", "layer2", "layer3")


def build_model(num_classes: int) -> nn.Module:
    """ResNet18 with random weights and an ``fc`` head of ``num_classes`` outputs (weights loaded by the caller)."""
    model = resnet18(weights=None)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def load_state(model: nn.Module, path: str) -> nn.Module:
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


def imagenet_weights_cache_path() -> Path:
    """Where torchvision keeps ``ResNet18_Weights.DEFAULT`` once downloaded."""
    filename = os.path.basename(ResNet18_Weights.DEFAULT.url)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _download_imagenet_weights(timeout_s: float) -> Path | None:
    target = imagenet_weights_cache_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    previous_timeout = socket.getdefaulttimeout()
    # torch.hub's urlopen takes no timeout: the process-wide default bounds every connect and read.
    socket.setdefaulttimeout(timeout_s)
    try:
        torch.hub.download_url_to_file(ResNet18_Weights.DEFAULT.url, str(target), progress=False)
    except Exception as error:  # no network, DNS failure, timeout, HTTP error: all mean "not available"
        logger.warning("could not download ImageNet weights (%s: %s)", type(error).__name__, error)
        return None
    finally:
        socket.setdefaulttimeout(previous_timeout)
    return target


def _state_dict_from_file(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    # Accept our own training checkpoints as well as plain state_dicts.
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    return state


def _load_matching(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load every tensor whose name and shape match; a head of another class count stays random."""
    own = model.state_dict()
    matching = {name: value for name, value in state.items() if name in own and own[name].shape == value.shape}
    skipped = sorted(set(own) - set(matching))
    if not any(name.startswith("layer") for name in matching):
        raise ValueError(f"{source} holds no ResNet18 backbone tensors; is it a ResNet18 state_dict?")
    model.load_state_dict(matching, strict=False)
    if skipped:
        logger.info("initial weights from %s; left at random init: %s", source, ", ".join(skipped))


def stand_in_state_dict() -> dict[str, torch.Tensor]:
    """The stand-in for ImageNet's weights where they cannot be had (the offline run): a ResNet18 of random
    weights drawn with ``STAND_IN_SEED`` (1000-class head, as ImageNet's file), the same network in every job."""
    with torch.random.fork_rng():
        torch.manual_seed(STAND_IN_SEED)
        return resnet18(weights=None).state_dict()


def load_initial_weights(model: nn.Module, weights: str, *, download_timeout_s: float = 30.0) -> str:
    """Put initial weights into ``model``; returns what was used: "imagenet", "stand-in", "random" or the path.

    ``weights``: "auto" (ImageNet if cached or downloadable, else random, said in the log), "imagenet" (fail if
    not available), "stand-in" (``stand_in_state_dict``, loaded as a pretrained backbone is: the production
    path, with features that learned nothing), "random", or a path to a ResNet18 state_dict or one of our
    checkpoints.
    """
    if weights == "random":
        logger.info("initial weights: random init (asked for)")
        return "random"
    if weights == STAND_IN:
        _load_matching(model, stand_in_state_dict(), f"the STAND-IN for ImageNet (random, seed {STAND_IN_SEED})")
        logger.warning(
            "initial weights: STAND-IN for ImageNet (ResNet18 of random weights, seed %d): the frozen-backbone path "
            "runs as in production, but accuracy figures are not ImageNet figures",
            STAND_IN_SEED,
        )
        return STAND_IN
    if weights not in ("auto", "imagenet"):
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} does not exist")
        _load_matching(model, _state_dict_from_file(path), str(path))
        return str(path)
    cached = imagenet_weights_cache_path()
    if cached.is_file():
        source = cached
    else:
        logger.info("ImageNet weights not cached at %s; trying to download them", cached)
        source = _download_imagenet_weights(download_timeout_s) if download_timeout_s > 0 else None
    if source is None:
        if weights == "imagenet":
            raise RuntimeError(f"ImageNet weights asked for but not available (not cached at {cached}, no download)")
        logger.warning(
            "ImageNet weights unavailable: FALLING BACK TO RANDOM INIT (put %s in place or pass --weights FILE)", cached
        )
        return "random"
    _load_matching(model, _state_dict_from_file(source), f"ImageNet weights {source}")
    return "imagenet"


def resolve_trainable(trainable: str, initial_weights: str) -> str:
    if trainable not in TRAINABLE_CHOICES:
        raise ValueError(f"trainable must be one of {TRAINABLE_CHOICES}, got {trainable!r}")
    if trainable != "auto":
        return trainable
    return "all" if initial_weights == "random" else "fc"


def frozen_modules(model: nn.Module, trainable: str) -> list[nn.Module]:
    """The submodules that do not learn under ``trainable`` ("fc", "layer4" or "all")."""
    if trainable == "all":
        return []
    names = (*_FROZEN_STEM, "layer4") if trainable == "fc" else _FROZEN_STEM
    return [getattr(model, name) for name in names]


def freeze(model: nn.Module, trainable: str) -> list[nn.Module]:
    """Stop gradients for the frozen part and return it (callers keep it in eval mode: fixed BN statistics)."""
    frozen = frozen_modules(model, trainable)
    for module in frozen:
        for parameter in module.parameters():
            parameter.requires_grad_(False)
    return frozen


def backbone_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The pooled 512-d features that ``fc`` sees."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(images))))
    x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    return torch.flatten(model.avgpool(x), 1)


def folded_backbone(model: nn.Module) -> nn.Module:
    """An inference copy of ``model`` for frozen-backbone features: each BatchNorm (eval statistics) folded into
    the convolution before it, so a feature pass runs convolutions only (about 1.1x faster on the 2-core CPU in
    bf16 channels_last; the features agree to float rounding). ``model`` itself is left untouched.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).eval()
    folded.conv1, folded.bn1 = fuse_conv_bn_eval(folded.conv1, folded.bn1), nn.Identity()
    for layer in (folded.layer1, folded.layer2, folded.layer3, folded.layer4):
        for block in layer:
            block.conv1, block.bn1 = fuse_conv_bn_eval(block.conv1, block.bn1), nn.Identity()
            block.conv2, block.bn2 = fuse_conv_bn_eval(block.conv2, block.bn2), nn.Identity()
            if block.downsample is not None:
                block.downsample = fuse_conv_bn_eval(block.downsample[0], block.downsample[1])
    for parameter in folded.parameters():
        parameter.requires_grad_(False)
    return folded
