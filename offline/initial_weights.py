"""The offline run's initial weights: ImageNet's ResNet18 where this machine has it, otherwise a labelled stand-in,
either way staged in the bucket and loaded by the jobs through their pretrained channel, as on AWS.

Every job on AWS starts from torchvision's ImageNet ResNet18, the pinned file staged once in the data bucket
(``make stage-weights``) and given to every job as its ``pretrained`` input channel; it takes the production path: the
backbone frozen, its features computed once per image, only the head trained (``training_code/dog_model.py``). The
offline run takes the same path, channel included: it stages a weights file into moto's bucket under the template's
``PretrainedWeightsKey`` with the staging command's own code (``offline/stage_weights.py``), and the jobs verify its
SHA-256 against its name and load it. The ImageNet file cannot be downloaded here, so unless it already sits in the
torch hub cache the file staged is a stand-in: a ResNet18 of seeded random weights (``dog_model.stand_in_state_dict``),
written once per run as ``resnet18-standin-<its SHA-256 prefix>.pth``, so decoding, the feature pass, the head
training, the rules and the artifact are the production code. What the stand-in is not: a network that learned
anything. Its frozen features are random projections of the pixels, good enough on the generated sample's colours
and shapes and poor on real photos, so accuracy figures with it are not ImageNet figures; the run says so at the
start and in its audit. ``--weights random`` trains from random init instead (the whole network learns: the
from-scratch path; no channel).

This module decides without importing torch (5 s here): the hub folder follows torch.hub.get_dir's documented
rule, which a test holds against torch's own; the stand-in file is written by a child process.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# torchvision's ResNet18_Weights.DEFAULT file (the name carries the start of its SHA-256); a test checks it.
IMAGENET_RESNET18_FILE = "resnet18-f37072fd.pth"
STAND_IN = "stand-in"  # dog_model.STAND_IN, the training code's own name for it
CHOICES = ("auto", "imagenet", STAND_IN, "random")
PRETRAINED = "pretrained"  # dog_model.PRETRAINED: the job loads the file of its pretrained channel
STAND_IN_FILE_STEM = "resnet18-standin"
WEIGHTS_PREFIX = "weights/"  # where the template's default PretrainedWeightsKey puts the file
TRAINING_CODE = Path(__file__).resolve().parents[1] / "training_code"
_WRITE_STAND_IN = "import sys, torch, dog_model; torch.save(dog_model.stand_in_state_dict(), sys.argv[1])"


@dataclass(frozen=True)
class InitialWeights:
    """What the jobs start from: the ``weights`` hyperparameter they get, how to describe it to a person, and (for
    ImageNet's) the file to stage; the stand-in's file is written when the run starts (``StandInFile``)."""

    hyperparameter: str
    kind: str  # "imagenet", "stand-in" or "random"
    description: str
    file: str | None = None

    @property
    def staged(self) -> bool:
        """Whether the jobs load a file staged in the bucket (their pretrained channel)."""
        return self.hyperparameter == PRETRAINED


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
        return InitialWeights(
            PRETRAINED,
            "imagenet",
            f"ImageNet ResNet18 ({imagenet}), staged as on AWS and loaded through the jobs' pretrained channel, "
            "frozen backbone",
            file=str(imagenet),
        )
    reason = "asked for" if choice == STAND_IN else f"ImageNet weights are not at {imagenet} and cannot be downloaded"
    return InitialWeights(
        PRETRAINED,
        STAND_IN,
        f"STAND-IN for ImageNet ({reason}): ResNet18 of random weights (seed 0), staged as a pinned file and loaded "
        "through the jobs' pretrained channel as ImageNet's is on AWS, frozen backbone, head on cached features as "
        "in production. Accuracy figures are not ImageNet figures",
    )


def pinned_name(path: Path, stem: str) -> str:
    """``<stem>-<first 8 hex digits of the file's SHA-256>.pth``: torchvision's naming, which the jobs verify."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return f"{stem}-{digest.hexdigest()[:8]}.pth"


class StandInFile:
    """The stand-in's weights file, written by a child process (torch's import costs seconds: the run goes on with
    its set-up meanwhile); ``result()`` waits and returns ``<folder>/resnet18-standin-<SHA-256 prefix>.pth``."""

    def __init__(self, folder: Path, python: str = sys.executable) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._draft = folder / f"{STAND_IN_FILE_STEM}.draft"
        path = os.pathsep.join(part for part in (str(TRAINING_CODE), os.environ.get("PYTHONPATH", "")) if part)
        self._process = subprocess.Popen(
            [python, "-c", _WRITE_STAND_IN, str(self._draft)],
            env={**os.environ, "PYTHONPATH": path},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def result(self, timeout: float = 300.0) -> Path:
        _, stderr = self._process.communicate(timeout=timeout)
        if self._process.returncode != 0:
            raise RuntimeError(f"writing the stand-in weights failed: {stderr.strip()[-500:]}")
        return self._draft.rename(self.folder / pinned_name(self._draft, STAND_IN_FILE_STEM))
