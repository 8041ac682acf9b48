"""Warm start through the real state machine: the second run's tuning job transfer-learns from the first run's,
and a run with no compatible parent cold-starts with the reason on ``$.tuning``."""

from __future__ import annotations

from typing import Any

import boto3
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sagemaker.models import sagemaker_backends
from state_machine_harness import HAPPY_PATH, REGION, Pipeline, assert_failed_in


def tuning_job(name: str) -> dict[str, Any]:
    return dict(
        boto3.client("sagemaker", region_name=REGION).describe_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name
        )
    )


def test_second_run_warm_starts_from_the_first_runs_tuning_job(pipeline: Pipeline, dataset_zip: bytes) -> None:
    # GIVEN a first run, which had no earlier tuning job to start from
    first = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    assert first.status == "SUCCEEDED", first.cause
    assert first.output is not None
    assert first.output["tuning"]["warm_start_parent"] is None
    assert "first run" in first.output["tuning"]["warm_start_skipped"]
    assert "WarmStartConfig" not in tuning_job(first.output["tuning"]["job_name"])

    # WHEN a new dataset version arrives
    second = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)

    # THEN its tuning job names the first run's as its TransferLearning parent, visible on the state
    assert second.status == "SUCCEEDED", second.cause
    assert second.path == HAPPY_PATH
    assert second.output is not None
    parent = first.output["tuning"]["job_name"]
    assert (second.output["tuning"]["warm_start_parent"], second.output["tuning"]["warm_start_skipped"]) == (
        parent,
        None,
    )
    assert tuning_job(second.output["tuning"]["job_name"])["WarmStartConfig"] == {
        "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": parent}],
        "WarmStartType": "TransferLearning",
    }
    # AND the model registered by the second run records its parent
    package_arn = second.output["gate"]["model_package_arn"]
    described = boto3.client("sagemaker", region_name=REGION).describe_model_package(ModelPackageName=package_arn)
    assert described["CustomerMetadataProperties"]["warm_start_parent"] == parent


def test_failed_earlier_tuning_job_is_no_parent(pipeline: Pipeline, dataset_zip: bytes) -> None:
    # GIVEN a first run whose tuning job failed
    pipeline.code.behave(tuning="fail")
    first = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    assert_failed_in(first, "GetTuningStatus")

    # WHEN the next run tunes
    pipeline.code.behave(tuning="succeed")
    second = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)

    # THEN it cold-starts and says why
    assert second.status == "SUCCEEDED", second.cause
    assert second.output is not None
    assert second.output["tuning"]["warm_start_parent"] is None
    assert "no completed tuning job" in second.output["tuning"]["warm_start_skipped"]
    assert "WarmStartConfig" not in tuning_job(second.output["tuning"]["job_name"])


def test_incompatible_last_tuning_job_means_a_cold_start_with_the_reason(
    pipeline: Pipeline, dataset_zip: bytes
) -> None:
    # GIVEN a first run whose tuning job had a static hyperparameter this version of the pipeline no longer sends
    first = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    assert first.status == "SUCCEEDED", first.cause
    assert first.output is not None
    parent = first.output["tuning"]["job_name"]
    stored = sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].hyper_parameter_tuning_jobs[parent]
    stored.training_job_definition["StaticHyperParameters"]["dropout"] = "0.2"

    # WHEN the next run tunes
    second = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)

    # THEN it cold-starts, and the console shows which job was refused and why
    assert second.status == "SUCCEEDED", second.cause
    assert second.output is not None
    assert second.output["tuning"]["warm_start_parent"] is None
    assert second.output["tuning"]["warm_start_skipped"] == (
        f"newest completed tuning job {parent} is not compatible: static hyperparameters differ from {parent}'s "
        "(added [], removed ['dropout']); cold start"
    )
    assert "WarmStartConfig" not in tuning_job(second.output["tuning"]["job_name"])
