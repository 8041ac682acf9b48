"""StartTraining: the final training job with the best trial's hyperparameters, Debugger hook and rules.

Input: ``{"dataset": $.dataset, "best": $.best, "execution_name": str}``.
Output ($.training): ``{"job_name", "rules": [rule names], "output_uri", "code_uri", "spot", "checkpoint_uri",
"champion"}`` (``checkpoint_uri`` null without spot; ``champion`` null when nothing serves yet, else
``pipeline.common.champion.serving_champion``'s dict: the model the job scores on the same test images).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from pipeline.common import names
from pipeline.common.champion import serving_champion
from pipeline.common.clients import get_client
from pipeline.common.config import Settings, load_settings
from pipeline.common.observability import logger, metrics, tracer
from pipeline.common.sagemaker_gateway import SageMakerGateway, error_code, sagemaker_gateway, training_channel_uri
from pipeline.common.sagemaker_requests import enabled_rules, job_output_uri, training_job_request
from pipeline.common.state_models import BestJob, Dataset
from pipeline.common.training_code_bundle import ensure_uploaded


@tracer.capture_method
def start_training(
    dataset: Dataset, best: BestJob, settings: Settings, sagemaker: SageMakerGateway, s3: Any
) -> dict[str, Any]:
    # Same content, same key: this finds the bundle StartTuning uploaded instead of uploading it again.
    code_uri = ensure_uploaded(s3, settings.bucket, settings.code_prefix, settings.training_code_dir)
    job_name = names.training_job_name(dataset.run_id)
    champion = serving_champion(sagemaker, s3, settings.model_package_group, settings.endpoint_name)
    if champion and champion["problem"]:
        logger.warning("the serving model cannot be scored: only the floor will apply", extra=champion)
    champion_uri = champion["model_data_url"] if champion and not champion["problem"] else None
    request = training_job_request(settings, dataset, best, job_name, code_uri, sagemaker.region, champion_uri)
    try:
        sagemaker.call("create_training_job", **request)
    except ClientError as error:
        # A Lambda retry after a timeout finds the job its first attempt created: same name, same dataset.
        if error_code(error) != "ResourceInUse" or not _is_same_job(sagemaker, job_name, dataset):
            raise
        logger.info("training job was already created by an earlier attempt", extra={"job_name": job_name})
    rules = enabled_rules(settings)
    logger.info(
        "training job created", extra={"job_name": job_name, "rules": rules, "from_trial": best.training_job_name}
    )
    return {
        "job_name": job_name,
        "rules": rules,
        "output_uri": job_output_uri(settings, dataset.run_id),
        "code_uri": code_uri,
        "spot": settings.spot_training,
        "checkpoint_uri": request.get("CheckpointConfig", {}).get("S3Uri"),
        "champion": champion,
    }


def _is_same_job(sagemaker: SageMakerGateway, job_name: str, dataset: Dataset) -> bool:
    existing = sagemaker.call("describe_training_job", TrainingJobName=job_name)
    return training_channel_uri(existing) == dataset.validated_uri


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = start_training(
        Dataset.model_validate(event["dataset"]),
        BestJob.model_validate(event["best"]),
        load_settings(),
        sagemaker_gateway(),
        get_client("s3"),
    )
    metrics.add_metric(name="TrainingJobsStarted", unit=MetricUnit.Count, value=1)
    return result
