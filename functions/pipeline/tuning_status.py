"""TuningStatus: one poll of the hyperparameter tuning job.

Input: ``{"tuning": $.tuning}`` (with the previous poll's ``status`` after the first round).
Output ($.tuning.status): ``{"status", "done", "polls", "trials": {...}, "objective": {...}, "best_so_far"?}``.
Failed or Stopped raises TuningFailed; more than MAX_POLLS polls stops the job and raises PollLimitExceeded.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.common.config import load_settings
from pipeline.common.errors import TuningFailed
from pipeline.common.observability import logger, tracer
from pipeline.common.polling import poll_limit_error, stop_job
from pipeline.common.sagemaker_gateway import SageMakerGateway, sagemaker_gateway
from pipeline.common.state_models import Tuning, next_poll

FAILED_STATUSES = frozenset({"Failed", "Stopped", "Deleting", "DeleteFailed"})


def summarise_tuning_job(description: dict[str, Any]) -> dict[str, Any]:
    counters = description.get("TrainingJobStatusCounters", {})
    objectives = description.get("ObjectiveStatusCounters", {})
    summary: dict[str, Any] = {
        "status": description["HyperParameterTuningJobStatus"],
        "trials": {
            "completed": counters.get("Completed", 0),
            "in_progress": counters.get("InProgress", 0),
            "failed": counters.get("RetryableError", 0) + counters.get("NonRetryableError", 0),
            "stopped": counters.get("Stopped", 0),
        },
        "objective": {
            "succeeded": objectives.get("Succeeded", 0),
            "pending": objectives.get("Pending", 0),
            "failed": objectives.get("Failed", 0),
        },
    }
    best = description.get("BestTrainingJob")
    if best and "FinalHyperParameterTuningJobObjectiveMetric" in best:
        metric = best["FinalHyperParameterTuningJobObjectiveMetric"]
        summary["best_so_far"] = {
            "training_job_name": best["TrainingJobName"],
            "metric": metric["MetricName"],
            "value": metric["Value"],
        }
    return summary


@tracer.capture_method
def poll_tuning_job(tuning: Tuning, max_polls: int, sagemaker: SageMakerGateway) -> dict[str, Any]:
    polls = next_poll(tuning.status)
    description = sagemaker.call("describe_hyper_parameter_tuning_job", HyperParameterTuningJobName=tuning.job_name)
    summary = summarise_tuning_job(description)
    status = summary["status"]
    if status in FAILED_STATUSES:
        raise TuningFailed(
            f"tuning job {tuning.job_name} is {status}: {description.get('FailureReason', 'no reason given')}. "
            f"Trials: {summary['trials']}. Open the job's training jobs in the SageMaker console for their logs."
        )
    done = status == "Completed"
    if not done and polls > max_polls:
        raise poll_limit_error(
            f"tuning job {tuning.job_name}",
            max_polls,
            stop_job(sagemaker, "stop_hyper_parameter_tuning_job", HyperParameterTuningJobName=tuning.job_name),
        )
    logger.info("tuning job polled", extra={"job_name": tuning.job_name, "polls": polls, **summary})
    return summary | {"done": done, "polls": polls}


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return poll_tuning_job(Tuning.model_validate(event["tuning"]), load_settings().max_polls, sagemaker_gateway())
