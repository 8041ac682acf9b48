"""EvaluateModel, RejectModel and ApproveModel against moto's model registry (and a Stubber for the exact request)."""

from __future__ import annotations

import copy
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sns.models import sns_backends
from sagemaker_states_support import INFERENCE_ENVIRONMENT, INFERENCE_IMAGE, REGION, ROLE_ARN, load_event

from pipeline import approve_model, evaluate_model, reject_model
from pipeline.common.champion import serving_champion
from pipeline.common.config import Settings
from pipeline.common.errors import ModelMetricMissing
from pipeline.common.sagemaker_gateway import SageMakerGateway
from pipeline.common.state_models import BestJob, Dataset, Training

GROUP = "dog-breed-classifier"
ENDPOINT = "dog-breed-classifier"
JOB = "train-251125-015343-3f9a1c"


@pytest.fixture
def event() -> dict[str, Any]:
    return load_event("evaluate_model_after_rules")


@pytest.fixture
def topic(aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    arn = str(boto3.client("sns", region_name=REGION).create_topic(Name="failures")["TopicArn"])
    monkeypatch.setenv("FAILURE_TOPIC_ARN", arn)
    return arn


def sagemaker() -> Any:
    return boto3.client("sagemaker", region_name=REGION)


def trained(
    sagemaker_backend: Any,
    name: str = JOB,
    test_accuracy: float | None = 0.83,
    champion: tuple[float, tuple[float, float]] | None = None,
) -> None:
    """A completed training job in moto with its final metrics and the evaluation.json its output.tar.gz would hold
    (``champion``: the serving model's accuracy on the same images and the paired interval)."""
    sagemaker().create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
        RoleArn=ROLE_ARN,
        OutputDataConfig={"S3OutputPath": "s3://dog-data/jobs/251125-015343-3f9a1c/"},
        ResourceConfig={"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )
    metrics = [{"MetricName": "validation:accuracy", "Value": 0.81, "Timestamp": "2025-11-25T02:00:00Z"}]
    sagemaker_backend.training_jobs[name].final_metric_data_list = metrics
    evaluation: dict[str, Any] = {"test_images": 836, "challenger": {}, "champion": None, "paired": None}
    if test_accuracy is not None:
        evaluation["challenger"] = {"served_as": "int8", "images": 836, "accuracy": test_accuracy,
                                    "top5_accuracy": 0.97, "per_breed": {}}  # fmt: skip
    if champion is not None:
        accuracy, interval = champion
        evaluation["champion"] = {"served_as": "int8", "images": 836, "accuracy": accuracy, "per_breed": {}}
        evaluation["paired"] = {
            "images": 836, "shared_breeds": 133, "breeds_only_challenger": [], "breeds_only_champion": [],
            "challenger_accuracy": test_accuracy, "champion_accuracy": accuracy,
            "difference": (test_accuracy or 0) - accuracy, "interval": list(interval), "confidence": 0.95,
            "method": "paired bootstrap, 10000 resamples (seed 0), percentile interval", "mcnemar_p": 0.01,
            "challenger_only_correct": 10, "champion_only_correct": 30,
        }  # fmt: skip
    put_evaluation(evaluation, name)


def with_champion(event: dict[str, Any], package_arn: str | None, problem: str | None = None) -> dict[str, Any]:
    """The event as StartTraining leaves it when a model serves."""
    champion = {"endpoint_config": "dogs-1", "model_package_arn": package_arn, "model_data_url": "s3://x",
                "problem": problem}  # fmt: skip
    return event | {"training": event["training"] | {"champion": champion}}


def serving(config: str) -> None:
    """The endpoint InService on ``config``."""
    client = sagemaker()
    client.create_model(ModelName=config, PrimaryContainer={"Image": INFERENCE_IMAGE}, ExecutionRoleArn=ROLE_ARN)
    client.create_endpoint_config(
        EndpointConfigName=config,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": config, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
    )
    if any(e["EndpointName"] == ENDPOINT for e in client.list_endpoints()["Endpoints"]):
        client.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName=config)
    else:
        client.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=config)


def run_evaluate(event: dict[str, Any], lambda_context: Any) -> dict[str, Any]:
    return evaluate_model.lambda_handler(copy.deepcopy(event), lambda_context)


def approve(gate: dict[str, Any], config: str, lambda_context: Any) -> dict[str, Any]:
    deployment = {"endpoint": ENDPOINT, "endpoint_config": config, "model": config, "action": "create"}
    return approve_model.lambda_handler(
        {"gate": gate, "deployment": deployment, "execution_name": "r1"}, lambda_context
    )


def package(arn: str) -> dict[str, Any]:
    return dict(sagemaker().describe_model_package(ModelPackageName=arn))


# --- EvaluateModel ------------------------------------------------------------------------------------------------


def test_first_model_passes_on_the_floor_and_is_registered_pending_with_its_story(
    sagemaker_backend: Any, pipeline_env: Path, event: dict[str, Any], lambda_context: Any
) -> None:
    # GIVEN a trained model and no endpoint, no registry group yet
    trained(sagemaker_backend, test_accuracy=0.83)

    # WHEN the gate evaluates it
    gate = run_evaluate(event, lambda_context)

    # THEN it passes with no champion, and the group was created with one PendingManualApproval version
    assert (gate["passed"], gate["champion_accuracy"], gate["champion_package_arn"]) == (True, None, None)
    assert gate["challenger_accuracy"] == 0.83
    assert (gate["floor"], gate["tolerance"], gate["model_package_group"]) == (0.6, 0.03, GROUP)
    assert (gate["comparison"], gate["served_as"], gate["top5_accuracy"]) == ("no champion", "int8", 0.97)
    registered = package(gate["model_package_arn"])
    assert registered["ModelPackageGroupName"] == GROUP
    assert registered["ModelApprovalStatus"] == "PendingManualApproval"
    # AND the package carries metrics, dataset identity, hyperparameters and rule results
    properties = registered["CustomerMetadataProperties"]
    assert properties["test_accuracy"] == "0.83"
    assert properties["validation_accuracy"] == "0.81"
    assert properties["training_job"] == JOB
    assert properties["dataset"] == "s3://dog-data/incoming/dogImages.zip"
    assert properties["dataset_version"] == "3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY"
    assert properties["dataset_etag"] == "9b2cf535f27731c974343645a3985328-12"
    assert properties["dataset_counts"] == "train=6680 valid=835 test=836"
    assert (properties["hp_batch_size"], properties["hp_learning_rate"]) == ("64", "0.0123")
    assert properties["rule_LossNotDecreasing"] == "NoIssuesFound"
    assert properties["warm_start_parent"] == "hpo-251118-020112-77aa01"
    assert properties["gate"] == "passed"
    # AND the package is deployable as the pipeline deploys it
    (container,) = registered["InferenceSpecification"]["Containers"]
    assert container["ModelDataUrl"].endswith(f"{JOB}/output/model.tar.gz")
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"


def test_below_the_floor_is_rejected_but_still_registered(
    sagemaker_backend: Any, pipeline_env: Path, event: dict[str, Any], lambda_context: Any
) -> None:
    trained(sagemaker_backend, test_accuracy=0.42)

    gate = run_evaluate(event, lambda_context)

    assert gate["passed"] is False
    assert "below the floor 0.6000" in gate["reason"]
    assert package(gate["model_package_arn"])["CustomerMetadataProperties"]["gate"] == "rejected"


def test_a_challenger_worse_on_the_same_images_is_rejected_with_the_interval(
    sagemaker_backend: Any, pipeline_env: Path, event: dict[str, Any], lambda_context: Any
) -> None:
    # GIVEN a new model scoring 0.85 where the serving one scores 0.90 on the same 836 images
    trained(sagemaker_backend, test_accuracy=0.85, champion=(0.90, (-0.071, -0.029)))
    champion_arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/dog-breed-classifier/1"

    gate = run_evaluate(with_champion(event, champion_arn), lambda_context)

    # THEN it is rejected on the paired figures, the reason gives the interval, and the registry records both
    assert (gate["passed"], gate["comparison"], gate["champion_accuracy"]) == (False, "paired", 0.9)
    assert gate["champion_package_arn"] == champion_arn
    assert "95% interval [-0.0710, -0.0290]" in gate["reason"] and "below -0.0300" in gate["reason"]
    properties = package(gate["model_package_arn"])["CustomerMetadataProperties"]
    assert properties["champion_accuracy_same_images"] == "0.9"
    assert (properties["paired_interval"], properties["paired_confidence"]) == ("-0.0710 -0.0290", "0.95")
    assert (properties["paired_images"], properties["served_as"], properties["comparison"]) == ("836", "int8", "paired")
    assert properties["champion_package"] == champion_arn


def test_the_champion_is_the_approved_package_the_endpoint_serves(
    sagemaker_backend: Any, pipeline_env: Path, event: dict[str, Any], lambda_context: Any
) -> None:
    # GIVEN an older approved model served as dogs-0 and then a newer one serving as dogs-1
    for name, config in (("train-old", "dogs-0"), ("train-first", "dogs-1")):
        trained(sagemaker_backend, name)
        gate = run_evaluate(event | {"training": event["training"] | {"job_name": name}}, lambda_context)
        serving(config)
        approve(gate, config, lambda_context)
    first = gate

    # WHEN StartTraining looks up the champion
    champion = serving_champion(SageMakerGateway(sagemaker()), boto3.client("s3", region_name=REGION), GROUP, ENDPOINT)

    # THEN it is the package serving as dogs-1, whose artifact is not in the bucket here: a problem, named
    assert champion is not None
    assert (champion["endpoint_config"], champion["model_package_arn"]) == ("dogs-1", first["model_package_arn"])
    assert champion["model_data_url"].endswith("train-first/output/model.tar.gz")
    assert (
        champion["problem"]
        == f"its artifact {champion['model_data_url']} does not exist (deleted, or moved by a lifecycle rule)"
    )


def test_champion_within_the_tolerance_lets_the_challenger_pass(
    sagemaker_backend: Any,
    pipeline_env: Path,
    event: dict[str, Any],
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHAMPION_TOLERANCE", "0.08")
    trained(sagemaker_backend, test_accuracy=0.86, champion=(0.90, (-0.071, -0.009)))

    gate = run_evaluate(
        with_champion(event, "arn:aws:sagemaker:us-east-1:123456789012:model-package/g/1"), lambda_context
    )

    assert (gate["passed"], gate["champion_accuracy"], gate["tolerance"]) == (True, 0.9, 0.08)


def test_endpoint_serving_an_unregistered_model_leaves_only_the_floor_visibly(
    sagemaker_backend: Any, pipeline_env: Path, event: dict[str, Any], lambda_context: Any
) -> None:
    # GIVEN an endpoint deployed before the registry existed (StartTraining found no package for its config)
    trained(sagemaker_backend, test_accuracy=0.61)
    problem = (
        "the endpoint dog-breed-classifier serves dogs-1, which no Approved package of dog-breed-classifier records"
    )

    gate = run_evaluate(with_champion(event, None, problem), lambda_context)

    assert (gate["passed"], gate["champion_package_arn"], gate["comparison"]) == (True, None, "champion unscored")
    assert problem in gate["reason"]


def test_no_test_accuracy_fails_the_run_before_anything_is_registered(
    sagemaker_backend: Any, pipeline_env: Path, event: dict[str, Any], lambda_context: Any
) -> None:
    trained(sagemaker_backend, test_accuracy=None)

    with pytest.raises(ModelMetricMissing, match="has no challenger accuracy"):
        run_evaluate(event, lambda_context)

    assert sagemaker().list_model_package_groups()["ModelPackageGroupSummaryList"] == []


def test_retried_evaluation_finds_the_package_its_first_attempt_registered(
    sagemaker_backend: Any, pipeline_env: Path, event: dict[str, Any], lambda_context: Any
) -> None:
    trained(sagemaker_backend)
    first = run_evaluate(event, lambda_context)

    again = run_evaluate(event, lambda_context)

    assert again["model_package_arn"] == first["model_package_arn"]
    assert len(sagemaker().list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]) == 1


def test_create_model_package_request_is_exactly_the_agreed_one(
    aws: None, settings: Settings, event: dict[str, Any], stubbed: tuple[SageMakerGateway, Stubber]
) -> None:
    # GIVEN an existing group, no endpoint, and no earlier version of this job
    gateway, stubber = stubbed
    description = {
        "TrainingJobName": JOB,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{JOB}",
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {"VolumeSizeInGB": 30},
        "StoppingCondition": {},
        "CreationTime": "2025-11-25T02:00:00Z",
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://dog-data/jobs/r/{JOB}/output/model.tar.gz"},
        "OutputDataConfig": {"S3OutputPath": "s3://dog-data/jobs/251125-015343-3f9a1c/"},
    }
    trained_alone = {"challenger": {"accuracy": 0.83, "served_as": "float32"}, "test_images": 836}
    s3 = put_evaluation(trained_alone)
    stubber.add_response("describe_training_job", description, {"TrainingJobName": JOB})
    groups = {"ModelPackageGroupSummaryList": [_group_summary()]}
    stubber.add_response("list_model_package_groups", groups, {"NameContains": GROUP, "MaxResults": 100})
    newest = {"ModelPackageGroupName": GROUP, "SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": 20}
    stubber.add_response("list_model_packages", {"ModelPackageSummaryList": []}, newest)
    stubber.add_response(
        "create_model_package",
        {"ModelPackageArn": f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{GROUP}/1"},
        {
            "ModelPackageGroupName": GROUP,
            "ModelPackageDescription": ANY,
            "InferenceSpecification": {
                "Containers": [
                    {
                        "Image": INFERENCE_IMAGE,
                        "ModelDataUrl": f"s3://dog-data/jobs/r/{JOB}/output/model.tar.gz",
                        "Environment": INFERENCE_ENVIRONMENT,
                    }
                ],
                "SupportedContentTypes": ["image/jpeg", "image/png", "application/x-image", "application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
                "SupportedRealtimeInferenceInstanceTypes": ["ml.m5.large"],
            },
            "ModelApprovalStatus": "PendingManualApproval",
            "CustomerMetadataProperties": ANY,
            # Idempotency on AWS: the retried call gets the first attempt's version.
            "ClientToken": JOB,
        },
    )

    # WHEN the gate runs
    gate = evaluate_model.evaluate_model(
        Dataset.model_validate(event["dataset"]),
        BestJob.model_validate(event["best"]),
        Training.model_validate(event["training"]),
        event["rules"],
        event["tuning"],
        settings,
        gateway,
        s3,
        "run-1",
    )

    # THEN it passed on the floor and names the new version
    assert (gate["passed"], gate["model_package_arn"]) == (
        True,
        f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{GROUP}/1",
    )


def put_evaluation(evaluation: dict[str, Any], job: str = JOB) -> Any:
    """The job's output.tar.gz holding ``evaluation`` as evaluation.json; returns the S3 client."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        data = json.dumps(evaluation).encode()
        member = tarfile.TarInfo("evaluation.json")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    s3 = boto3.client("s3", region_name=REGION)
    key = f"jobs/251125-015343-3f9a1c/{job}/output/output.tar.gz"
    s3.put_object(Bucket="dog-data", Key=key, Body=archive.getvalue())
    return s3


def _group_summary() -> dict[str, Any]:
    return {
        "ModelPackageGroupName": GROUP,
        "ModelPackageGroupArn": f"arn:aws:sagemaker:us-east-1:123456789012:model-package-group/{GROUP}",
        "CreationTime": "2025-11-18T02:00:00Z",
        "ModelPackageGroupStatus": "Completed",
    }


# --- RejectModel and ApproveModel ----------------------------------------------------------------------------------


def test_rejected_model_is_marked_rejected_and_a_distinct_notice_is_sent(
    sagemaker_backend: Any, pipeline_env: Path, event: dict[str, Any], lambda_context: Any, topic: str
) -> None:
    # GIVEN a model the gate rejected
    trained(sagemaker_backend, test_accuracy=0.42)
    gate = run_evaluate(event, lambda_context)

    # WHEN RejectModel runs
    result = reject_model.lambda_handler(
        {
            "gate": gate,
            "dataset": event["dataset"],
            "execution_name": "run-7",
            "execution_id": "arn:aws:states:us-east-1:123456789012:execution:retrain:run-7",
        },
        lambda_context,
    )

    # THEN the package is Rejected with the reason, and the notice says "Model rejected", not a failure
    rejected = package(gate["model_package_arn"])
    assert rejected["ModelApprovalStatus"] == "Rejected"
    assert gate["reason"] in rejected["ApprovalDescription"]
    assert rejected["CustomerMetadataProperties"]["test_accuracy"] == "0.42"
    assert (result["status"], result["model_package_arn"]) == ("Rejected", gate["model_package_arn"])
    ((subject, message),) = [
        (s, m) for _, m, s, *_ in sns_backends[DEFAULT_ACCOUNT_ID][REGION].topics[topic].sent_notifications
    ]
    assert subject == "Model rejected: run-7"
    assert "The pipeline worked; the endpoint keeps serving the current model." in message
    assert "New model's test accuracy: 0.4200" in message
    assert "Serving model's test accuracy: none (no model was serving)" in message
    assert "s3://dog-data/incoming/dogImages.zip (version 3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY)" in message


def test_approved_model_records_the_config_it_serves_as_and_keeps_its_metadata(
    sagemaker_backend: Any, pipeline_env: Path, event: dict[str, Any], lambda_context: Any
) -> None:
    trained(sagemaker_backend)
    gate = run_evaluate(event, lambda_context)

    result = approve(gate, "dogs-251125-015343-3f9a1c", lambda_context)

    approved = package(gate["model_package_arn"])
    assert approved["ModelApprovalStatus"] == "Approved"
    assert "dogs-251125-015343-3f9a1c" in approved["ApprovalDescription"]
    properties = approved["CustomerMetadataProperties"]
    assert (properties["endpoint_config"], properties["endpoint"]) == ("dogs-251125-015343-3f9a1c", ENDPOINT)
    assert properties["test_accuracy"] == "0.83"  # the merge keeps what EvaluateModel recorded
    assert result == {
        "model_package_arn": gate["model_package_arn"],
        "status": "Approved",
        "endpoint": ENDPOINT,
        "endpoint_config": "dogs-251125-015343-3f9a1c",
    }
