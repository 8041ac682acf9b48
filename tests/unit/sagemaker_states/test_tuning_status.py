"""TuningStatus: scripted status sequences, failures with their reason, and the poll bound."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from botocore.stub import Stubber
from sagemaker_states_support import load_event

from pipeline import start_tuning, tuning_status
from pipeline.common.errors import PollLimitExceeded, TuningFailed
from pipeline.common.sagemaker_gateway import SageMakerGateway
from pipeline.common.state_models import Tuning

JOB = "hpo-251125-015343-3f9a1c"
FIRST_POLL = Tuning.model_validate({"job_name": JOB, "code_uri": "s3://dog-data/code/x/sourcedir.tar.gz"})


def _after(status: dict[str, Any]) -> Tuning:
    """The tuning state as the next poll sees it: the state machine wrote ``status`` into $.tuning.status."""
    return Tuning.model_validate(FIRST_POLL.model_dump() | {"status": status})


def _description(status: str, completed: int, in_progress: int, **extra: Any) -> dict[str, Any]:
    return {
        "HyperParameterTuningJobName": JOB,
        "HyperParameterTuningJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/{JOB}",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 5, "MaxParallelTrainingJobs": 2},
        },
        "HyperParameterTuningJobStatus": status,
        "CreationTime": datetime(2025, 11, 25, 1, 54),
        "TrainingJobStatusCounters": {
            "Completed": completed,
            "InProgress": in_progress,
            "RetryableError": 0,
            "NonRetryableError": 1,
            "Stopped": 1,
        },
        "ObjectiveStatusCounters": {"Succeeded": completed, "Pending": in_progress, "Failed": 1},
        **extra,
    }


BEST = {
    "BestTrainingJob": {
        "TrainingJobName": f"{JOB}-002-abc",
        "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/x",
        "CreationTime": datetime(2025, 11, 25, 1, 55),
        "TrainingJobStatus": "Completed",
        "TunedHyperParameters": {"batch_size": '"64"', "learning_rate": "0.01"},
        "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "validation:accuracy", "Value": 0.8},
    }
}


def _expect_describe(stubber: Stubber, response: dict[str, Any]) -> None:
    stubber.add_response("describe_hyper_parameter_tuning_job", response, {"HyperParameterTuningJobName": JOB})


def test_in_progress_then_completed_counts_polls_and_reports_trials(stubbed: tuple[SageMakerGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    _expect_describe(stubber, _description("InProgress", 0, 2))
    _expect_describe(stubber, _description("Completed", 3, 0, **BEST))

    first = tuning_status.poll_tuning_job(FIRST_POLL, 10, gateway)
    # The state machine writes the result to $.tuning.status, which the next poll reads back.
    second = tuning_status.poll_tuning_job(_after(first), 10, gateway)

    assert (first["done"], first["polls"], first["status"]) == (False, 1, "InProgress")
    assert "best_so_far" not in first
    assert (second["done"], second["polls"]) == (True, 2)
    assert second["trials"] == {"completed": 3, "in_progress": 0, "failed": 1, "stopped": 1}
    assert second["best_so_far"] == {
        "training_job_name": f"{JOB}-002-abc",
        "metric": "validation:accuracy",
        "value": 0.8,
    }


@pytest.mark.parametrize("status", ["Failed", "Stopped"])
def test_failed_or_stopped_job_raises_tuning_failed_with_the_reason(
    status: str, stubbed: tuple[SageMakerGateway, Stubber]
) -> None:
    gateway, stubber = stubbed
    _expect_describe(
        stubber, _description(status, 0, 0, FailureReason="All training jobs failed: ResourceLimitExceeded")
    )

    with pytest.raises(TuningFailed, match=rf"{JOB} is {status}: All training jobs failed: ResourceLimitExceeded"):
        tuning_status.poll_tuning_job(FIRST_POLL, 10, gateway)


def test_poll_bound_stops_the_job_and_says_what_to_change(stubbed: tuple[SageMakerGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    _expect_describe(stubber, _description("InProgress", 1, 2))
    stubber.add_response("stop_hyper_parameter_tuning_job", {}, {"HyperParameterTuningJobName": JOB})
    at_the_bound = _after({"polls": 3})

    with pytest.raises(PollLimitExceeded, match=r"after 3 status polls; it was asked to stop\. Raise MAX_POLLS"):
        tuning_status.poll_tuning_job(at_the_bound, 3, gateway)


def test_poll_at_the_bound_that_finds_the_job_completed_still_succeeds(
    stubbed: tuple[SageMakerGateway, Stubber],
) -> None:
    gateway, stubber = stubbed
    _expect_describe(stubber, _description("Completed", 5, 0))

    result = tuning_status.poll_tuning_job(_after({"polls": 3}), 3, gateway)

    assert result["done"] is True


def test_handler_reads_the_tuning_job_from_moto(sagemaker_backend: Any, pipeline_env: Any, lambda_context: Any) -> None:
    # GIVEN a tuning job in moto, still running
    start = load_event("start_tuning_validated_dataset")
    start_tuning.lambda_handler(start, lambda_context)
    sagemaker_backend.hyper_parameter_tuning_jobs[JOB].hyper_parameter_tuning_job_status = "InProgress"
    event = load_event("tuning_status_later_poll")

    # WHEN polled on the third round
    result = tuning_status.lambda_handler(event, lambda_context)

    # THEN it is not done and the count continues from the state
    assert (result["status"], result["done"], result["polls"]) == ("InProgress", False, 3)


def test_handler_raises_tuning_failed_for_a_failed_job_in_moto(
    sagemaker_backend: Any, pipeline_env: Any, lambda_context: Any
) -> None:
    start_tuning.lambda_handler(load_event("start_tuning_validated_dataset"), lambda_context)
    job = sagemaker_backend.hyper_parameter_tuning_jobs[JOB]
    job.hyper_parameter_tuning_job_status = "Failed"
    job.failure_reason = "No training job succeeded"

    with pytest.raises(TuningFailed, match="is Failed: No training job succeeded"):
        tuning_status.lambda_handler(load_event("tuning_status_later_poll"), lambda_context)


def test_poll_bound_says_so_when_the_job_could_not_be_stopped(stubbed: tuple[SageMakerGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    _expect_describe(stubber, _description("InProgress", 1, 2))
    stubber.add_client_error("stop_hyper_parameter_tuning_job", "ValidationException", http_status_code=400)

    with pytest.raises(PollLimitExceeded, match=r"stopping it failed \(ValidationException\), stop it by hand"):
        tuning_status.poll_tuning_job(_after({"polls": 3}), 3, gateway)
