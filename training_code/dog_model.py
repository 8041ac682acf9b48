"""The classifier: torchvision ResNet18 with a head sized to the dataset's classes.

Shared by hpo.py, train_model.py and inference.py (copied into the model artifact's code/ folder), so the
inference side needs nothing but ``build_model`` and ``load_state``; the rest (initial weights, freezing,
backbone features) is for training.

Initial weights: ImageNet's ``ResNet18_Weights.DEFAULT`` from the job's ``pretrained`` input channel (the file
staged once in the data bucket, ``resnet18-f37072fd.pth``), its SHA-256 checked against the prefix torchvision puts
in the file name. Nothing is downloaded at train time, so a job under network isolation trains the same way, and a
job asked for pretrained weights that cannot load them fails saying why: random init only when asked for
(``random``). Also: a weights file, or the in-process ``stand-in`` (seeded random weights loaded as a pretrained
backbone; the offline run stages the same network as a file and loads it through the channel).

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
import hashlib
import logging
import os
import re
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

logger = logging.getLogger(__name__)

TRAINABLE_CHOICES = ("auto", "fc", "layer4", "all")
PRETRAINED = "pretrained"
RANDOM = "random"
STAND_IN = "stand-in"
STAND_IN_SEED = 0
# "imagenet" is the earlier name of "pretrained" (the channel holds ImageNet's file); "auto" is gone: it fell back to
# random init, silently, when the weights could not be had.
PRETRAINED_WEIGHTS = (PRETRAINED, "imagenet")
RETIRED_WEIGHTS = {
    "auto": "weights=auto is no more (it trained from random init when ImageNet's weights could not be had): "
    "use weights=pretrained (the job's pretrained channel, the default) or weights=random (random init)",
}
# The input channel with the staged weights file (SM_CHANNEL_PRETRAINED); pipeline.common.sagemaker_requests sends it.
PRETRAINED_CHANNEL = "pretrained"
IMAGENET_RESNET18_FILE = os.path.basename(ResNet18_Weights.DEFAULT.url)  # resnet18-f37072fd.pth
# torchvision's file names end in the first hex digits of the file's SHA-256 (torch.hub.check_hash reads them so).
PINNED_WEIGHTS_NAME = re.compile(r"^(?P<stem>.+)-(?P<sha256>[0-9a-f]{8,64})\.pth$")
STAGE_COMMAND = "make stage-weights STACK=<stack name>"
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


class PretrainedWeightsUnavailable(RuntimeError):
    """Pretrained weights were asked for and cannot be loaded: the job fails instead of training from random init."""


def pinned_sha256_prefix(name: str) -> str | None:
    """The SHA-256 prefix a weights file's name pins (torchvision's ``<name>-<hex>.pth``), or None."""
    match = PINNED_WEIGHTS_NAME.match(name)
    return match.group("sha256") if match else None


def file_sha256(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def verify_pinned_file(path: Path) -> str:
    """The file's SHA-256, after checking that it starts with the prefix its name pins; PretrainedWeightsUnavailable
    if the name pins none or the content is another file (truncated, corrupted, or not the file that was staged)."""
    prefix = pinned_sha256_prefix(path.name)
    if prefix is None:
        raise PretrainedWeightsUnavailable(
            f"pretrained weights file {path.name} does not pin its content: its name must end in -<first hex digits "
            f"of its SHA-256>.pth, as torchvision's {IMAGENET_RESNET18_FILE} does"
        )
    sha256 = file_sha256(path)
    if not sha256.startswith(prefix):
        raise PretrainedWeightsUnavailable(
            f"pretrained weights file {path.name} has SHA-256 {sha256}, not the {prefix}... its name pins: the staged "
            f"object is not the file it is named after (stage it again: {STAGE_COMMAND})"
        )
    return sha256


def pretrained_weights_file(pretrained_dir: str) -> Path:
    """The one ``.pth`` file of the pretrained channel (or the file itself), its SHA-256 verified against its name."""
    if not pretrained_dir:
        raise PretrainedWeightsUnavailable(
            f"pretrained weights asked for (weights={PRETRAINED}) but the job has no '{PRETRAINED_CHANNEL}' input "
            f"channel (SM_CHANNEL_{PRETRAINED_CHANNEL.upper()} is not set). The pipeline gives every job that channel "
            f"with s3://<data bucket>/<PretrainedWeightsKey> (default weights/{IMAGENET_RESNET18_FILE}), staged once "
            f"with `{STAGE_COMMAND}`; a run by hand passes --pretrained_dir with that file. weights=random trains from "
            "random init instead"
        )
    location = Path(pretrained_dir)
    if location.is_file():
        candidates = [location]
    elif location.is_dir():
        candidates = sorted(path for path in location.rglob("*.pth") if path.is_file())
    else:
        candidates = []
    if len(candidates) != 1:
        found = "no .pth file" if not candidates else "several .pth files: " + ", ".join(p.name for p in candidates)
        raise PretrainedWeightsUnavailable(
            f"pretrained weights asked for (weights={PRETRAINED}) but the '{PRETRAINED_CHANNEL}' channel "
            f"({location}) holds {found}; it must hold exactly the staged file (default weights/"
            f"{IMAGENET_RESNET18_FILE}, staged with `{STAGE_COMMAND}`). weights=random trains from random init instead"
        )
    verify_pinned_file(candidates[0])
    return candidates[0]


def _state_dict_from_file(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    # Accept our own training checkpoints as well as plain state_dicts.
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    return state


def _cpu_flags() -> set[str]:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    first_flags_line = re.search(r"^flags\s*:(.*)$", cpuinfo, flags=re.MULTILINE)
    return set(first_flags_line.group(1).split()) if first_flags_line else set()


def _kernels_use_avx512() -> bool:
    """Whether torch's CPU kernels dispatch to AVX-512: not on a CPU without it, nor where ``ATEN_CPU_CAPABILITY``
    caps them lower (the CPU's flags, and torch's own probes, still advertise what the kernels will not use)."""
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def cpu_has_native_bf16() -> bool:
    """bfloat16 is only faster than float32 where the kernels run bf16 dot-product instructions (AVX512-BF16, AMX);
    emulated, it is several times slower."""
    return _kernels_use_avx512() and bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_has_int8_dot_product() -> bool:
    """int8 convolutions beat bfloat16 where the CPU multiplies and adds 8-bit integers in one instruction:
    AVX-VNNI on AVX2 kernels, AVX512-VNNI or AMX on AVX-512 ones."""
    usable = {"avx_vnni"} | ({"avx512_vnni", "amx_int8"} if _kernels_use_avx512() else set())
    return bool(_cpu_flags() & usable)


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


def check_initial_weights(weights: str, pretrained_dir: str = "") -> None:
    """Fail now, before the dataset is decoded, when ``load_initial_weights`` would fail."""
    if weights in RETIRED_WEIGHTS:
        raise PretrainedWeightsUnavailable(RETIRED_WEIGHTS[weights])
    if weights in PRETRAINED_WEIGHTS:
        pretrained_weights_file(pretrained_dir)
    elif weights not in (STAND_IN, RANDOM) and not Path(weights).is_file():
        raise FileNotFoundError(f"weights file {weights} does not exist")


def load_initial_weights(model: nn.Module, weights: str, *, pretrained_dir: str = "") -> str:
    """Put initial weights into ``model``; returns what was used: "pretrained", "stand-in", "random" or the path.

    ``weights``: "pretrained" (the default; "imagenet" is its earlier name): the file of the pretrained channel
    (``pretrained_dir``, SM_CHANNEL_PRETRAINED in a job), its SHA-256 checked against the prefix its name pins,
    PretrainedWeightsUnavailable if there is none or it is not the pinned file — never random init instead;
    "random": random init, only when asked; "stand-in" (``stand_in_state_dict``, built in the process and loaded as
    a pretrained backbone is: the production path, with features that learned nothing); or a path to a ResNet18
    state_dict or one of our checkpoints.
    """
    check_initial_weights(weights, pretrained_dir)
    if weights == RANDOM:
        logger.info("initial weights: random init (asked for)")
        return RANDOM
    if weights == STAND_IN:
        _load_matching(model, stand_in_state_dict(), f"the STAND-IN for ImageNet (random, seed {STAND_IN_SEED})")
        logger.warning(
            "initial weights: STAND-IN for ImageNet (ResNet18 of random weights, seed %d): the frozen-backbone path "
            "runs as in production, but accuracy figures are not ImageNet figures",
            STAND_IN_SEED,
        )
        return STAND_IN
    if weights in PRETRAINED_WEIGHTS:
        path = pretrained_weights_file(pretrained_dir)
        _load_matching(model, _state_dict_from_file(path), f"pretrained weights {path}")
        logger.info("initial weights: pretrained %s (SHA-256 matches the %s its name pins)", path.name,
                    pinned_sha256_prefix(path.name))  # fmt: skip
        return PRETRAINED
    path = Path(weights)
    if pinned_sha256_prefix(path.name):
        verify_pinned_file(path)  # a file whose name pins its content is held to it, wherever it comes from
    _load_matching(model, _state_dict_from_file(path), str(path))
    return str(path)


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
