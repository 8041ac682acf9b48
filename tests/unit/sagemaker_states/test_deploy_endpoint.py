"""DeployEndpoint: create on the first run, guarded blue/green update afterwards, nothing touched when refused."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from sagemaker_states_support import INFERENCE_ENVIRONMENT, INFERENCE_IMAGE, REGION, ROLE_ARN, load_event

from pipeline import deploy_endpoint, start_training
from pipeline.common.config import Settings
from pipeline.common.errors import DeploymentFailed
from pipeline.common.sagemaker_gateway import SageMakerGateway
from pipeline.common.state_models import Dataset, Training

ENDPOINT = "dog-breed-classifier"
ENDPOINT_ARN = f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{ENDPOINT}"
NEW = "dogs-251125-015343-3f9a1c"
OLD = "dogs-251118-020000-77aa00"
JOB = "train-251125-015343-3f9a1c"
ARTIFACT = f"s3://dog-data/jobs/251125-015343-3f9a1c/{JOB}/output/model.tar.gz"
TAGS = [
    {"Key": "pipeline", "Value": "dog-breed-retraining"},
    {"Key": "run-id", "Value": "251125-015343-3f9a1c"},
    {"Key": "dataset-id", "Value": "3f9a1c0d7e2b"},
]


@pytest.fixture
def trained(sagemaker_backend: Any, pipeline_env: Path, lambda_context: Any) -> None:
    start_training.lambda_handler(load_event("start_training_best_trial"), lambda_context)


@pytest.fixture
def stubbed_autoscaling() -> Iterator[tuple[SageMakerGateway, Stubber]]:
    """Application Auto Scaling, stubbed like SageMaker: only the scripted calls may happen."""
    client = boto3.client("application-autoscaling", region_name=REGION)
    with Stubber(client) as stubber:
        yield SageMakerGateway(client), stubber
        stubber.assert_no_pending_responses()


def _serve_old_model() -> None:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    sagemaker.create_model(ModelName=OLD, ExecutionRoleArn=ROLE_ARN, PrimaryContainer={"Image": INFERENCE_IMAGE})
    sagemaker.create_endpoint_config(
        EndpointConfigName=OLD,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": OLD, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
    )
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=OLD)


def _expect_absent(stubber: Stubber, operation: str, name: str) -> None:
    items = "Models" if operation == "list_models" else "EndpointConfigs"
    stubber.add_response(operation, {items: []}, {"NameContains": name, "MaxResults": 100})


def _expect_completed_training_job(stubber: Stubber, now: datetime) -> None:
    stubber.add_response(
        "describe_training_job",
        {
            "TrainingJobName": JOB,
            "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{JOB}",
            "TrainingJobStatus": "Completed",
            "SecondaryStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": ARTIFACT},
            "AlgorithmSpecification": {"TrainingInputMode": "File"},
            "ResourceConfig": {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 14400},
            "CreationTime": now,
        },
        {"TrainingJobName": JOB},
    )


def _model_names() -> list[str]:
    return [model["ModelName"] for model in boto3.client("sagemaker", region_name=REGION).list_models()["Models"]]


def test_first_run_creates_the_endpoint(trained: None, lambda_context: Any) -> None:
    result = deploy_endpoint.lambda_handler(load_event("deploy_endpoint_after_rules"), lambda_context)

    assert result == {
        "endpoint": ENDPOINT,
        "endpoint_config": NEW,
        "model": NEW,
        "model_data": ARTIFACT,
        "action": "create",
        "previous_endpoint_config": None,
        "deployment_config": {"strategy": "CREATE"},
        "autoscaling": {"enabled": False, "initial_instance_count": 1, "deregistered": []},
    }
    endpoint = boto3.client("sagemaker", region_name=REGION).describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointConfigName"] == NEW


def test_later_run_updates_blue_green_with_the_rollback_alarms(trained: None, lambda_context: Any) -> None:
    # GIVEN the previous model serving
    _serve_old_model()

    # WHEN the new model is deployed
    result = deploy_endpoint.lambda_handler(load_event("deploy_endpoint_after_rules"), lambda_context)

    # THEN it is an update, guarded by the alarms, remembering what served before
    assert (result["action"], result["previous_endpoint_config"]) == ("update", OLD)
    assert result["deployment_config"] == {
        "strategy": "ALL_AT_ONCE",
        "instance_count": 1,
        "step_instances": 1,
        "wait_seconds": 0,
        "bake_seconds": 600,
        "max_execution_seconds": 2400,
        "alarms": ["dog-breed-5xx", "dog-breed-latency"],
    }
    endpoint = boto3.client("sagemaker", region_name=REGION).describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["LastDeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"] == [
        {"AlarmName": "dog-breed-5xx"},
        {"AlarmName": "dog-breed-latency"},
    ]
    model = boto3.client("sagemaker", region_name=REGION).describe_model(ModelName=NEW)
    assert model["PrimaryContainer"]["ModelDataUrl"] == ARTIFACT


def test_busy_endpoint_is_left_untouched_and_nothing_is_created(
    trained: None, sagemaker_backend: Any, lambda_context: Any
) -> None:
    _serve_old_model()
    sagemaker_backend.endpoints[ENDPOINT].endpoint_status = "Updating"

    with pytest.raises(DeploymentFailed, match=rf"endpoint {ENDPOINT} is Updating \(config {OLD}\), so it was left"):
        deploy_endpoint.lambda_handler(load_event("deploy_endpoint_after_rules"), lambda_context)

    assert _model_names() == [OLD]


def test_impossible_strategy_is_refused_before_anything_is_created(
    trained: None, monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    monkeypatch.setenv("DEPLOYMENT_STRATEGY", "CANARY")

    with pytest.raises(DeploymentFailed, match="CANARY needs at least 2 endpoint instances"):
        deploy_endpoint.lambda_handler(load_event("deploy_endpoint_after_rules"), lambda_context)

    assert _model_names() == []


def test_update_requests_are_exactly_the_agreed_ones(
    settings: Settings,
    stubbed: tuple[SageMakerGateway, Stubber],
    stubbed_autoscaling: tuple[SageMakerGateway, Stubber],
) -> None:
    # GIVEN three instances and a CANARY strategy, and a stubbed SageMaker expecting each request exactly
    gateway, stubber = stubbed
    # AND no scalable target on the endpoint (autoscaling is off), so none is deregistered before the update
    autoscaling, autoscaling_stubber = stubbed_autoscaling
    autoscaling_stubber.add_response(
        "describe_scalable_targets",
        {"ScalableTargets": []},
        {
            "ServiceNamespace": "sagemaker",
            "ResourceIds": [f"endpoint/{ENDPOINT}/variant/AllTraffic"],
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        },
    )
    settings = dataclasses.replace(settings, endpoint_instance_count=3, deployment_strategy="CANARY")
    event = load_event("deploy_endpoint_after_rules")
    now = datetime(2025, 11, 25, 4, 0)
    stubber.add_response(
        "list_endpoints",
        {
            "Endpoints": [
                {
                    "EndpointName": f"{ENDPOINT}-staging",
                    "EndpointArn": f"{ENDPOINT_ARN}-staging",
                    "CreationTime": now,
                    "LastModifiedTime": now,
                    "EndpointStatus": "InService",
                },
                {
                    "EndpointName": ENDPOINT,
                    "EndpointArn": ENDPOINT_ARN,
                    "CreationTime": now,
                    "LastModifiedTime": now,
                    "EndpointStatus": "InService",
                },
            ]
        },
        {"NameContains": ENDPOINT, "MaxResults": 100},
    )
    stubber.add_response(
        "describe_endpoint",
        {
            "EndpointName": ENDPOINT,
            "EndpointArn": ENDPOINT_ARN,
            "EndpointConfigName": OLD,
            "EndpointStatus": "InService",
            "CreationTime": now,
            "LastModifiedTime": now,
        },
        {"EndpointName": ENDPOINT},
    )
    _expect_completed_training_job(stubber, now)
    _expect_absent(stubber, "list_models", NEW)
    stubber.add_response(
        "create_model",
        {"ModelArn": f"arn:aws:sagemaker:us-east-1:123456789012:model/{NEW}"},
        {
            "ModelName": NEW,
            "PrimaryContainer": {
                "Image": INFERENCE_IMAGE,
                "ModelDataUrl": ARTIFACT,
                "Environment": INFERENCE_ENVIRONMENT,
            },
            "ExecutionRoleArn": ROLE_ARN,
            "Tags": TAGS,
        },
    )
    _expect_absent(stubber, "list_endpoint_configs", NEW)
    stubber.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/{NEW}"},
        {
            "EndpointConfigName": NEW,
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": NEW,
                    "InitialInstanceCount": 3,
                    "InstanceType": "ml.m5.large",
                    "InitialVariantWeight": 1.0,
                }
            ],
            "Tags": TAGS,
        },
    )
    stubber.add_response(
        "update_endpoint",
        {"EndpointArn": ENDPOINT_ARN},
        {
            "EndpointName": ENDPOINT,
            "EndpointConfigName": NEW,
            "DeploymentConfig": {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {
                        "Type": "CANARY",
                        "WaitIntervalInSeconds": 600,
                        "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
                    },
                    "TerminationWaitInSeconds": 600,
                    "MaximumExecutionTimeoutInSeconds": 3000,
                },
                "AutoRollbackConfiguration": {
                    "Alarms": [{"AlarmName": "dog-breed-5xx"}, {"AlarmName": "dog-breed-latency"}]
                },
            },
        },
    )

    result = deploy_endpoint.deploy_endpoint(
        Dataset.model_validate(event["dataset"]),
        Training.model_validate(event["training"]),
        settings,
        gateway,
        autoscaling,
    )

    assert result["deployment_config"]["strategy"] == "CANARY"


def test_retry_after_the_update_was_sent_resumes_without_touching_anything(
    settings: Settings,
    stubbed: tuple[SageMakerGateway, Stubber],
    stubbed_autoscaling: tuple[SageMakerGateway, Stubber],
) -> None:
    # GIVEN an earlier attempt already created model and config and started the update (Lambda then timed out)
    gateway, stubber = stubbed
    now = datetime(2025, 11, 25, 4, 0)
    stubber.add_response(
        "list_endpoints",
        {
            "Endpoints": [
                {
                    "EndpointName": ENDPOINT,
                    "EndpointArn": ENDPOINT_ARN,
                    "CreationTime": now,
                    "LastModifiedTime": now,
                    "EndpointStatus": "Updating",
                }
            ]
        },
        {"NameContains": ENDPOINT, "MaxResults": 100},
    )
    stubber.add_response(
        "describe_endpoint",
        {
            "EndpointName": ENDPOINT,
            "EndpointArn": ENDPOINT_ARN,
            "EndpointConfigName": OLD,
            "EndpointStatus": "Updating",
            "CreationTime": now,
            "LastModifiedTime": now,
            "PendingDeploymentSummary": {"EndpointConfigName": NEW},
        },
        {"EndpointName": ENDPOINT},
    )
    _expect_completed_training_job(stubber, now)
    stubber.add_response(
        "list_models",
        {
            "Models": [
                {
                    "ModelName": NEW,
                    "ModelArn": f"arn:aws:sagemaker:us-east-1:123456789012:model/{NEW}",
                    "CreationTime": now,
                }
            ]
        },
        {"NameContains": NEW, "MaxResults": 100},
    )
    stubber.add_response(
        "list_endpoint_configs",
        {
            "EndpointConfigs": [
                {
                    "EndpointConfigName": NEW,
                    "CreationTime": now,
                    "EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/{NEW}",
                }
            ]
        },
        {"NameContains": NEW, "MaxResults": 100},
    )
    event = load_event("deploy_endpoint_after_rules")

    # WHEN the state runs again (no create, update or autoscaling call is scripted: any would fail the stub)
    result = deploy_endpoint.deploy_endpoint(
        Dataset.model_validate(event["dataset"]),
        Training.model_validate(event["training"]),
        settings,
        gateway,
        stubbed_autoscaling[0],
    )

    # THEN the poll loop gets what it needs to detect a rollback
    assert (result["action"], result["previous_endpoint_config"], result["endpoint_config"]) == ("update", OLD, NEW)


def test_job_without_a_model_artifact_is_not_deployed(
    trained: None, sagemaker_backend: Any, lambda_context: Any
) -> None:
    sagemaker_backend.training_jobs[JOB].training_job_status = "Failed"

    with pytest.raises(DeploymentFailed, match=f"training job {JOB} is Failed with no model artifact"):
        deploy_endpoint.lambda_handler(load_event("deploy_endpoint_after_rules"), lambda_context)

    assert _model_names() == []
