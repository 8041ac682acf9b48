"""Failed runs of the real state machine: each failure ends in NotifyFailure → RunFailed with its own Error.

Every test checks the four things an operator relies on: the execution's Error and Cause, the states entered,
the message on the failure topic, and that the endpoint was not created.
"""

from __future__ import annotations

import boto3
import pytest
from state_machine_harness import REGION, TEMPLATE_PARAMETERS, WITH_RULE_CONTAINERS, Pipeline, Run, assert_failed_in


def assert_failed_and_notified(pipeline: Pipeline, run: Run, error: str, *cause_parts: str) -> None:
    assert run.status == "FAILED"
    assert run.error == error, run.cause
    for part in cause_parts:
        assert part in run.cause_message, run.cause_message
    assert run.times_entered("NotifyFailure") == 1
    assert run.state_output("NotifyFailure")["notification"]["message_id"]
    ((subject, message),) = pipeline.notifications()
    assert subject.startswith(f"Retraining failed: {error} (")
    assert f"Error: {error}" in message
    assert f"Cause: {run.cause_message}" in message
    assert run.arn.rsplit(":", 1)[-1] in subject
    # No Model or EndpointConfig was made, and no endpoint
    assert pipeline.endpoint() is None
    assert pipeline.endpoint_configs() == []


def test_invalid_dataset_fails_in_validate_dataset_without_tuning(pipeline: Pipeline, two_class_zip: bytes) -> None:
    # GIVEN a zip with two breed folders per split where the template expects three
    # WHEN it is uploaded
    run = pipeline.upload_and_run("incoming/dogImages.zip", two_class_zip)
    # THEN ValidateDataset rejected it, once (a validation failure is not retried), and nothing else ran
    assert_failed_in(run, "ValidateDataset")
    assert run.lambda_errors() == ["DatasetInvalid"]
    assert_failed_and_notified(
        pipeline,
        run,
        "DatasetInvalid",
        "incoming/dogImages.zip is not a valid dataset",
        "train/ has 2 class folders, expected 3",
    )
    # AND no tuning job was created, and the notification names the dataset
    assert pipeline.tuning_jobs() == []
    ((_, message),) = pipeline.notifications()
    assert f"Dataset: s3://{pipeline.stack.bucket}/incoming/dogImages.zip" in message


@pytest.mark.parametrize(
    "template_parameters", [TEMPLATE_PARAMETERS | {"MaxTuningJobs": "2"}], ids=["two-trials"], indirect=True
)
def test_tuning_whose_every_trial_fails_ends_in_tuning_failed(pipeline: Pipeline, dataset_zip: bytes) -> None:
    # GIVEN training code whose tuning script crashes in every trial
    pipeline.code.behave(tuning="fail")
    # WHEN a dataset is uploaded
    run = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    # THEN the tuning poll saw the job Failed, with the first trial's error in the Cause
    assert_failed_in(run, "GetTuningStatus")
    assert_failed_and_notified(
        pipeline, run, "TuningFailed", "is Failed", "All training jobs failed", "trial crashed before its first epoch"
    )
    assert "'failed': 2" in run.cause_message
    # AND no final training job was started
    assert pipeline.training_jobs() == []


@pytest.mark.parametrize(
    "template_parameters", [TEMPLATE_PARAMETERS | {"MaxTuningJobs": "2"}], ids=["two-trials"], indirect=True
)
def test_trials_without_the_objective_metric_end_in_no_training_job_with_metric(
    pipeline: Pipeline, dataset_zip: bytes
) -> None:
    # GIVEN a tuning script that trains but never prints valid_accuracy=
    pipeline.code.behave(tuning="no_metric")
    # WHEN a dataset is uploaded
    run = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    # THEN PickBestJob found no trial with the objective and said what to check
    assert_failed_in(run, "PickBestJob")
    assert_failed_and_notified(
        pipeline, run, "NoTrainingJobWithMetric", "none of the 2 training jobs", "valid_accuracy="
    )
    assert pipeline.training_jobs() == []


def test_failing_training_script_ends_in_training_failed_with_its_error(pipeline: Pipeline, dataset_zip: bytes) -> None:
    # GIVEN a final training script that exits 3 with a ValueError on stderr
    pipeline.code.behave(training="fail")
    # WHEN a dataset is uploaded
    run = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    # THEN the training poll failed the run with the script's own error in the Cause
    assert_failed_in(run, "GetTrainingStatus")
    (job,) = pipeline.training_jobs()
    assert_failed_and_notified(
        pipeline,
        run,
        "TrainingFailed",
        f"training job {job} is Failed",
        "ExitCode 3",
        "ValueError: valid/ holds no images for class 002.Afghan_hound",
    )
    # AND the notification says which jobs had run
    ((_, message),) = pipeline.notifications()
    assert f"Training job: {job}" in message
    assert "Tuning job: hpo-" in message


@pytest.mark.parametrize("template_parameters", [WITH_RULE_CONTAINERS], ids=["rule-containers"], indirect=True)
def test_blocking_rule_with_issues_ends_in_rule_issues_found_naming_it(pipeline: Pipeline, dataset_zip: bytes) -> None:
    # GIVEN SageMaker's Debugger rules whose LossNotDecreasing finds issues (a blocking rule in the template's default)
    pipeline.rules.issues["LossNotDecreasing"] = "loss did not decrease over the last 3 steps"
    # WHEN a dataset is uploaded
    run = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    # THEN the training completed, but the gate failed the run and named the rule and its details
    assert_failed_in(run, "CheckRules")
    assert run.state_output("GetTrainingStatus")["training"]["status"]["rules"]["LossNotDecreasing"] == "IssuesFound"
    assert_failed_and_notified(
        pipeline, run, "RuleIssuesFound", "LossNotDecreasing IssuesFound (loss did not decrease over the last 3 steps)"
    )
    assert "VanishingGradient" not in run.cause_message


@pytest.mark.parametrize("template_parameters", [WITH_RULE_CONTAINERS], ids=["rule-containers"], indirect=True)
def test_rule_evaluation_error_ends_in_rule_evaluation_failed(pipeline: Pipeline, dataset_zip: bytes) -> None:
    # GIVEN SageMaker's rule evaluation that cannot read the Debugger trial
    pipeline.rules.error = RuntimeError("smdebug found no steps in the trial")
    # WHEN a dataset is uploaded
    run = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    # THEN every Debugger rule ended in Error and the gate failed the run as unchecked, not as issues found
    assert_failed_in(run, "CheckRules")
    statuses = run.state_output("GetTrainingStatus")["training"]["status"]["rules"]
    assert statuses["VanishingGradient"] == "Error"
    assert statuses["ProfilerReport"] == "Error"  # the fake training records no profiler samples: not a pass
    assert_failed_and_notified(
        pipeline, run, "RuleEvaluationFailed", "could not be evaluated", "smdebug found no steps in the trial"
    )


# EndpointStatus counts rollbacks and polls, not other deployment failures, so Powertools finds no metric to flush.
@pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
def test_first_model_failing_its_health_check_ends_in_deployment_failed(pipeline: Pipeline, dataset_zip: bytes) -> None:
    # GIVEN no endpoint yet, and training code that packages a model whose every prediction fails
    pipeline.code.behave(model="broken")
    # WHEN a dataset is uploaded
    run = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    # THEN the endpoint creation failed its health check and the run failed with the endpoint's reason
    assert run.status == "FAILED"
    assert run.error == "DeploymentFailed", run.cause
    assert_failed_in(run, "GetEndpointStatus")
    endpoint = pipeline.endpoint()
    assert endpoint is not None
    assert endpoint["EndpointStatus"] == "Failed"
    assert f"endpoint {pipeline.endpoint_name} is Failed while deploying" in run.cause_message
    assert "weights produce NaN for every input" in run.cause_message
    assert run.times_entered("NotifyFailure") == 1
    ((subject, _),) = pipeline.notifications()
    assert subject.startswith("Retraining failed: DeploymentFailed (")


@pytest.mark.parametrize(
    "template_parameters", [TEMPLATE_PARAMETERS | {"MaxPolls": "12"}], ids=["12-polls"], indirect=True
)
def test_training_outlasting_the_poll_budget_is_stopped_and_ends_in_poll_limit_exceeded(
    pipeline: Pipeline, dataset_zip: bytes
) -> None:
    # GIVEN a template allowing 12 status polls per loop (tuning needs fewer), and a final training job that hangs
    pipeline.code.behave(training="hang")
    # WHEN a dataset is uploaded
    run = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    # THEN the 13th training poll gave up, asked SageMaker to stop the job, and said so
    assert_failed_and_notified(
        pipeline, run, "PollLimitExceeded", "was still running after 12 status polls", "it was asked to stop"
    )
    assert_failed_in(run, "GetTrainingStatus")
    assert run.times_entered("GetTrainingStatus") == 13
    (job,) = pipeline.training_jobs()
    description = boto3.client("sagemaker", region_name=REGION).describe_training_job(TrainingJobName=job)
    assert description["TrainingJobStatus"] == "Stopped"
