"""PickBestJob: every page of trials, sorted by us, trials without the metric left out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from botocore.stub import Stubber
from sagemaker_states_support import load_event

from pipeline import pick_best_job, start_tuning
from pipeline.common.errors import NoTrainingJobWithMetric, TuningFailed
from pipeline.common.sagemaker_gateway import SageMakerGateway
from pipeline.common.state_models import Tuning

JOB = "hpo-251125-015343-3f9a1c"
TUNING = Tuning.model_validate({"job_name": JOB, "code_uri": "s3://dog-data/code/x/sourcedir.tar.gz"})


def _trial(number: int, accuracy: float | None, batch_size: str = '"64"', status: str = "Completed") -> dict[str, Any]:
    summary: dict[str, Any] = {
        "TrainingJobName": f"{JOB[:20]}-{number:03d}-abcd1234",
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/t-{number}",
        "CreationTime": datetime(2025, 11, 25, 2, number % 60),
        "TrainingJobStatus": status,
        "TunedHyperParameters": {"batch_size": batch_size, "learning_rate": f"{0.001 * (number + 1):.4f}"},
    }
    if accuracy is not None:
        summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
            "Type": "Maximize",
            "MetricName": "validation:accuracy",
            "Value": accuracy,
        }
    return summary


def test_best_trial_across_pages_wins_and_its_values_are_decoded(stubbed: tuple[SageMakerGateway, Stubber]) -> None:
    # GIVEN two pages, the best trial on the second, and a trial that never reported the metric
    gateway, stubber = stubbed
    stubber.add_response(
        "list_training_jobs_for_hyper_parameter_tuning_job",
        {"TrainingJobSummaries": [_trial(1, 0.61), _trial(2, None)], "NextToken": "page-2"},
        {"HyperParameterTuningJobName": JOB, "MaxResults": 100},
    )
    stubber.add_response(
        "list_training_jobs_for_hyper_parameter_tuning_job",
        {"TrainingJobSummaries": [_trial(3, 0.83, batch_size='"128"'), _trial(4, 0.99, status="Failed")]},
        {"HyperParameterTuningJobName": JOB, "MaxResults": 100, "NextToken": "page-2"},
    )

    # WHEN the best is picked
    best = pick_best_job.pick_best_job(TUNING, gateway)

    # THEN the failed trial's number does not count, and the tuned values are typed
    assert best == {
        "training_job_name": _trial(3, 0.83)["TrainingJobName"],
        "objective": {"name": "validation:accuracy", "value": 0.83},
        "hyperparameters": {"batch_size": 128, "learning_rate": 0.004},
    }


def test_ties_go_to_the_first_name_so_reruns_agree() -> None:
    assert pick_best_job.best_summary([_trial(7, 0.8), _trial(5, 0.8)])["TrainingJobName"].endswith("-005-abcd1234")  # type: ignore[index]


def test_minimize_objectives_pick_the_lowest() -> None:
    low, high = _trial(1, 0.2), _trial(2, 0.9)
    for trial in (low, high):
        trial["FinalHyperParameterTuningJobObjectiveMetric"]["Type"] = "Minimize"

    assert pick_best_job.best_summary([high, low]) is low


def test_no_trial_with_the_metric_fails_with_what_to_check(stubbed: tuple[SageMakerGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_response(
        "list_training_jobs_for_hyper_parameter_tuning_job",
        {"TrainingJobSummaries": [_trial(1, None, status="Failed"), _trial(2, None, status="Stopped")]},
        {"HyperParameterTuningJobName": JOB, "MaxResults": 100},
    )

    with pytest.raises(NoTrainingJobWithMetric, match=r"none of the 2 .*\['Failed', 'Stopped'\].*valid_accuracy="):
        pick_best_job.pick_best_job(TUNING, gateway)


def test_best_trial_without_a_tuned_value_is_a_tuning_failure() -> None:
    trial = _trial(1, 0.7)
    del trial["TunedHyperParameters"]["learning_rate"]

    with pytest.raises(TuningFailed, match=r"no tuned value for \['learning_rate'\]"):
        pick_best_job.tuned_hyperparameters(trial)


def test_handler_pages_through_moto_trials(sagemaker_backend: Any, pipeline_env: Any, lambda_context: Any) -> None:
    # GIVEN a tuning job in moto with 150 trials (two pages of 100) and the best one late in the list
    start_tuning.lambda_handler(load_event("start_tuning_validated_dataset"), lambda_context)
    trials = [_trial(number, 0.5 + number / 1000) for number in range(150)]
    trials[120]["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] = 0.97
    sagemaker_backend.hyper_parameter_tuning_jobs[JOB].training_job_summaries = trials

    best = pick_best_job.lambda_handler(load_event("tuning_status_later_poll"), lambda_context)

    assert best["training_job_name"] == trials[120]["TrainingJobName"]
    assert best["objective"]["value"] == 0.97
