"""StartTuning: checks that the pinned pretrained weights are staged, uploads the training code once per content
hash and creates the hyperparameter tuning job.

Input: ``{"dataset": <ValidateDataset output>, "execution_name": str}``.
Output ($.tuning): ``{"job_name", "code_uri", "output_uri", "max_jobs", "warm_start_parent", "warm_start_skipped",
"spot", "warm_pool_seconds"}``: the console shows which earlier tuning job (if any) this one warm-starts from, and
why not when it does not (see ``common/warm_start.py``).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from pipeline.common import names
from pipeline.common.clients import get_client
from pipeline.common.config import Settings, load_settings
from pipeline.common.observability import logger, metrics, tracer
from pipeline.common.pretrained_weights import check_pretrained_weights
from pipeline.common.sagemaker_gateway import SageMakerGateway, error_code, sagemaker_gateway, training_channel_uri
from pipeline.common.sagemaker_requests import (
    job_output_uri,
    tuning_job_request,
    warm_pool_seconds,
)
from pipeline.common.state_models import Dataset
from pipeline.common.training_code_bundle import ensure_uploaded
from pipeline.common.warm_start import WarmStartChoice, choose_parent


@tracer.capture_method
def start_tuning(dataset: Dataset, settings: Settings, sagemaker: SageMakerGateway, s3: Any) -> dict[str, Any]:
    check_pretrained_weights(settings, s3)
    code_uri = ensure_uploaded(s3, settings.bucket, settings.code_prefix, settings.training_code_dir)
    job_name = names.tuning_job_name(dataset.run_id)
    cold = tuning_job_request(settings, dataset, job_name, code_uri, sagemaker.region)
    choice = choose_parent(sagemaker, cold)
    if choice.parent:
        logger.info("warm start", extra={"job_name": job_name, "parent": choice.parent, "type": "TransferLearning"})
    else:
        logger.info("no warm start", extra={"job_name": job_name, "reason": choice.skipped})
    request = tuning_job_request(
        settings, dataset, job_name, code_uri, sagemaker.region, warm_start_parent=choice.parent
    )
    keep_alive, warm_pool_note = warm_pool_seconds(settings)
    if warm_pool_note:
        logger.warning(warm_pool_note, extra={"job_name": job_name})
    try:
        sagemaker.call("create_hyper_parameter_tuning_job", **request)
    except ClientError as error:
        # A Lambda retry after a timeout finds the job its first attempt created: same name, same dataset.
        existing = _same_job(sagemaker, job_name, dataset) if error_code(error) == "ResourceInUse" else None
        if existing is None:
            raise
        logger.info("tuning job was already created by an earlier attempt", extra={"job_name": job_name})
        # The state reports the parent the job really has (another job may have completed since that attempt).
        parents = (existing.get("WarmStartConfig") or {}).get("ParentHyperParameterTuningJobs") or []
        if parents and parents[0]["HyperParameterTuningJobName"] != choice.parent:
            choice = WarmStartChoice(parents[0]["HyperParameterTuningJobName"], None)
        elif not parents and choice.parent:
            choice = WarmStartChoice(None, "the job was created without a warm start by an earlier attempt")
    logger.info("tuning job running", extra={"job_name": job_name, "code_uri": code_uri})
    return {
        "job_name": job_name,
        "code_uri": code_uri,
        "output_uri": job_output_uri(settings, dataset.run_id),
        "max_jobs": settings.max_tuning_jobs,
        "warm_start_parent": choice.parent,
        "warm_start_skipped": choice.skipped,
        "spot": settings.spot_tuning,
        "warm_pool_seconds": keep_alive,
    }


def _same_job(sagemaker: SageMakerGateway, job_name: str, dataset: Dataset) -> dict[str, Any] | None:
    """The existing job of that name when it tunes on this dataset (an earlier attempt's), else None."""
    existing = sagemaker.call("describe_hyper_parameter_tuning_job", HyperParameterTuningJobName=job_name)
    return existing if training_channel_uri(existing) == dataset.validated_uri else None


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = start_tuning(
        Dataset.model_validate(event["dataset"]), load_settings(), sagemaker_gateway(), get_client("s3")
    )
    metrics.add_metric(name="TuningJobsStarted", unit=MetricUnit.Count, value=1)
    return result
