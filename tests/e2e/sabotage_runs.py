"""Sabotaged training through the real ASL, handlers and training code: the runs the rule-gate e2e tests share.

A full-count 133-class dataset (6,680 / 835 / 836 images, the template's expected counts) at a tiny resolution gives
production step counts cheaply: 105 training steps an epoch at batch 64. The jobs take the production path (frozen
backbone, the head trained on cached features). Each sabotage runs on both rule paths: the local hook with our rules
(the template's defaults, any account) and the job's DebugHookConfig with SageMaker's rule jobs (an account that
still has Debugger; locally those rule jobs run the project's rules on the job's tensors). The tests live in two
modules (one per blocking rule), so that pytest-xdist runs them on two workers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from offline.local_sagemaker import tuning
from offline.run import Console, OfflinePipeline, RunResult

CLASSES, COUNTS = 133, (6680, 835, 836)
BATCH_SIZE = 64
PATHS = {
    "local-hook": {"DebuggerRules": "false", "ProfilerRules": "false"},
    "job-config": {"DebuggerRules": "true", "ProfilerRules": "true"},
}


def tuner_samples(monkeypatch: pytest.MonkeyPatch, learning_rate: float) -> None:
    """The local tuner's one trial takes these values (as SageMaker passes tuned values), so the final training
    inherits them through PickBestJob and StartTraining."""
    chosen = {"batch_size": json.dumps(str(BATCH_SIZE)), "learning_rate": repr(learning_rate)}
    monkeypatch.setattr(tuning, "sample_hyperparameters", lambda ranges, rng: dict(chosen))


def run_pipeline(
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
        # No int8 check (the final job's quantise-and-score, then its int8 served score): the rule gate judges the
        # training; the other e2e runs (test_offline_run.py, test_paired_gate.py) keep the check.
        "ExtraHyperparameters": json.dumps(
            {"image_size": 16, "weights": weights, "int8_check": "false", **extra_hyperparameters}
        ),
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


def sagemaker_rule_statuses(description: dict[str, Any]) -> dict[str, str]:
    return {s["RuleConfigurationName"]: s["RuleEvaluationStatus"] for s in description["DebugRuleEvaluationStatuses"]}
