"""A fresh deployment whose pretrained weights were never staged: the run fails in StartTuning with the missing
object and the one command that stages it, before any job exists, and the failure topic says the same."""

from __future__ import annotations

import pytest
from state_machine_harness import Pipeline, assert_failed_in


@pytest.fixture
def weights_staged() -> bool:
    return False  # `make stage-weights` was never run


def test_unstaged_weights_fail_the_run_in_start_tuning_naming_the_command(
    pipeline: Pipeline, dataset_zip: bytes
) -> None:
    # WHEN a dataset is uploaded to the fresh deployment
    run = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)

    # THEN StartTuning failed it, once (not retried), with the object and the command
    assert_failed_in(run, "StartTuning")
    assert run.lambda_errors() == ["PretrainedWeightsMissing"]
    assert run.error == "PretrainedWeightsMissing"
    key = pipeline.stack.template.parameters["PretrainedWeightsKey"]
    assert run.cause_message.startswith(f"s3://{pipeline.stack.bucket}/{key} does not exist")
    assert "`make stage-weights STACK=<stack name>`" in run.cause_message
    # AND nothing was started, and the notification carries the same cause
    assert pipeline.tuning_jobs() == []
    ((subject, message),) = pipeline.notifications()
    assert subject.startswith("Retraining failed: PretrainedWeightsMissing (")
    assert f"Cause: {run.cause_message}" in message
