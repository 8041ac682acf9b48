"""The serving model (the champion) as the final training job needs it: the artifact to score on the new test split.

StartTraining looks it up once per run and hands its model.tar.gz to the job as the ``champion`` channel; the job
scores both models on the same images (training_code/paired_evaluation.py) and EvaluateModel decides on those
figures for the champion StartTraining named. Anything that keeps the champion from being scored (an endpoint
config no Approved package records, a package without an artifact, an artifact deleted from S3) is a ``problem``:
the job then trains without the channel and the gate falls back to the accuracy floor, saying why.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from pipeline.common.job_outputs import split_s3_uri
from pipeline.common.model_packages import ENDPOINT_CONFIG_KEY, Package
from pipeline.common.package_listing import newest_packages
from pipeline.common.sagemaker_gateway import SageMakerGateway


def serving_config(sagemaker: SageMakerGateway, endpoint_name: str) -> str | None:
    """The endpoint config the endpoint serves now; None when there is no endpoint yet."""
    for page in sagemaker.pages("list_endpoints", NameContains=endpoint_name, MaxResults=100):
        if any(item["EndpointName"] == endpoint_name for item in page.get("Endpoints", [])):
            described = sagemaker.call("describe_endpoint", EndpointName=endpoint_name)
            return str(described["EndpointConfigName"])
    return None


def find_champion(sagemaker: SageMakerGateway, group: str, config: str) -> Package | None:
    """The Approved package the endpoint serves now (ApproveModel recorded its endpoint config)."""
    approved = newest_packages(sagemaker, group, "Approved")
    return next((p for p in approved if p.properties.get(ENDPOINT_CONFIG_KEY) == config), None)


def _missing_artifact(s3: Any, uri: str) -> str | None:
    bucket, key = split_s3_uri(uri)
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return f"its artifact {uri} does not exist (deleted, or moved by a lifecycle rule)"
        raise
    return None


def serving_champion(sagemaker: SageMakerGateway, s3: Any, group: str, endpoint_name: str) -> dict[str, Any] | None:
    """None when nothing serves yet; else ``{"endpoint_config", "model_package_arn", "model_data_url", "problem"}``
    with ``problem`` None when the job can score the champion."""
    config = serving_config(sagemaker, endpoint_name)
    if config is None:
        return None
    package = find_champion(sagemaker, group, config)
    champion: dict[str, Any] = {
        "endpoint_config": config,
        "model_package_arn": package.arn if package else None,
        "model_data_url": package.model_data_url if package else None,
        "problem": None,
    }
    if package is None:
        champion["problem"] = (
            f"the endpoint {endpoint_name} serves {config}, which no Approved package of {group} records"
        )
    elif not package.model_data_url:
        champion["problem"] = f"its model package {package.arn} names no model artifact"
    else:
        champion["problem"] = _missing_artifact(s3, package.model_data_url)
    return champion
