"""PickBestJob: the tuning trial with the best objective value, and its tuned hyperparameters.

Input: ``{"tuning": $.tuning}``.
Output ($.best): ``{"training_job_name", "objective": {"name", "value"}, "hyperparameters": {"batch_size",
"learning_rate"}}``. Trials that never reported the objective (or failed) do not count; when none is left the
run fails with NoTrainingJobWithMetric.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.common.errors import NoTrainingJobWithMetric, TuningFailed
from pipeline.common.observability import logger, tracer
from pipeline.common.sagemaker_gateway import SageMakerGateway, sagemaker_gateway
from pipeline.common.sagemaker_requests import TUNED_HYPERPARAMETERS, decode_hyperparameter
from pipeline.common.state_models import Tuning

PAGE_SIZE = 100
_TYPES = {"batch_size": int, "learning_rate": float}


def training_job_summaries(sagemaker: SageMakerGateway, tuning_job_name: str) -> Iterator[dict[str, Any]]:
    for page in sagemaker.pages(
        "list_training_jobs_for_hyper_parameter_tuning_job",
        HyperParameterTuningJobName=tuning_job_name,
        MaxResults=PAGE_SIZE,
    ):
        yield from page.get("TrainingJobSummaries", [])


def best_summary(summaries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The summary with the best final objective; ties go to the alphabetically first job, so reruns agree."""
    scored = [
        summary
        for summary in summaries
        if "FinalHyperParameterTuningJobObjectiveMetric" in summary and summary.get("TrainingJobStatus") != "Failed"
    ]
    if not scored:
        return None
    minimize = scored[0]["FinalHyperParameterTuningJobObjectiveMetric"].get("Type") == "Minimize"

    def rank(summary: dict[str, Any]) -> tuple[float, str]:
        value = float(summary["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])
        return (value if minimize else -value, summary["TrainingJobName"])

    return min(scored, key=rank)


def tuned_hyperparameters(summary: dict[str, Any]) -> dict[str, Any]:
    raw = summary.get("TunedHyperParameters", {})
    missing = [name for name in TUNED_HYPERPARAMETERS if name not in raw]
    if missing:
        raise TuningFailed(
            f"best trial {summary['TrainingJobName']} has no tuned value for {missing}; the tuning job's ranges "
            f"must include {list(TUNED_HYPERPARAMETERS)}."
        )
    return {name: _TYPES[name](decode_hyperparameter(raw[name])) for name in TUNED_HYPERPARAMETERS}


@tracer.capture_method
def pick_best_job(tuning: Tuning, sagemaker: SageMakerGateway) -> dict[str, Any]:
    summaries = list(training_job_summaries(sagemaker, tuning.job_name))
    best = best_summary(summaries)
    if best is None:
        statuses = sorted({summary.get("TrainingJobStatus", "?") for summary in summaries})
        raise NoTrainingJobWithMetric(
            f"none of the {len(summaries)} training jobs of tuning job {tuning.job_name} reported the objective "
            f"metric (job statuses: {statuses or 'no jobs'}). Check that the training code prints valid_accuracy= "
            "every epoch and that the jobs' logs show no crash before the first epoch ends."
        )
    metric = best["FinalHyperParameterTuningJobObjectiveMetric"]
    result = {
        "training_job_name": best["TrainingJobName"],
        "objective": {"name": metric["MetricName"], "value": metric["Value"]},
        "hyperparameters": tuned_hyperparameters(best),
    }
    logger.info("best trial picked", extra={"candidates": len(summaries), **result})
    return result


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return pick_best_job(Tuning.model_validate(event["tuning"]), sagemaker_gateway())
