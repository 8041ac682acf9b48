"""The offline run's initial weights: ImageNet's ResNet18 where this machine has it, otherwise a labelled stand-in.

Every job on AWS starts from torchvision's ImageNet ResNet18 and takes the production path: the backbone frozen,
its features computed once per image, only the head trained (``training_code/dog_model.py``). The offline run takes
the same path. The ImageNet file cannot be downloaded here, so unless it already sits in the torch hub cache the
jobs get a stand-in: a ResNet18 of seeded random weights, saved as a file of the same layout (1000-class head
included) and loaded by the same code (``--weights FILE``), so decoding, the feature pass, the head training, the
rules and the artifact are the production code. What the stand-in is not: a network that learned anything. Its
frozen features are random projections of the pixels, good enough on the generated sample's colours and shapes and
poor on real photos, so accuracy figures with it are not ImageNet figures; the run says so at the start and in
its audit. ``--weights random`` trains from random init instead (the whole network learns: the from-scratch path).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STAND_IN_SEED = 0
STAND_IN_FILE = f"stand-in-resnet18-random-seed{STAND_IN_SEED}.pth"
CHOICES = ("auto", "imagenet", "stand-in", "random")


@dataclass(frozen=True)
class InitialWeights:
    """What the jobs start from: the ``weights`` hyperparameter they get and how to describe it to a person."""

    hyperparameter: str
    kind: str  # "imagenet", "stand-in" or "random"
    description: str

    @property
    def pretrained_figures(self) -> bool:
        return self.kind == "imagenet"


def imagenet_weights_file() -> Path:
    """Where torchvision keeps ``ResNet18_Weights.DEFAULT`` (the file ``--weights imagenet`` reads in a job)."""
    import torch
    from torchvision.models import ResNet18_Weights

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(ResNet18_Weights.DEFAULT.url).name


def write_stand_in(path: Path) -> Path:
    """A ResNet18 state_dict (1000-class head, as ImageNet's) of random weights drawn with ``STAND_IN_SEED``."""
    import torch
    from torchvision.models import resnet18

    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():
        torch.manual_seed(STAND_IN_SEED)
        state = resnet18(weights=None).state_dict()
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    partial.replace(path)
    return path


def choose_initial_weights(choice: str, work_dir: Path) -> InitialWeights:
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
    stand_in = write_stand_in(work_dir / STAND_IN_FILE)
    reason = "asked for" if choice == "stand-in" else f"ImageNet weights are not at {imagenet} and cannot be downloaded"
    return InitialWeights(
        str(stand_in),
        "stand-in",
        f"STAND-IN for ImageNet ({reason}): ResNet18 of random weights (seed {STAND_IN_SEED}), frozen backbone, "
        f"head on cached features as in production. Accuracy figures are not ImageNet figures",
    )
