"""Transient errors are retried with back-off (instant here) and the run still succeeds; each state acts once."""

from __future__ import annotations

from state_machine_harness import HAPPY_PATH, Pipeline


def test_transient_lambda_and_sagemaker_errors_are_retried_to_success(pipeline: Pipeline, dataset_zip: bytes) -> None:
    # GIVEN functions whose next invocations fail as Lambda does when throttled or briefly broken, and a status
    # handler that reports SageMaker throttling once
    pipeline.inject("ValidateDatasetFunction", "Lambda.TooManyRequestsException")
    pipeline.inject("StartTuningFunction", "Lambda.ServiceException", "Lambda.TooManyRequestsException")
    pipeline.inject("TuningStatusFunction", "SageMakerThrottled")
    pipeline.inject("DeployEndpointFunction", "Lambda.AWSLambdaException")
    # WHEN a dataset is uploaded
    run = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    # THEN each failure was retried inside its state, and the run succeeded on the normal path
    assert run.status == "SUCCEEDED", run.cause
    assert run.lambda_errors() == [
        "Lambda.TooManyRequestsException",
        "Lambda.ServiceException",
        "Lambda.TooManyRequestsException",
        "SageMakerThrottled",
        "Lambda.AWSLambdaException",
    ]
    assert run.path == HAPPY_PATH
    assert run.times_entered("StartTuning") == 1
    assert run.times_entered("NotifyFailure") == 0
    # AND the retried states created their resources once
    assert len(pipeline.tuning_jobs()) == 1
    assert len(pipeline.training_jobs()) == 1
    assert pipeline.notifications() == []
    endpoint = pipeline.endpoint()
    assert endpoint is not None
    assert endpoint["EndpointStatus"] == "InService"


def test_retry_after_a_lost_response_resumes_the_training_job_instead_of_starting_it_again(
    pipeline: Pipeline, dataset_zip: bytes
) -> None:
    # GIVEN a StartTraining whose first invocation creates the job and then fails as if Lambda lost its response
    pipeline.lose_first_response("StartTrainingFunction", "Lambda.ServiceException")
    # WHEN a dataset is uploaded
    run = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    # THEN the retry recognised the job its first attempt created, and the job ran once
    assert run.status == "SUCCEEDED", run.cause
    assert run.lambda_errors() == ["Lambda.ServiceException"]
    (job,) = pipeline.training_jobs()
    assert pipeline.job_starts(job) == 1
