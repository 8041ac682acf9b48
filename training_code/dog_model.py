"""The classifier: torchvision ResNet18 with a head sized to the dataset's classes.

Shared by hpo.py, train_model.py and inference.py (copied into the model artifact's code/ folder).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18


def build_model(num_classes: int) -> nn.Module:
    """ResNet18 with random weights and an ``fc`` head of ``num_classes`` outputs (weights loaded by the caller)."""
    model = resnet18(weights=None)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def load_state(model: nn.Module, path: str) -> nn.Module:
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model
