"""ApprovalMode manual through the real state machine: a person approves or rejects in the model registry.

The run waits in AwaitApproval (``lambda:invoke.waitForTaskToken``); a person's UpdateModelPackage makes the
registry emit ``SageMaker Model Package State Change`` (offline.moto_shims.ModelPackageEvents), which the
template's rule delivers to ResumeApproval, which answers the waiting task token.
"""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest
from state_machine_harness import ENDING, HAPPY_PATH, REGION, TEMPLATE_PARAMETERS, Pipeline

from pipeline.common.pipeline_state import APPROVAL_PREFIX

MANUAL = TEMPLATE_PARAMETERS | {"ApprovalMode": "manual", "ApprovalTimeoutHours": "0.05"}  # 3 minutes
MANUAL_SHORT = TEMPLATE_PARAMETERS | {"ApprovalMode": "manual", "ApprovalTimeoutHours": "0.001"}  # 3.6 s
WAIT = HAPPY_PATH.index("IsApprovalManual") + 1
APPROVED_PATH = [*HAPPY_PATH[:WAIT], "AwaitApproval", "IsApproved", *HAPPY_PATH[WAIT:]]
REJECTED_PATH = [*HAPPY_PATH[:WAIT], "AwaitApproval", "IsApproved", *ENDING, "ModelRejected"]
TIMED_OUT_PATH = [*HAPPY_PATH[:WAIT], "AwaitApproval", "NotifyApprovalTimeout", *ENDING, "ApprovalTimedOut"]


def start(pipeline: Pipeline, key: str, body: bytes) -> str:
    before = len(pipeline.started_executions())
    pipeline.upload(key, body)
    (arn,) = pipeline.started_executions()[before:]
    return arn


def waiting_package(pipeline: Pipeline, execution: str, seconds: float = 60) -> str:
    """The model package the execution waits on, once RequestApproval stored its token."""
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    (table,) = pipeline.stack.tables.values()
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        for item in dynamodb.scan(TableName=table)["Items"]:
            if item["pk"]["S"].startswith(APPROVAL_PREFIX) and item["execution"]["S"] == execution:
                return item["pk"]["S"].removeprefix(APPROVAL_PREFIX)
        time.sleep(0.05)
    raise AssertionError(f"{execution} never waited for approval")


def notices(pipeline: Pipeline, count: int, seconds: float = 30) -> list[tuple[str, str]]:
    """The notices, once ``count`` of them were published (RequestApproval publishes after storing the token)."""
    give_up = time.monotonic() + seconds
    while len(published := pipeline.notifications()) < count and time.monotonic() < give_up:
        time.sleep(0.05)
    return published


def decide(package: str, status: str, description: str) -> None:
    """What a person runs: aws sagemaker update-model-package --model-approval-status ..."""
    boto3.client("sagemaker", region_name=REGION).update_model_package(
        ModelPackageArn=package, ModelApprovalStatus=status, ApprovalDescription=description
    )


def registry_events(pipeline: Pipeline) -> list[dict[str, Any]]:
    """The registry's events delivered to ResumeApproval (each handled without error)."""
    arn = pipeline.stack.functions["ResumeApprovalFunction"].arn
    delivered = [d for d in pipeline.router.deliveries if d.target_arn == arn]
    assert [d.error for d in delivered if d.error] == []
    return [d.payload["detail"] for d in delivered]


def waiting_entries(pipeline: Pipeline) -> list[str]:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    (table,) = pipeline.stack.tables.values()
    return [i["pk"]["S"] for i in dynamodb.scan(TableName=table)["Items"] if i["pk"]["S"].startswith(APPROVAL_PREFIX)]


@pytest.mark.parametrize("template_parameters", [MANUAL], indirect=True)
def test_an_approved_model_is_deployed_and_the_approval_recorded(pipeline: Pipeline, dataset_zip: bytes) -> None:
    # GIVEN a run waiting for approval, and its notice telling how to approve
    execution = start(pipeline, "incoming/dogImages.zip", dataset_zip)
    package = waiting_package(pipeline, execution)
    ((subject, message),) = notices(pipeline, 1)
    assert subject.startswith("Model awaits approval: ")
    assert f"aws sagemaker update-model-package --model-package-arn {package} --model-approval-status Approved" in (
        message
    )
    assert pipeline.endpoint() is None  # nothing deployed while it waits
    # WHEN a person approves it in the registry
    decide(package, "Approved", "checked the confusions, ship it")
    run = pipeline.finish(execution)
    # THEN the run deployed it, and the decision is in the run and in the registry
    assert run.status == "SUCCEEDED", run.cause
    assert run.path == APPROVED_PATH
    assert run.output is not None
    decision = run.output["approval_decision"]
    assert (decision["status"], decision["description"]) == ("Approved", "checked the confusions, ship it")
    assert decision["approved_by"]
    endpoint = pipeline.endpoint()
    assert endpoint is not None and endpoint["EndpointConfigName"] == run.output["deployment"]["endpoint_config"]
    registered = boto3.client("sagemaker", region_name=REGION).describe_model_package(ModelPackageName=package)
    assert registered["ModelApprovalStatus"] == "Approved"
    assert "checked the confusions, ship it" in registered["ApprovalDescription"]  # the person's words kept
    assert registered["CustomerMetadataProperties"]["endpoint_config"] == endpoint["EndpointConfigName"]
    assert registered["CustomerMetadataProperties"]["test_accuracy"] == "0.9"  # the gate's metadata kept
    # AND the registry's events (the person's, then ApproveModel's own) reached ResumeApproval; none waits now
    assert [e["ModelApprovalStatus"] for e in registry_events(pipeline)] == ["Approved", "Approved"]
    assert waiting_entries(pipeline) == []


@pytest.mark.parametrize("template_parameters", [MANUAL], indirect=True)
def test_a_rejected_model_ends_model_rejected_with_the_approvers_words(pipeline: Pipeline, dataset_zip: bytes) -> None:
    execution = start(pipeline, "incoming/dogImages.zip", dataset_zip)
    package = waiting_package(pipeline, execution)

    decide(package, "Rejected", "Akita and Shiba confused too often")
    run = pipeline.finish(execution)

    assert run.status == "SUCCEEDED", run.cause
    assert run.path == REJECTED_PATH
    assert run.output is not None
    assert run.output["approval_decision"]["description"] == "Akita and Shiba confused too often"
    assert pipeline.endpoint() is None
    registered = boto3.client("sagemaker", region_name=REGION).describe_model_package(ModelPackageName=package)
    assert registered["ModelApprovalStatus"] == "Rejected"


@pytest.mark.parametrize("template_parameters", [MANUAL_SHORT], indirect=True)
def test_nobody_deciding_in_time_ends_approval_timed_out_and_frees_the_pipeline(
    pipeline: Pipeline, dataset_zip: bytes, two_class_zip: bytes
) -> None:
    # GIVEN a run nobody approves within ApprovalTimeoutHours
    execution = start(pipeline, "incoming/dogImages.zip", dataset_zip)
    package = waiting_package(pipeline, execution)
    run = pipeline.finish(execution)
    # THEN it ends in its own terminal state, the package still pending, the endpoint untouched, people told
    assert run.status == "SUCCEEDED", run.cause
    assert run.path == TIMED_OUT_PATH
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    assert sagemaker.describe_model_package(ModelPackageName=package)["ModelApprovalStatus"] == "PendingManualApproval"
    assert pipeline.endpoint() is None
    subjects = [subject for subject, _ in pipeline.notifications()]
    assert subjects[-1].startswith("Approval timed out: ")
    # AND an approval arriving now changes the registry only
    assert waiting_entries(pipeline) == []
    decide(package, "Approved", "sorry, I was away")
    assert registry_events(pipeline)[-1]["ModelApprovalStatus"] == "Approved"
    assert pipeline.endpoint() is None
    # AND the lease is free: the next upload runs instead of queueing
    following = start(pipeline, "incoming/other.zip", two_class_zip)
    assert pipeline.finish(following).path[2:4] == ["IsPipelineFree", "ValidateDataset"]


@pytest.mark.parametrize("template_parameters", [MANUAL], indirect=True)
def test_duplicate_approval_events_deploy_once(pipeline: Pipeline, dataset_zip: bytes) -> None:
    execution = start(pipeline, "incoming/dogImages.zip", dataset_zip)
    package = waiting_package(pipeline, execution)

    decide(package, "Approved", "yes")
    decide(package, "Approved", "yes, again")  # a second click, or EventBridge delivering twice
    run = pipeline.finish(execution)

    assert run.status == "SUCCEEDED", run.cause
    assert run.times_entered("DeployEndpoint") == 1
    assert len(pipeline.endpoint_configs()) == 1
    assert run.output is not None and run.output["approval_decision"]["description"] in ("yes", "yes, again")
    assert len(registry_events(pipeline)) == 3  # both clicks and ApproveModel's own update, all handled


@pytest.mark.parametrize("template_parameters", [MANUAL], indirect=True)
def test_an_upload_during_the_wait_is_queued_and_runs_after(pipeline: Pipeline, dataset_zip: bytes) -> None:
    # GIVEN a run waiting for approval, holding the lease
    execution = start(pipeline, "incoming/dogImages.zip", dataset_zip)
    package = waiting_package(pipeline, execution)
    # WHEN a new dataset arrives meanwhile
    queued = pipeline.upload_and_run("incoming/newer.zip", dataset_zip)
    # THEN it is queued behind the waiting run
    assert queued.path[-1] == "QueuedBehindRunningRun"
    # AND once the waiting run is approved and ends, the queued trigger runs (and waits for its own approval)
    decide(package, "Approved", "ok")
    assert pipeline.finish(execution).status == "SUCCEEDED"
    (follow_up,) = [arn for arn in pipeline.all_executions() if arn not in (execution, queued.arn)]
    decide(waiting_package(pipeline, follow_up), "Rejected", "not this one")
    assert pipeline.finish(follow_up).path[-1] == "ModelRejected"
