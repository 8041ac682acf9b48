"""StartTuning: the tuning job request, exactly, and the job as moto stores it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from sagemaker_states_support import (
    BUCKET,
    METRIC_DEFINITIONS_ON_THE_WIRE,
    PRETRAINED_CHANNEL_ON_THE_WIRE,
    REGION,
    ROLE_ARN,
    TRAINING_IMAGE,
    load_event,
)

from pipeline import start_tuning
from pipeline.common.config import Settings
from pipeline.common.errors import InvalidSageMakerRequest, SageMakerThrottled
from pipeline.common.sagemaker_gateway import SageMakerGateway
from pipeline.common.state_models import Dataset
from pipeline.common.training_code_bundle import build_bundle

JOB = "hpo-251125-015343-3f9a1c"
NO_EARLIER_TUNING_JOBS = {"HyperParameterTuningJobSummaries": []}
WARM_START_SEARCH = {
    "NameContains": "hpo-",
    "StatusEquals": "Completed",
    "SortBy": "CreationTime",
    "SortOrder": "Descending",
    "MaxResults": 10,
}


def _expected_request(code_uri: str) -> dict[str, Any]:
    return {
        "HyperParameterTuningJobName": JOB,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "validation:accuracy"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 5, "MaxParallelTrainingJobs": 2},
            "ParameterRanges": {
                "CategoricalParameterRanges": [{"Name": "batch_size", "Values": ['"32"', '"64"', '"128"', '"256"']}],
                "ContinuousParameterRanges": [
                    {"Name": "learning_rate", "MinValue": "0.001", "MaxValue": "0.1", "ScalingType": "Logarithmic"}
                ],
                "IntegerParameterRanges": [],
            },
            "TrainingJobEarlyStoppingType": "Auto",
        },
        "TrainingJobDefinition": {
            "StaticHyperParameters": {
                "sagemaker_program": '"hpo.py"',
                "sagemaker_submit_directory": f'"{code_uri}"',
                "sagemaker_region": '"us-east-1"',
                "sagemaker_container_log_level": "20",
                "epochs": "4",
                "sagemaker_estimator_class_name": '"PyTorch"',
                "sagemaker_estimator_module": '"sagemaker.pytorch.estimator"',
            },
            "AlgorithmSpecification": {
                "TrainingImage": TRAINING_IMAGE,
                "TrainingInputMode": "File",
                "MetricDefinitions": METRIC_DEFINITIONS_ON_THE_WIRE,
            },
            "RoleArn": ROLE_ARN,
            "InputDataConfig": [
                {
                    "ChannelName": "training",
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": "s3://dog-data/validated/3f9a1c0d7e2b/dataset.zip",
                            "S3DataDistributionType": "FullyReplicated",
                        }
                    },
                    "ContentType": "application/zip",
                },
                PRETRAINED_CHANNEL_ON_THE_WIRE,
            ],
            "OutputDataConfig": {"S3OutputPath": "s3://dog-data/jobs/251125-015343-3f9a1c/"},
            "ResourceConfig": {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
            # SpotTuning defaults to on: trials on spot capacity, checkpointed, waiting at most MaxWaitSeconds.
            "EnableManagedSpotTraining": True,
            "CheckpointConfig": {
                "S3Uri": "s3://dog-data/jobs/251125-015343-3f9a1c/checkpoints/hpo-251125-015343-3f9a1c",
                "LocalPath": "/opt/ml/checkpoints",
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": 14400, "MaxWaitTimeInSeconds": 28800},
        },
        "Tags": [
            {"Key": "pipeline", "Value": "dog-breed-retraining"},
            {"Key": "run-id", "Value": "251125-015343-3f9a1c"},
            {"Key": "dataset-id", "Value": "3f9a1c0d7e2b"},
        ],
    }


def test_request_is_exactly_the_agreed_tuning_job(
    aws: None, settings: Settings, dataset: Dataset, pipeline_env: Path, stubbed: tuple[SageMakerGateway, Stubber]
) -> None:
    # GIVEN a stubbed SageMaker that expects the exact request
    gateway, stubber = stubbed
    code_uri = f"s3://{BUCKET}/{build_bundle(pipeline_env).key('code/')}"
    stubber.add_response("list_hyper_parameter_tuning_jobs", NO_EARLIER_TUNING_JOBS, WARM_START_SEARCH)
    stubber.add_response(
        "create_hyper_parameter_tuning_job",
        {"HyperParameterTuningJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/{JOB}"},
        _expected_request(code_uri),
    )

    # WHEN the tuning starts
    result = start_tuning.start_tuning(dataset, settings, gateway, boto3.client("s3", region_name=REGION))

    # THEN the state gets the job and the code it runs
    assert result == {
        "job_name": JOB,
        "code_uri": code_uri,
        "output_uri": "s3://dog-data/jobs/251125-015343-3f9a1c/",
        "max_jobs": 5,
        "warm_start_parent": None,
        "warm_start_skipped": "no completed tuning job of this pipeline yet (first run): cold start",
        "spot": True,
        "warm_pool_seconds": 0,
    }


def test_handler_creates_the_job_in_sagemaker_and_uploads_the_code(
    aws: None, pipeline_env: Path, lambda_context: Any
) -> None:
    result = start_tuning.lambda_handler(load_event("start_tuning_validated_dataset"), lambda_context)

    sagemaker = boto3.client("sagemaker", region_name=REGION)
    job = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=result["job_name"])
    assert job["HyperParameterTuningJobConfig"]["Strategy"] == "Bayesian"
    assert job["TrainingJobDefinition"]["StaticHyperParameters"]["sagemaker_submit_directory"] == (
        f'"{result["code_uri"]}"'
    )
    bucket, key = result["code_uri"].removeprefix("s3://").split("/", 1)
    stored = boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"].read()
    assert stored == build_bundle(pipeline_env).archive


def test_misspelt_instance_type_fails_before_anything_reaches_sagemaker(
    aws: None, monkeypatch: pytest.MonkeyPatch, pipeline_env: Path, lambda_context: Any
) -> None:
    monkeypatch.setenv("TUNING_INSTANCE_TYPE", "ml.g4dn.huge")

    with pytest.raises(InvalidSageMakerRequest, match=r"ResourceConfig.InstanceType: 'ml.g4dn.huge' is not one of"):
        start_tuning.lambda_handler(load_event("start_tuning_validated_dataset"), lambda_context)

    jobs = boto3.client("sagemaker", region_name=REGION).list_hyper_parameter_tuning_jobs()
    assert jobs["HyperParameterTuningJobSummaries"] == []


def test_throttled_create_is_raised_as_retryable(
    aws: None, settings: Settings, dataset: Dataset, stubbed: tuple[SageMakerGateway, Stubber]
) -> None:
    gateway, stubber = stubbed
    stubber.add_response("list_hyper_parameter_tuning_jobs", NO_EARLIER_TUNING_JOBS, WARM_START_SEARCH)
    stubber.add_client_error("create_hyper_parameter_tuning_job", "ThrottlingException", http_status_code=400)

    with pytest.raises(SageMakerThrottled):
        start_tuning.start_tuning(dataset, settings, gateway, boto3.client("s3", region_name=REGION))


def _existing_job(validated_uri: str) -> dict[str, Any]:
    definition = _expected_request("s3://dog-data/code/x/sourcedir.tar.gz")["TrainingJobDefinition"]
    definition["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = validated_uri
    return {
        "HyperParameterTuningJobName": JOB,
        "HyperParameterTuningJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/{JOB}",
        "HyperParameterTuningJobConfig": _expected_request("x")["HyperParameterTuningJobConfig"],
        "TrainingJobDefinition": definition,
        "HyperParameterTuningJobStatus": "InProgress",
        "CreationTime": datetime(2025, 11, 25, 1, 54),
        "TrainingJobStatusCounters": {},
        "ObjectiveStatusCounters": {},
    }


def test_retry_finding_its_own_job_carries_on(
    aws: None, settings: Settings, dataset: Dataset, stubbed: tuple[SageMakerGateway, Stubber]
) -> None:
    # GIVEN the job already exists because an earlier attempt of this state created it
    gateway, stubber = stubbed
    stubber.add_response("list_hyper_parameter_tuning_jobs", NO_EARLIER_TUNING_JOBS, WARM_START_SEARCH)
    stubber.add_client_error("create_hyper_parameter_tuning_job", "ResourceInUse", http_status_code=400)
    stubber.add_response(
        "describe_hyper_parameter_tuning_job",
        _existing_job(dataset.validated_uri),
        {"HyperParameterTuningJobName": JOB},
    )

    result = start_tuning.start_tuning(dataset, settings, gateway, boto3.client("s3", region_name=REGION))

    assert result["job_name"] == JOB


def test_name_taken_by_a_job_on_other_data_is_an_error(
    aws: None, settings: Settings, dataset: Dataset, stubbed: tuple[SageMakerGateway, Stubber]
) -> None:
    gateway, stubber = stubbed
    stubber.add_response("list_hyper_parameter_tuning_jobs", NO_EARLIER_TUNING_JOBS, WARM_START_SEARCH)
    stubber.add_client_error("create_hyper_parameter_tuning_job", "ResourceInUse", http_status_code=400)
    stubber.add_response(
        "describe_hyper_parameter_tuning_job",
        _existing_job("s3://dog-data/validated/other/dataset.zip"),
        {"HyperParameterTuningJobName": JOB},
    )

    with pytest.raises(ClientError, match="ResourceInUse"):
        start_tuning.start_tuning(dataset, settings, gateway, boto3.client("s3", region_name=REGION))


def test_retry_reports_the_parent_the_existing_job_really_has(
    aws: None, settings: Settings, dataset: Dataset, stubbed: tuple[SageMakerGateway, Stubber]
) -> None:
    # GIVEN the first attempt created the job warm-started from hpo-old, which no longer is the newest completed job
    gateway, stubber = stubbed
    stubber.add_response("list_hyper_parameter_tuning_jobs", NO_EARLIER_TUNING_JOBS, WARM_START_SEARCH)
    stubber.add_client_error("create_hyper_parameter_tuning_job", "ResourceInUse", http_status_code=400)
    existing = _existing_job(dataset.validated_uri) | {
        "WarmStartConfig": {
            "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": "hpo-old"}],
            "WarmStartType": "TransferLearning",
        }
    }
    stubber.add_response("describe_hyper_parameter_tuning_job", existing, {"HyperParameterTuningJobName": JOB})

    result = start_tuning.start_tuning(dataset, settings, gateway, boto3.client("s3", region_name=REGION))

    # THEN the state shows the parent the running job has
    assert (result["warm_start_parent"], result["warm_start_skipped"]) == ("hpo-old", None)
