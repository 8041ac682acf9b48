"""The offline run's initial weights: ImageNet's ResNet18 where this machine has it, otherwise a labelled stand-in.

Every job on AWS starts from torchvision's ImageNet ResNet18 and takes the production path: the backbone frozen,
its features computed once per image, only the head trained (``training_code/dog_model.py``). The offline run takes
the same path. The ImageNet file cannot be downloaded here, so unless it already sits in the torch hub cache the
jobs get ``--weights stand-in``: a ResNet18 of seeded random weights, the same network in every job, loaded as a
pretrained backbone is, so decoding, the feature pass, the head training, the rules and the artifact are the
production code. What the stand-in is not: a network that learned anything. Its frozen features are random
projections of the pixels, good enough on the generated sample's colours and shapes and poor on real photos, so
accuracy figures with it are not ImageNet figures; the run says so at the start and in its audit.
``--weights random`` trains from random init instead (the whole network learns: the from-scratch path).

This module decides without importing torch (5 s here): the hub folder follows torch.hub.get_dir's documented
rule, which a test holds against torch's own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# torchvision's ResNet18_Weights.DEFAULT file (the name carries the start of its SHA-256); a test checks it.
IMAGENET_RESNET18_FILE = "resnet18-f37072fd.pth"
STAND_IN = "stand-in"  # dog_model.STAND_IN, the training code's own name for it
CHOICES = ("auto", "imagenet", STAND_IN, "random")


@dataclass(frozen=True)
class InitialWeights:
    """What the jobs start from: the ``weights`` hyperparameter they get and how to describe it to a person."""

    hyperparameter: str
    kind: str  # "imagenet", "stand-in" or "random"
    description: str


def torch_hub_dir() -> Path:
    """torch.hub.get_dir() without importing torch: $TORCH_HOME/hub, TORCH_HOME defaulting to $XDG_CACHE_HOME/torch
    and XDG_CACHE_HOME to ~/.cache."""
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch")))) / "hub"


def imagenet_weights_file() -> Path:
    """Where torchvision keeps ``ResNet18_Weights.DEFAULT`` (the file ``--weights imagenet`` reads in a job)."""
    return torch_hub_dir() / "checkpoints" / IMAGENET_RESNET18_FILE


def choose_initial_weights(choice: str) -> InitialWeights:
    """``choice``: auto (ImageNet if cached here, else the stand-in), imagenet, stand-in or random."""
    if choice not in CHOICES:
        raise ValueError(f"weights must be one of {CHOICES}, got {choice!r}")
    if choice == "random":
        return InitialWeights(
            "random", "random", "random init, the whole network trains (the from-scratch path, not production's)"
        )
    imagenet = imagenet_weights_file()
    if choice == "imagenet" or (choice == "auto" and imagenet.is_file()):
        if not imagenet.is_file():
            raise FileNotFoundError(
                f"--weights imagenet: {imagenet} does not exist. Copy torchvision's ResNet18_Weights.DEFAULT file "
                "there (it cannot be downloaded offline), or use --weights stand-in"
            )
        return InitialWeights("imagenet", "imagenet", f"ImageNet ResNet18 ({imagenet}), frozen backbone")
    reason = "asked for" if choice == STAND_IN else f"ImageNet weights are not at {imagenet} and cannot be downloaded"
    return InitialWeights(
        STAND_IN,
        STAND_IN,
        f"STAND-IN for ImageNet ({reason}): ResNet18 of random weights (seed 0), frozen backbone, head on cached "
        "features as in production. Accuracy figures are not ImageNet figures",
    )
