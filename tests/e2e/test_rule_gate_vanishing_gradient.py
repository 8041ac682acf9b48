"""The rule gate stops a network whose gradients vanish (VanishingGradient): full-count runs through the real ASL,
handlers and training code (sabotage_runs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from dog_model import build_model
from sabotage_runs import run_pipeline, sagemaker_rule_statuses, tuner_samples

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dead_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ResNet18 weights that are all zero: the backbone's features are 0, so the head's weights get no gradient."""
    state = {name: torch.zeros_like(tensor) for name, tensor in build_model(1000).state_dict().items()}
    path = tmp_path_factory.mktemp("weights") / "dead_backbone.pth"
    torch.save(state, path)
    return path


def test_a_network_whose_gradients_vanish_is_blocked_by_vanishing_gradient(
    tmp_path: Path, full_count_dataset: Path, dead_backbone: Path, rule_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a sensible learning rate, but a backbone whose weights are all zero (the head's gradients are 0)
    tuner_samples(monkeypatch, 0.05)
    # WHEN the dataset is uploaded
    result, description = run_pipeline(tmp_path, full_count_dataset, rule_path, str(dead_backbone))
    # THEN the gate stopped the model naming VanishingGradient and the tensor
    assert description["TrainingJobStatus"] == "Completed"
    assert result.error == "RuleIssuesFound", result.cause
    cause = json.loads(result.cause or "{}")["errorMessage"]
    assert "VanishingGradient IssuesFound (gradient/Linear_weight: mean |gradient| 0 < threshold 1e-07" in cause
    if rule_path == "job-config":
        assert sagemaker_rule_statuses(description)["VanishingGradient"] == "IssuesFound"
