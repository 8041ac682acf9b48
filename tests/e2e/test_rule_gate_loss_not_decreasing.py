"""The rule gate stops a loss that cannot come down (LossNotDecreasing) and passes healthy training on the same
data: full-count runs through the real ASL, handlers and training code (sabotage_runs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sabotage_runs import run_pipeline, sagemaker_rule_statuses, tuner_samples

pytestmark = pytest.mark.slow


def test_a_loss_that_cannot_come_down_is_blocked_by_loss_not_decreasing(
    tmp_path: Path, full_count_dataset: Path, stand_in: str, rule_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a tuner whose trial (and so the final training) uses learning rate 0
    tuner_samples(monkeypatch, 0.0)
    # WHEN the dataset is uploaded
    result, description = run_pipeline(tmp_path, full_count_dataset, rule_path, stand_in)
    # THEN training completed, but the gate stopped the model naming LossNotDecreasing and how flat the loss was
    assert description["TrainingJobStatus"] == "Completed"
    assert result.error == "RuleIssuesFound", result.cause
    cause = json.loads(result.cause or "{}")["errorMessage"]
    assert "LossNotDecreasing IssuesFound (the TRAIN loss did not come down over 104 training steps" in cause
    assert "VanishingGradient" not in cause
    assert result.outcome == "RunFailed" and "DeployEndpoint" not in {v.name for v in result.visits}
    if rule_path == "job-config":
        # AND SageMaker's rule job, on the tensors the job's Debugger config saved, found the same
        assert description["DebugHookConfig"]["HookParameters"] == {
            "train.save_interval": "4",
            "eval.save_interval": "4",
        }
        assert sagemaker_rule_statuses(description)["LossNotDecreasing"] == "IssuesFound"


def test_healthy_training_on_the_same_data_passes_the_gate_with_its_profile(
    tmp_path: Path, full_count_dataset: Path, stand_in: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the same data and tuner with a sensible learning rate and a working backbone
    tuner_samples(monkeypatch, 0.05)
    # WHEN the dataset is uploaded
    result, _ = run_pipeline(tmp_path, full_count_dataset, "local-hook", stand_in)
    # THEN the blocking rules judged and found nothing, and the model deployed
    assert result.succeeded, (result.error, result.cause)
    rules = result.record["rules"]
    assert rules["rules"]["VanishingGradient"] == rules["rules"]["LossNotDecreasing"] == "NoIssuesFound"
    # AND the profiler's rules are in the run's output with what they judged; GPU rules say why they could not
    assert rules["rules"]["MaxInitializationTime"] == "NoIssuesFound"
    assert rules["rules"]["LowGPUUtilization"] == "NotEvaluated" and "GPU" in rules["details"]["LowGPUUtilization"]
    assert "training steps" in rules["details"]["Dataloader"]
