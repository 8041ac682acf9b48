"""Sabotaged training is stopped by the rule gate, through the real ASL, handlers and training code.

A full-count 133-class dataset (6,680 / 835 / 836 images, the template's expected counts) at a tiny resolution gives
production step counts cheaply: 105 training steps an epoch at batch 64. The jobs take the production path (frozen
backbone, the head trained on cached features). Each sabotage runs on both rule paths: the local hook with our rules
(the template's defaults, any account) and the job's DebugHookConfig with SageMaker's rule jobs (an account that
still has Debugger; locally those rule jobs run the project's rules on the job's tensors).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import torch
from dog_model import build_model

from offline.initial_weights import choose_initial_weights
from offline.local_sagemaker import tuning
from offline.run import Console, OfflinePipeline, RunResult
from offline.synthetic_dataset import write_dataset_zip

pytestmark = pytest.mark.slow

CLASSES, COUNTS = 133, (6680, 835, 836)
BATCH_SIZE = 64
PATHS = {
    "local-hook": {"DebuggerRules": "false", "ProfilerRules": "false"},
    "job-config": {"DebuggerRules": "true", "ProfilerRules": "true"},
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset_zip(
        tmp_path_factory.mktemp("data") / "dogs.zip", num_classes=CLASSES, counts=COUNTS, image_size=24
    )


@pytest.fixture(scope="module")
def stand_in() -> str:
    """The offline run's stand-in for ImageNet's weights: the jobs take the production path from it."""
    return choose_initial_weights("stand-in").hyperparameter


@pytest.fixture(scope="module")
def dead_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ResNet18 weights that are all zero: the backbone's features are 0, so the head's weights get no gradient."""
    state = {name: torch.zeros_like(tensor) for name, tensor in build_model(1000).state_dict().items()}
    path = tmp_path_factory.mktemp("weights") / "dead_backbone.pth"
    torch.save(state, path)
    return path


def _tuner_samples(monkeypatch: pytest.MonkeyPatch, learning_rate: float) -> None:
    """The local tuner's one trial takes these values (as SageMaker passes tuned values), so the final training
    inherits them through PickBestJob and StartTraining."""
    chosen = {"batch_size": json.dumps(str(BATCH_SIZE)), "learning_rate": repr(learning_rate)}
    monkeypatch.setattr(tuning, "sample_hyperparameters", lambda ranges, rng: dict(chosen))


def _run(
    tmp_path: Path, dataset: Path, path: str, weights: str, **extra_hyperparameters: Any
) -> tuple[RunResult, dict[str, Any]]:
    parameters = PATHS[path] | {
        "MaxTuningJobs": "1",
        "MaxParallelTuningJobs": "1",
        "TuningEpochs": "1",
        "TrainingEpochs": "1",
        "PollIntervalSeconds": "1",
        # The gate under test is the rule gate; the champion/challenger gate lets any model through here.
        "AccuracyFloor": "0",
        "ChampionTolerance": "1",
        "ExtraHyperparameters": json.dumps({"image_size": 16, "weights": weights, **extra_hyperparameters}),
    }
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        with OfflinePipeline(tmp_path / "work", parameters, Console(quiet=True)) as pipeline:
            result = pipeline.run(lambda: pipeline.upload(dataset, "incoming/dogs.zip"), tmp_path / "out")
            sagemaker = boto3.client("sagemaker")
            (job,) = [j["TrainingJobName"] for j in sagemaker.list_training_jobs()["TrainingJobSummaries"]
                      if j["TrainingJobName"].startswith("train-")]  # fmt: skip
            description = sagemaker.describe_training_job(TrainingJobName=job)
    return result, description


def _sagemaker_rule_statuses(description: dict[str, Any]) -> dict[str, str]:
    return {s["RuleConfigurationName"]: s["RuleEvaluationStatus"] for s in description["DebugRuleEvaluationStatuses"]}


@pytest.fixture(params=list(PATHS))
def rule_path(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param


def test_a_loss_that_cannot_come_down_is_blocked_by_loss_not_decreasing(
    tmp_path: Path, dataset: Path, stand_in: str, rule_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a tuner whose trial (and so the final training) uses learning rate 0
    _tuner_samples(monkeypatch, 0.0)
    # WHEN the dataset is uploaded
    result, description = _run(tmp_path, dataset, rule_path, stand_in)
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
        assert _sagemaker_rule_statuses(description)["LossNotDecreasing"] == "IssuesFound"


def test_a_network_whose_gradients_vanish_is_blocked_by_vanishing_gradient(
    tmp_path: Path, dataset: Path, dead_backbone: Path, rule_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a sensible learning rate, but a backbone whose weights are all zero (the head's gradients are 0)
    _tuner_samples(monkeypatch, 0.05)
    # WHEN the dataset is uploaded
    result, description = _run(tmp_path, dataset, rule_path, str(dead_backbone))
    # THEN the gate stopped the model naming VanishingGradient and the tensor
    assert description["TrainingJobStatus"] == "Completed"
    assert result.error == "RuleIssuesFound", result.cause
    cause = json.loads(result.cause or "{}")["errorMessage"]
    assert "VanishingGradient IssuesFound (gradient/Linear_weight: mean |gradient| 0 < threshold 1e-07" in cause
    if rule_path == "job-config":
        assert _sagemaker_rule_statuses(description)["VanishingGradient"] == "IssuesFound"


def test_healthy_training_on_the_same_data_passes_the_gate_with_its_profile(
    tmp_path: Path, dataset: Path, stand_in: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the same data and tuner with a sensible learning rate and a working backbone
    _tuner_samples(monkeypatch, 0.05)
    # WHEN the dataset is uploaded
    result, _ = _run(tmp_path, dataset, "local-hook", stand_in)
    # THEN the blocking rules judged and found nothing, and the model deployed
    assert result.succeeded, (result.error, result.cause)
    rules = result.record["rules"]
    assert rules["rules"]["VanishingGradient"] == rules["rules"]["LossNotDecreasing"] == "NoIssuesFound"
    # AND the profiler's rules are in the run's output with what they judged; GPU rules say why they could not
    assert rules["rules"]["MaxInitializationTime"] == "NoIssuesFound"
    assert rules["rules"]["LowGPUUtilization"] == "NotEvaluated" and "GPU" in rules["details"]["LowGPUUtilization"]
    assert "training steps" in rules["details"]["Dataloader"]
