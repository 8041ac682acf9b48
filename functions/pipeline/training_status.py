"""TrainingStatus: one poll of the training job and of every Debugger/Profiler rule evaluation.

Input: ``{"training": $.training}`` (with the previous poll's ``status`` after the first round).
Output ($.training.status): ``{"status", "secondary_status", "rules": {name: status}, "rules_running", "done",
"polls"}``. Rule evaluations run as processing jobs that outlive the training job, so ``done`` waits for both.
Failed or Stopped raises TrainingFailed; more than MAX_POLLS polls stops the job and raises PollLimitExceeded.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.common.config import load_settings
from pipeline.common.errors import TrainingFailed
from pipeline.common.observability import logger, tracer
from pipeline.common.polling import poll_limit_error, stop_job
from pipeline.common.rule_evaluation import any_rule_running, results_from_training_job
from pipeline.common.sagemaker_gateway import SageMakerGateway, sagemaker_gateway
from pipeline.common.state_models import Training, next_poll

FAILED_STATUSES = frozenset({"Failed", "Stopped"})
TERMINAL_STATUSES = FAILED_STATUSES | {"Completed"}


@tracer.capture_method
def poll_training_job(training: Training, max_polls: int, sagemaker: SageMakerGateway) -> dict[str, Any]:
    polls = next_poll(training.status)
    description = sagemaker.call("describe_training_job", TrainingJobName=training.job_name)
    status = description["TrainingJobStatus"]
    if status in FAILED_STATUSES:
        raise TrainingFailed(
            f"training job {training.job_name} is {status} ({description.get('SecondaryStatus', '?')}): "
            f"{description.get('FailureReason', 'no reason given')}. Its CloudWatch log stream "
            f"/aws/sagemaker/TrainingJobs/{training.job_name}/* has the details."
        )
    results = results_from_training_job(description)
    rules_running = any_rule_running(results, training.rules)
    done = status in TERMINAL_STATUSES and not rules_running
    if not done and polls > max_polls:
        still = "training job" if status not in TERMINAL_STATUSES else "rule evaluations of training job"
        raise poll_limit_error(f"{still} {training.job_name}", max_polls, _stop(sagemaker, training.job_name, status))
    summary = {
        "status": status,
        "secondary_status": description.get("SecondaryStatus", ""),
        "rules": {name: result.status for name, result in results.items()},
        "rules_running": rules_running,
        "done": done,
        "polls": polls,
    }
    logger.info("training job polled", extra={"job_name": training.job_name, **summary})
    return summary


def _stop(sagemaker: SageMakerGateway, job_name: str, status: str) -> str:
    if status in TERMINAL_STATUSES:
        return "the job itself has ended; its rule evaluation jobs were left to finish."
    return stop_job(sagemaker, "stop_training_job", TrainingJobName=job_name)


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return poll_training_job(Training.model_validate(event["training"]), load_settings().max_polls, sagemaker_gateway())
