"""The champion/challenger gate and the model registry, through the real state machine.

The fake training code prints ``test_accuracy=<behaviour.json's test_accuracy>``; ``score`` sets it for the next
run (StartTuning bundles the folder again each run, so the change takes effect).
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from state_machine_harness import ENDING, HAPPY_PATH, REGION, FakeTrainingCode, Pipeline

GROUP = "dog-breed-classifier"  # the template's ModelPackageGroupName default
REJECTED_PATH = [*HAPPY_PATH[: HAPPY_PATH.index("IsModelGoodEnough") + 1], "RejectModel", *ENDING, "ModelRejected"]


def score(code: FakeTrainingCode, test_accuracy: float) -> None:
    code.write()
    path = code.folder / "behaviour.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"test_accuracy": test_accuracy}))


def packages() -> list[dict[str, Any]]:
    """Every version of the group, oldest first, described."""
    sm = boto3.client("sagemaker", region_name=REGION)
    listed = sm.list_model_packages(ModelPackageGroupName=GROUP, SortBy="CreationTime", SortOrder="Ascending")
    return [sm.describe_model_package(ModelPackageName=p["ModelPackageArn"]) for p in listed["ModelPackageSummaryList"]]


def test_worse_model_is_rejected_the_endpoint_untouched_and_people_told(pipeline: Pipeline, dataset_zip: bytes) -> None:
    # GIVEN a first run whose model (test accuracy 0.90) serves and is Approved in the registry
    score(pipeline.code, 0.90)
    first = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    assert first.status == "SUCCEEDED", first.cause
    assert first.output is not None
    serving_config = first.output["deployment"]["endpoint_config"]
    assert first.output["gate"]["champion_accuracy"] is None  # nothing served before the first run

    # WHEN a new upload trains a model more than the tolerance (0.01) worse
    score(pipeline.code, 0.80)
    second = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)

    # THEN the run succeeded (the system worked) in its own terminal state, through RejectModel, deploying nothing
    assert second.status == "SUCCEEDED", second.cause
    assert second.path == REJECTED_PATH
    assert second.output is not None
    gate = second.output["gate"]
    assert (gate["passed"], gate["challenger_accuracy"], gate["champion_accuracy"]) == (False, 0.8, 0.9)
    assert gate["champion_package_arn"] == first.output["gate"]["model_package_arn"]
    assert "deployment" not in second.output
    # AND the endpoint still serves the first run's config
    endpoint = pipeline.endpoint()
    assert endpoint is not None
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == ("InService", serving_config)
    assert pipeline.ask_endpoint()["model"] == first.output["training"]["job_name"]
    # AND the registry holds both models: the first Approved as deployed, the second Rejected with the reason
    champion, challenger = packages()
    assert champion["ModelApprovalStatus"] == "Approved"
    assert champion["CustomerMetadataProperties"]["endpoint_config"] == serving_config
    assert challenger["ModelApprovalStatus"] == "Rejected"
    assert challenger["ModelPackageArn"] == gate["model_package_arn"]
    assert gate["reason"] in challenger["ApprovalDescription"]
    assert challenger["CustomerMetadataProperties"]["training_job"] == second.output["training"]["job_name"]
    # AND the one notice is a "Model rejected", not a failure
    ((subject, message),) = pipeline.notifications()
    assert subject.startswith("Model rejected: ")
    assert "Retraining failed" not in subject
    assert "New model's test accuracy: 0.8000" in message
    assert "Serving model's test accuracy: 0.9000 on the same 400 test images" in message
    # AND the decision was made on the same images, and the cause says by how much, with the interval
    assert gate["comparison"] == "paired" and gate["paired"]["images"] == 400
    assert gate["paired"]["difference"] == pytest.approx(-0.10)
    low, high = gate["paired"]["interval"]
    assert f"interval [{low:+.4f}, {high:+.4f}]" in gate["reason"] and "ChampionTolerance" in gate["reason"]
    # AND the job scored the champion StartTraining named: the first run's model, given as the champion channel
    champion = second.output["training"]["champion"]
    assert champion["model_package_arn"] == first.output["gate"]["model_package_arn"] and champion["problem"] is None
    assert champion_channel(second.output["training"]["job_name"]) == champion["model_data_url"]
    properties = challenger["CustomerMetadataProperties"]
    assert (properties["champion_accuracy_same_images"], properties["paired_images"]) == ("0.9", "400")
    assert properties["comparison"] == "paired"
    # (all within the API's 50 entries, with room for the two ApproveModel adds)
    assert len(properties) <= 48 and "rule_LossNotDecreasing" in properties
    # AND the run's report, next to its record, shows the decision with the paired figures
    report_uri = second.output["report"]["uri"]
    assert report_uri == second.output["record"]["uri"].removesuffix(".json") + ".html"
    bucket, _, key = report_uri.removeprefix("s3://").partition("/")
    page = boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert "400" in page and f"{low * 100:+.2f}" in page
    assert report_uri in message  # the notice links to it


def champion_channel(job_name: str) -> str | None:
    sm = boto3.client("sagemaker", region_name=REGION)
    channels = sm.describe_training_job(TrainingJobName=job_name)["InputDataConfig"]
    return next((c["DataSource"]["S3DataSource"]["S3Uri"] for c in channels if c["ChannelName"] == "champion"), None)


def test_a_champion_whose_artifact_is_gone_leaves_only_the_floor_and_says_so(
    pipeline: Pipeline, dataset_zip: bytes
) -> None:
    # GIVEN a serving model whose model.tar.gz was deleted from S3 after it was deployed
    score(pipeline.code, 0.90)
    first = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    assert first.status == "SUCCEEDED", first.cause
    (served,) = packages()
    artifact = served["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    bucket, _, key = artifact.removeprefix("s3://").partition("/")
    boto3.client("s3", region_name=REGION).delete_object(Bucket=bucket, Key=key)

    # WHEN a worse model (but above the floor) is trained
    score(pipeline.code, 0.70)
    second = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)

    # THEN the job ran without the champion channel, and the gate applied only the floor, visibly
    assert second.status == "SUCCEEDED", second.cause
    assert second.path == HAPPY_PATH
    assert second.output is not None
    champion = second.output["training"]["champion"]
    assert champion["model_package_arn"] == served["ModelPackageArn"]
    assert champion["problem"] == f"its artifact {artifact} does not exist (deleted, or moved by a lifecycle rule)"
    assert champion_channel(second.output["training"]["job_name"]) is None
    gate = second.output["gate"]
    assert (gate["passed"], gate["comparison"], gate["champion_accuracy"]) == (True, "champion unscored", None)
    assert "could not be scored on the same images" in gate["reason"] and champion["problem"] in gate["reason"]


def test_a_champion_the_job_cannot_score_leaves_only_the_floor_and_says_why(
    pipeline: Pipeline, dataset_zip: bytes
) -> None:
    score(pipeline.code, 0.90)
    first = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    assert first.status == "SUCCEEDED", first.cause

    score(pipeline.code, 0.70)
    behaviour = pipeline.code.folder / "behaviour.json"
    error = "ValueError: model.pth does not fit a ResNet18 with 133 classes"
    behaviour.write_text(json.dumps(json.loads(behaviour.read_text()) | {"champion_error": error}))
    second = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)

    assert second.status == "SUCCEEDED", second.cause
    assert second.output is not None
    gate = second.output["gate"]
    assert (gate["passed"], gate["comparison"]) == (True, "champion unscored")
    assert error in gate["reason"]


def test_better_model_replaces_the_champion_and_is_approved(pipeline: Pipeline, dataset_zip: bytes) -> None:
    score(pipeline.code, 0.80)
    first = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    assert first.status == "SUCCEEDED", first.cause

    score(pipeline.code, 0.95)
    second = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)

    assert second.status == "SUCCEEDED", second.cause
    assert second.path == HAPPY_PATH
    assert second.output is not None
    gate, deployment = second.output["gate"], second.output["deployment"]
    assert (gate["passed"], gate["challenger_accuracy"], gate["champion_accuracy"]) == (True, 0.95, 0.8)
    assert gate["comparison"] == "paired" and gate["paired"]["interval"][0] > 0
    assert deployment["action"] == "update"
    endpoint = pipeline.endpoint()
    assert endpoint is not None
    assert endpoint["EndpointConfigName"] == deployment["endpoint_config"]
    assert second.output["approval"] == {
        "model_package_arn": gate["model_package_arn"],
        "status": "Approved",
        "endpoint": pipeline.endpoint_name,
        "endpoint_config": deployment["endpoint_config"],
    }
    # AND both versions are Approved, each with the config it served as; the newest one is the next champion
    old, new = packages()
    assert [p["ModelApprovalStatus"] for p in (old, new)] == ["Approved", "Approved"]
    assert old["CustomerMetadataProperties"]["endpoint_config"] == first.output["deployment"]["endpoint_config"]
    assert new["CustomerMetadataProperties"]["endpoint_config"] == deployment["endpoint_config"]
    assert new["CustomerMetadataProperties"]["test_accuracy"] == "0.95"
    assert pipeline.notifications() == []


def test_first_model_below_the_floor_creates_no_endpoint(pipeline: Pipeline, dataset_zip: bytes) -> None:
    score(pipeline.code, 0.40)

    run = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)

    assert run.status == "SUCCEEDED", run.cause
    assert run.path == REJECTED_PATH
    assert run.output is not None
    assert "below the floor 0.6000" in run.output["gate"]["reason"]
    assert run.output["gate"]["comparison"] == "no champion" and run.output["training"]["champion"] is None
    assert pipeline.endpoint() is None
    assert pipeline.endpoint_configs() == []
    ((package,),) = [packages()]
    assert package["ModelApprovalStatus"] == "Rejected"
    (subject, _), *_ = pipeline.notifications()
    assert subject.startswith("Model rejected: ")
