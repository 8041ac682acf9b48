"""TrainingStatus: done only when the job and every rule evaluation are terminal."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from botocore.stub import Stubber
from sagemaker_states_support import load_event

from pipeline import start_training, training_status
from pipeline.common.errors import PollLimitExceeded, TrainingFailed
from pipeline.common.sagemaker_gateway import SageMakerGateway
from pipeline.common.state_models import Training

JOB = "train-251125-015343-3f9a1c"
RULES = ["VanishingGradient", "Overfit", "ProfilerReport"]
FIRST_POLL = Training.model_validate({"job_name": JOB, "rules": RULES, "output_uri": "s3://dog-data/jobs/r/"})


def _after(status: dict[str, Any]) -> Training:
    return Training.model_validate(FIRST_POLL.model_dump() | {"status": status})


def _rule_status(name: str, status: str) -> dict[str, Any]:
    return {
        "RuleConfigurationName": name,
        "RuleEvaluationJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:processing-job/{JOB[:20]}-{name[:10]}",
        "RuleEvaluationStatus": status,
        "LastModifiedTime": datetime(2025, 11, 25, 3, 0),
    }


def _description(status: str, secondary: str, debugger: str, profiler: str, **extra: Any) -> dict[str, Any]:
    return {
        "TrainingJobName": JOB,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{JOB}",
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://dog-data/jobs/r/{JOB}/output/model.tar.gz"},
        "TrainingJobStatus": status,
        "SecondaryStatus": secondary,
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 14400},
        "CreationTime": datetime(2025, 11, 25, 2, 0),
        "DebugRuleEvaluationStatuses": [_rule_status("VanishingGradient", debugger), _rule_status("Overfit", debugger)],
        "ProfilerRuleEvaluationStatuses": [_rule_status("ProfilerReport", profiler)],
        **extra,
    }


def _expect(stubber: Stubber, response: dict[str, Any]) -> None:
    stubber.add_response("describe_training_job", response, {"TrainingJobName": JOB})


def test_rules_outliving_the_job_keep_the_loop_going_until_they_end(stubbed: tuple[SageMakerGateway, Stubber]) -> None:
    # GIVEN training, then a completed job whose rules still run, then everything terminal
    gateway, stubber = stubbed
    _expect(stubber, _description("InProgress", "Training", "InProgress", "InProgress"))
    _expect(stubber, _description("Completed", "Completed", "InProgress", "NoIssuesFound"))
    _expect(stubber, _description("Completed", "Completed", "NoIssuesFound", "IssuesFound"))

    first = training_status.poll_training_job(FIRST_POLL, 10, gateway)
    second = training_status.poll_training_job(_after(first), 10, gateway)
    third = training_status.poll_training_job(_after(second), 10, gateway)

    assert (first["done"], first["rules_running"], first["polls"]) == (False, True, 1)
    assert (second["status"], second["done"], second["rules_running"]) == ("Completed", False, True)
    assert (third["done"], third["rules_running"], third["polls"]) == (True, False, 3)
    assert third["rules"] == {
        "VanishingGradient": "NoIssuesFound",
        "Overfit": "NoIssuesFound",
        "ProfilerReport": "IssuesFound",
    }


def test_job_without_rules_is_done_when_completed(stubbed: tuple[SageMakerGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    description = _description("Completed", "Completed", "x", "x")
    del description["DebugRuleEvaluationStatuses"], description["ProfilerRuleEvaluationStatuses"]
    _expect(stubber, description)

    result = training_status.poll_training_job(
        Training.model_validate(FIRST_POLL.model_dump() | {"rules": []}), 10, gateway
    )

    assert (result["done"], result["rules"]) == (True, {})


@pytest.mark.parametrize("status", ["Failed", "Stopped"])
def test_failed_or_stopped_job_raises_training_failed_with_reason_and_logs(
    status: str, stubbed: tuple[SageMakerGateway, Stubber]
) -> None:
    gateway, stubber = stubbed
    reason = "AlgorithmError: CUDA out of memory"
    _expect(stubber, _description(status, status, "Stopped", "Stopped", FailureReason=reason))

    with pytest.raises(
        TrainingFailed,
        match=rf"{JOB} is {status} \({status}\): {reason}\..*/aws/sagemaker/TrainingJobs/{JOB}",
    ):
        training_status.poll_training_job(FIRST_POLL, 10, gateway)


def test_poll_bound_on_a_running_job_stops_it(stubbed: tuple[SageMakerGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    _expect(stubber, _description("InProgress", "Training", "InProgress", "InProgress"))
    stubber.add_response("stop_training_job", {}, {"TrainingJobName": JOB})

    with pytest.raises(
        PollLimitExceeded, match=rf"training job {JOB} was still running after 2 status polls; it was asked to stop"
    ):
        training_status.poll_training_job(_after({"polls": 2}), 2, gateway)


def test_poll_bound_on_lingering_rules_leaves_the_finished_job_alone(stubbed: tuple[SageMakerGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    _expect(stubber, _description("Completed", "Completed", "InProgress", "NoIssuesFound"))

    with pytest.raises(PollLimitExceeded, match=r"rule evaluations of training job .* the job itself has ended"):
        training_status.poll_training_job(_after({"polls": 2}), 2, gateway)


def test_handler_reads_moto_job_and_rule_statuses(
    sagemaker_backend: Any, pipeline_env: Any, lambda_context: Any
) -> None:
    # GIVEN a job moto reports Completed, with the rule statuses moto never fills in set by hand
    start_training.lambda_handler(load_event("start_training_best_trial"), lambda_context)
    job = sagemaker_backend.training_jobs[JOB]
    job.debug_rule_evaluation_statuses = [
        {"RuleConfigurationName": name, "RuleEvaluationStatus": "NoIssuesFound"}
        for name in ["VanishingGradient", "LossNotDecreasing", "Overfit", "Overtraining", "PoorWeightInitialization"]
    ]
    job.profiler_rule_evaluation_statuses = [
        {"RuleConfigurationName": "ProfilerReport", "RuleEvaluationStatus": "InProgress"}
    ]

    result = training_status.lambda_handler(load_event("training_status_later_poll"), lambda_context)

    assert (result["status"], result["done"], result["rules_running"], result["polls"]) == ("Completed", False, True, 2)
    assert result["rules"]["ProfilerReport"] == "InProgress"


def test_poll_bound_says_so_when_the_job_could_not_be_stopped(stubbed: tuple[SageMakerGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    _expect(stubber, _description("InProgress", "Training", "InProgress", "InProgress"))
    stubber.add_client_error("stop_training_job", "ValidationException", http_status_code=400)

    with pytest.raises(PollLimitExceeded, match=r"stopping it failed \(ValidationException\), stop it by hand"):
        training_status.poll_training_job(_after({"polls": 2}), 2, gateway)
