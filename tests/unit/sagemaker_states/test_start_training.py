"""StartTraining: the training job request, exactly: by default no SageMaker rule container (the training code
profiles and checks itself); on accounts that have them, Debugger hook, rules and profiler."""

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
    RULE_IMAGE,
    TRAINING_IMAGE,
    load_event,
)

from pipeline import start_training
from pipeline.common.clients import get_client
from pipeline.common.config import Settings
from pipeline.common.sagemaker_gateway import SageMakerGateway
from pipeline.common.state_models import BestJob, Dataset
from pipeline.common.training_code_bundle import build_bundle

JOB = "train-251125-015343-3f9a1c"
OUTPUT = "s3://dog-data/jobs/251125-015343-3f9a1c/"
DEBUGGER_RULES = ["VanishingGradient", "LossNotDecreasing", "Overfit", "Overtraining", "PoorWeightInitialization"]


def _rule(name: str) -> dict[str, Any]:
    return {"RuleConfigurationName": name, "RuleEvaluatorImage": RULE_IMAGE, "RuleParameters": {"rule_to_invoke": name}}


def _expected_request(code_uri: str) -> dict[str, Any]:
    return {
        "TrainingJobName": JOB,
        "HyperParameters": {
            "sagemaker_program": '"train_model.py"',
            "sagemaker_submit_directory": f'"{code_uri}"',
            "sagemaker_region": '"us-east-1"',
            "sagemaker_container_log_level": "20",
            "batch_size": "64",
            "learning_rate": "0.0123",
            "epochs": "10",
            # the job scores the model (and the champion) as this endpoint will serve it
            "endpoint_instance_type": '"ml.m5.large"',
            "inference_precision": '"auto"',
        },
        "AlgorithmSpecification": {
            "TrainingImage": TRAINING_IMAGE,
            "TrainingInputMode": "File",
            "MetricDefinitions": METRIC_DEFINITIONS_ON_THE_WIRE,
            "EnableSageMakerMetricsTimeSeries": True,
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
        "OutputDataConfig": {"S3OutputPath": OUTPUT},
        "ResourceConfig": {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 14400},
        "Tags": [
            {"Key": "pipeline", "Value": "dog-breed-retraining"},
            {"Key": "run-id", "Value": "251125-015343-3f9a1c"},
            {"Key": "dataset-id", "Value": "3f9a1c0d7e2b"},
        ],
        "DebugHookConfig": {
            "S3OutputPath": OUTPUT,
            # 1,050 steps (6,680 images, batch 64, 10 epochs): weights and gradients 25 times, losses every step
            "HookParameters": {"train.save_interval": "42", "eval.save_interval": "42"},
            "CollectionConfigurations": [
                {"CollectionName": "weights"},
                {"CollectionName": "gradients"},
                {
                    "CollectionName": "losses",
                    "CollectionParameters": {"train.save_interval": "1", "eval.save_interval": "1"},
                },
                {"CollectionName": "relu_input", "CollectionParameters": {"include_regex": ".*relu_input"}},
            ],
        },
        "DebugRuleConfigurations": [_rule(name) for name in DEBUGGER_RULES],
        "ProfilerConfig": {"S3OutputPath": OUTPUT, "DisableProfiler": False},
        "ProfilerRuleConfigurations": [_rule("ProfilerReport")],
    }


@pytest.fixture
def rule_containers_on(monkeypatch: pytest.MonkeyPatch, pipeline_env: Path) -> None:
    """An account that still has SageMaker Debugger and Profiler, with both turned on."""
    monkeypatch.setenv("DEBUGGER_RULES_ENABLED", "true")
    monkeypatch.setenv("PROFILER_RULES_ENABLED", "true")


def _best() -> BestJob:
    return BestJob.model_validate(load_event("start_training_best_trial")["best"])


def test_request_is_exactly_the_agreed_training_job(
    aws: None,
    rule_containers_on: None,
    settings: Settings,
    dataset: Dataset,
    pipeline_env: Path,
    stubbed: tuple[SageMakerGateway, Stubber],
) -> None:
    gateway, stubber = stubbed
    code_uri = f"s3://{BUCKET}/{build_bundle(pipeline_env).key('code/')}"
    stubber.add_response("list_endpoints", {"Endpoints": []}, NO_ENDPOINT_SEARCH)
    stubber.add_response(
        "create_training_job",
        {"TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{JOB}"},
        _expected_request(code_uri),
    )

    result = start_training.start_training(dataset, _best(), settings, gateway, boto3.client("s3", region_name=REGION))

    assert result == {
        "job_name": JOB,
        "rules": [*DEBUGGER_RULES, "ProfilerReport"],
        "output_uri": OUTPUT,
        "code_uri": code_uri,
        # SpotTraining defaults to off: the final job is on-demand, with no checkpoint configuration.
        "spot": False,
        "checkpoint_uri": None,
        "champion": None,  # nothing serves yet: no champion channel
    }


def test_the_serving_model_goes_to_the_job_as_the_champion_channel(
    aws: None, settings: Settings, dataset: Dataset, pipeline_env: Path, stubbed: tuple[SageMakerGateway, Stubber]
) -> None:
    # GIVEN an endpoint serving config cfg-1, whose Approved package's artifact is in the bucket
    gateway, stubber = stubbed
    artifact = "s3://dog-data/jobs/251101-000000-aaaaaa/train-251101-000000-aaaaaa/output/model.tar.gz"
    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key=artifact.split("/", 3)[3], Body=b"tar")
    package = "arn:aws:sagemaker:us-east-1:123456789012:model-package/dog-breed-classifier/3"
    _stub_serving_champion(stubber, package, artifact)
    expected = _expected_request(f"s3://{BUCKET}/{build_bundle(pipeline_env).key('code/')}")
    for key in ("DebugHookConfig", "DebugRuleConfigurations", "ProfilerRuleConfigurations"):
        del expected[key]
    expected["ProfilerConfig"] = {"DisableProfiler": True}
    expected["InputDataConfig"].append(
        {
            "ChannelName": "champion",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": artifact,
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
            "ContentType": "application/x-gzip",
        }
    )
    stubber.add_response("create_training_job", {"TrainingJobArn": f"arn:aws:sagemaker:::training-job/{JOB}"}, expected)

    # WHEN the final job starts
    result = start_training.start_training(dataset, _best(), settings, gateway, boto3.client("s3", region_name=REGION))

    # THEN the state names the champion the job scores
    assert result["champion"] == {
        "endpoint_config": "cfg-1",
        "model_package_arn": package,
        "model_data_url": artifact,
        "problem": None,
    }


def test_a_champion_artifact_that_is_gone_is_a_problem_and_no_channel(
    aws: None, settings: Settings, dataset: Dataset, stubbed: tuple[SageMakerGateway, Stubber]
) -> None:
    gateway, stubber = stubbed
    artifact = "s3://dog-data/jobs/old/train-old/output/model.tar.gz"
    _stub_serving_champion(stubber, "arn:aws:sagemaker:us-east-1:123456789012:model-package/g/1", artifact)
    stubber.add_response("create_training_job", {"TrainingJobArn": f"arn:aws:sagemaker:::training-job/{JOB}"})

    result = start_training.start_training(dataset, _best(), settings, gateway, boto3.client("s3", region_name=REGION))

    assert result["champion"]["problem"] == (
        f"its artifact {artifact} does not exist (deleted, or moved by a lifecycle rule)"
    )


NO_ENDPOINT_SEARCH = {"NameContains": "dog-breed-classifier", "MaxResults": 100}


def _stub_serving_champion(stubber: Stubber, package: str, artifact: str) -> None:
    created = datetime(2025, 11, 1)
    stubber.add_response(
        "list_endpoints",
        {"Endpoints": [{"EndpointName": "dog-breed-classifier", "EndpointArn": "arn:aws:sagemaker:::endpoint/x",
                        "CreationTime": created, "LastModifiedTime": created, "EndpointStatus": "InService"}]},
        NO_ENDPOINT_SEARCH,
    )  # fmt: skip
    stubber.add_response(
        "describe_endpoint",
        {"EndpointName": "dog-breed-classifier", "EndpointArn": "arn:aws:sagemaker:::endpoint/x",
         "EndpointConfigName": "cfg-1", "EndpointStatus": "InService", "CreationTime": created,
         "LastModifiedTime": created},
    )  # fmt: skip
    stubber.add_response(
        "list_model_packages",
        {"ModelPackageSummaryList": [{"ModelPackageArn": package, "CreationTime": created,
                                      "ModelPackageStatus": "Completed", "ModelApprovalStatus": "Approved"}]},
    )  # fmt: skip
    stubber.add_response(
        "describe_model_package",
        {"ModelPackageName": "dog-breed-classifier", "ModelPackageArn": package, "CreationTime": created,
         "ModelPackageStatus": "Completed", "ModelApprovalStatus": "Approved",
         "ModelPackageStatusDetails": {"ValidationStatuses": []},
         "CustomerMetadataProperties": {"endpoint_config": "cfg-1"},
         "InferenceSpecification": {"Containers": [{"Image": "x", "ModelDataUrl": artifact}],
                                    "SupportedContentTypes": ["image/jpeg"],
                                    "SupportedResponseMIMETypes": ["application/json"]}},
    )  # fmt: skip


def test_handler_creates_the_job_in_moto_with_hook_and_rules(
    aws: None, rule_containers_on: None, lambda_context: Any
) -> None:
    result = start_training.lambda_handler(load_event("start_training_best_trial"), lambda_context)

    job = boto3.client("sagemaker", region_name=REGION).describe_training_job(TrainingJobName=JOB)
    assert job["HyperParameters"]["batch_size"] == "64"
    assert [rule["RuleConfigurationName"] for rule in job["DebugRuleConfigurations"]] == DEBUGGER_RULES
    assert job["DebugHookConfig"]["HookParameters"] == {"train.save_interval": "42", "eval.save_interval": "42"}
    assert result["rules"] == [*DEBUGGER_RULES, "ProfilerReport"]


def test_by_default_no_sagemaker_rule_container_runs(aws: None, pipeline_env: Path, lambda_context: Any) -> None:
    result = start_training.lambda_handler(load_event("start_training_best_trial"), lambda_context)

    job = boto3.client("sagemaker", region_name=REGION).describe_training_job(TrainingJobName=JOB)
    assert "DebugHookConfig" not in job and "DebugRuleConfigurations" not in job
    assert result["rules"] == []


def test_reuses_the_code_bundle_start_tuning_uploaded(aws: None, pipeline_env: Path, lambda_context: Any) -> None:
    # GIVEN the bundle already in the bucket, and the handler's own S3 client counting uploads
    key = build_bundle(pipeline_env).key("code/")
    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key=key, Body=build_bundle(pipeline_env).archive)
    puts: list[str] = []
    get_client("s3").meta.events.register("provide-client-params.s3.PutObject", lambda params, **_: puts.append("put"))

    result = start_training.lambda_handler(load_event("start_training_best_trial"), lambda_context)

    assert result["code_uri"] == f"s3://{BUCKET}/{key}"
    assert puts == []


@pytest.mark.parametrize(
    ("channel", "resumes"),
    [("s3://dog-data/validated/3f9a1c0d7e2b/dataset.zip", True), ("s3://dog-data/validated/other/dataset.zip", False)],
)
def test_name_in_use_resumes_only_for_the_same_dataset(
    aws: None,
    settings: Settings,
    dataset: Dataset,
    stubbed: tuple[SageMakerGateway, Stubber],
    channel: str,
    resumes: bool,
) -> None:
    gateway, stubber = stubbed
    stubber.add_response("list_endpoints", {"Endpoints": []}, NO_ENDPOINT_SEARCH)
    stubber.add_client_error("create_training_job", "ResourceInUse", http_status_code=400)
    existing = _expected_request("s3://dog-data/code/x/sourcedir.tar.gz")
    existing["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = channel
    stubber.add_response(
        "describe_training_job",
        {
            "TrainingJobName": JOB,
            "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{JOB}",
            "TrainingJobStatus": "InProgress",
            "SecondaryStatus": "Starting",
            "AlgorithmSpecification": {"TrainingInputMode": "File"},
            "InputDataConfig": existing["InputDataConfig"],
            "ResourceConfig": existing["ResourceConfig"],
            "StoppingCondition": existing["StoppingCondition"],
            "CreationTime": datetime(2025, 11, 25, 2, 0),
            "ModelArtifacts": {"S3ModelArtifacts": ""},
        },
        {"TrainingJobName": JOB},
    )
    s3 = boto3.client("s3", region_name=REGION)

    if resumes:
        assert start_training.start_training(dataset, _best(), settings, gateway, s3)["job_name"] == JOB
    else:
        with pytest.raises(ClientError, match="ResourceInUse"):
            start_training.start_training(dataset, _best(), settings, gateway, s3)
