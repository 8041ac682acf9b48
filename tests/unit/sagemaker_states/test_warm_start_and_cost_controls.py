"""Warm start from the previous tuning job, managed spot with checkpoints, warm pools: requests and choices."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import boto3
import pytest
from sagemaker_states_support import BEST, CODE_URI, REGION, assert_valid, load_event

from pipeline import start_tuning
from pipeline.common.config import Settings
from pipeline.common.sagemaker_requests import training_job_request, tuning_job_request
from pipeline.common.state_models import Dataset
from pipeline.common.warm_start import incompatibility


def _event(run_id: str) -> dict[str, Any]:
    event = load_event("start_tuning_validated_dataset")
    event["dataset"]["run_id"] = run_id
    return event


def _as_parent(request: dict[str, Any], status: str = "Completed") -> dict[str, Any]:
    return copy.deepcopy(request) | {"HyperParameterTuningJobStatus": status}


# --- compatibility -------------------------------------------------------------------------------------------------


def test_same_search_is_a_compatible_parent(settings: Settings, dataset: Dataset) -> None:
    request = tuning_job_request(settings, dataset, "hpo-2", CODE_URI, REGION)

    assert (
        incompatibility(request, _as_parent(tuning_job_request(settings, dataset, "hpo-1", CODE_URI, REGION))) is None
    )


def test_new_static_hyperparameter_makes_the_parent_incompatible(settings: Settings, dataset: Dataset) -> None:
    parent = _as_parent(tuning_job_request(settings, dataset, "hpo-1", CODE_URI, REGION))
    changed = dataclasses.replace(settings, extra_hyperparameters={"image_size": "160"})

    problem = incompatibility(tuning_job_request(changed, dataset, "hpo-2", CODE_URI, REGION), parent)

    assert problem == "static hyperparameters differ from hpo-1's (added ['image_size'], removed [])"


def test_other_objective_or_range_kind_or_running_parent_is_incompatible(settings: Settings, dataset: Dataset) -> None:
    request = tuning_job_request(settings, dataset, "hpo-2", CODE_URI, REGION)
    other_objective = _as_parent(request)
    other_objective["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"] = "train:loss"
    other_kind = _as_parent(request)
    ranges = other_kind["HyperParameterTuningJobConfig"]["ParameterRanges"]
    ranges["IntegerParameterRanges"] = [{"Name": "batch_size", "MinValue": "32", "MaxValue": "256"}]
    ranges["CategoricalParameterRanges"] = []

    assert "tuned Maximize train:loss" in str(incompatibility(request, other_objective))
    assert "('batch_size', 'IntegerParameterRanges')" in str(incompatibility(request, other_kind))
    assert "is InProgress, not terminal" in str(incompatibility(request, _as_parent(request, "InProgress")))


# --- StartTuning on moto -------------------------------------------------------------------------------------------


def test_second_run_warm_starts_from_the_first_runs_tuning_job(
    aws: None, pipeline_env: Path, lambda_context: Any
) -> None:
    # GIVEN a first run whose tuning job completed (moto completes them at once)
    first = start_tuning.lambda_handler(_event("251118-020112-77aa01"), lambda_context)
    assert (first["warm_start_parent"], first["warm_start_skipped"]) == (
        None,
        "no completed tuning job of this pipeline yet (first run): cold start",
    )

    # WHEN the next run starts its tuning job
    second = start_tuning.lambda_handler(_event("251125-015343-3f9a1c"), lambda_context)

    # THEN it transfer-learns from the first run's job, and says so
    assert (second["warm_start_parent"], second["warm_start_skipped"]) == (first["job_name"], None)
    described = boto3.client("sagemaker", region_name=REGION).describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=second["job_name"]
    )
    assert described["WarmStartConfig"] == {
        "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": first["job_name"]}],
        "WarmStartType": "TransferLearning",
    }


def test_incompatible_last_job_means_a_cold_start_with_the_reason(
    aws: None, pipeline_env: Path, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a first run, then a static hyperparameter added to the template
    first = start_tuning.lambda_handler(_event("251118-020112-77aa01"), lambda_context)
    monkeypatch.setenv("EXTRA_HYPERPARAMETERS", '{"image_size": 160}')

    second = start_tuning.lambda_handler(_event("251125-015343-3f9a1c"), lambda_context)

    assert second["warm_start_parent"] is None
    assert second["warm_start_skipped"] == (
        f"newest completed tuning job {first['job_name']} is not compatible: static hyperparameters differ from "
        f"{first['job_name']}'s (added ['image_size'], removed []); cold start"
    )
    described = boto3.client("sagemaker", region_name=REGION).describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=second["job_name"]
    )
    assert "WarmStartConfig" not in described


def test_warm_start_request_passes_the_api_model(settings: Settings, dataset: Dataset) -> None:
    request = tuning_job_request(settings, dataset, "hpo-2", CODE_URI, REGION, warm_start_parent="hpo-1")

    assert request["WarmStartConfig"]["WarmStartType"] == "TransferLearning"
    assert_valid("create_hyper_parameter_tuning_job", request)


# --- spot, checkpoints, warm pools ---------------------------------------------------------------------------------


def test_spot_training_job_checkpoints_under_the_run_and_waits_at_least_its_runtime(
    settings: Settings, dataset: Dataset
) -> None:
    spot = dataclasses.replace(settings, spot_training=True, max_wait_seconds=600, max_training_seconds=3600)

    request = training_job_request(spot, dataset, BEST, "train-251125-015343-3f9a1c", CODE_URI, REGION)

    assert request["EnableManagedSpotTraining"] is True
    assert request["CheckpointConfig"] == {
        "S3Uri": "s3://dog-data/jobs/251125-015343-3f9a1c/checkpoints/train-251125-015343-3f9a1c",
        "LocalPath": "/opt/ml/checkpoints",
    }
    # MaxWaitSeconds below the runtime bound is raised to it (SageMaker requires MaxWait >= MaxRuntime).
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 3600}
    assert_valid("create_training_job", request)


def test_on_demand_jobs_carry_no_spot_settings(settings: Settings, dataset: Dataset) -> None:
    on_demand = dataclasses.replace(settings, spot_tuning=False)

    tuning = tuning_job_request(on_demand, dataset, "hpo-1", CODE_URI, REGION)["TrainingJobDefinition"]
    training = training_job_request(settings, dataset, BEST, "train-1", CODE_URI, REGION)

    for definition in (tuning, training):
        assert "EnableManagedSpotTraining" not in definition
        assert "CheckpointConfig" not in definition
        assert definition["StoppingCondition"] == {"MaxRuntimeInSeconds": 14400}


def test_warm_pool_is_set_for_on_demand_trials(settings: Settings, dataset: Dataset) -> None:
    warm = dataclasses.replace(settings, spot_tuning=False, warm_pool_seconds=1800)

    request = tuning_job_request(warm, dataset, "hpo-1", CODE_URI, REGION)

    assert request["TrainingJobDefinition"]["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 1800
    assert_valid("create_hyper_parameter_tuning_job", request)


def test_warm_pool_is_left_off_with_spot_and_the_reason_reaches_the_state(
    aws: None, pipeline_env: Path, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARM_POOL_SECONDS", "1800")  # SpotTuning stays at its default, true

    result = start_tuning.lambda_handler(_event("251125-015343-3f9a1c"), lambda_context)

    assert (result["spot"], result["warm_pool_seconds"]) == (True, 0)
    described = boto3.client("sagemaker", region_name=REGION).describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=result["job_name"]
    )
    definition = described["TrainingJobDefinition"]
    assert "KeepAlivePeriodInSeconds" not in definition["ResourceConfig"]
    assert definition["EnableManagedSpotTraining"] is True
    assert (
        definition["StoppingCondition"]["MaxWaitTimeInSeconds"]
        >= definition["StoppingCondition"]["MaxRuntimeInSeconds"]
    )
