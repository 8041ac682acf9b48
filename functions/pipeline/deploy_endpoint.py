"""DeployEndpoint: creates the Model and EndpointConfig, then creates the endpoint or starts a guarded update.

Input: ``{"dataset": $.dataset, "training": $.training, "execution_name": str}``.
Output ($.deployment): ``{"endpoint", "endpoint_config", "model", "action": "create"|"update",
"previous_endpoint_config", "deployment_config": {...}}``.

Everything that can be refused is checked before anything is created: the deployment plan (strategy against
instance count), the training job's artifact, and the endpoint's state (an endpoint that is not InService is
left untouched). An update is blue/green with the template's alarms as rollback triggers.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.common import names
from pipeline.common.config import Settings, load_settings
from pipeline.common.deployment_planning import plan_deployment
from pipeline.common.errors import DeploymentFailed
from pipeline.common.observability import logger, metrics, tracer
from pipeline.common.sagemaker_gateway import SageMakerGateway, sagemaker_gateway
from pipeline.common.sagemaker_requests import endpoint_config_request, model_request
from pipeline.common.state_models import Dataset, Training


def _exists(sagemaker: SageMakerGateway, list_operation: str, items_key: str, name_key: str, name: str) -> bool:
    """Whether a resource of that exact name exists; listing tells absence apart without parsing error messages."""
    request: dict[str, Any] = {"NameContains": name, "MaxResults": 100}
    while True:
        page = sagemaker.call(list_operation, **request)
        if any(item[name_key] == name for item in page.get(items_key, [])):
            return True
        if not page.get("NextToken"):
            return False
        request["NextToken"] = page["NextToken"]


def find_endpoint(sagemaker: SageMakerGateway, endpoint_name: str) -> dict[str, Any] | None:
    if not _exists(sagemaker, "list_endpoints", "Endpoints", "EndpointName", endpoint_name):
        return None
    return sagemaker.call("describe_endpoint", EndpointName=endpoint_name)


def model_artifact(sagemaker: SageMakerGateway, job_name: str) -> str:
    description = sagemaker.call("describe_training_job", TrainingJobName=job_name)
    artifact = description.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    if description["TrainingJobStatus"] != "Completed" or not artifact:
        raise DeploymentFailed(
            f"training job {job_name} is {description['TrainingJobStatus']} with no model artifact; nothing to deploy."
        )
    return str(artifact)


def _requested_earlier(endpoint: dict[str, Any], endpoint_config: str) -> bool:
    """Whether an earlier attempt of this state already sent the endpoint to ``endpoint_config``."""
    pending = endpoint.get("PendingDeploymentSummary", {}).get("EndpointConfigName")
    return endpoint_config in {endpoint.get("EndpointConfigName"), pending}


@tracer.capture_method
def deploy_endpoint(
    dataset: Dataset, training: Training, settings: Settings, sagemaker: SageMakerGateway
) -> dict[str, Any]:
    plan = plan_deployment(
        settings.deployment_strategy,
        settings.endpoint_instance_count,
        settings.bake_time_seconds,
        settings.rollback_alarms,
    )
    endpoint_name = settings.endpoint_name
    model = names.model_name(dataset.run_id)
    endpoint_config = names.endpoint_config_name(dataset.run_id)
    existing = find_endpoint(sagemaker, endpoint_name)
    resumed = existing is not None and _requested_earlier(existing, endpoint_config)
    if existing is not None and not resumed and existing["EndpointStatus"] != "InService":
        raise DeploymentFailed(
            f"endpoint {endpoint_name} is {existing['EndpointStatus']} (config {existing.get('EndpointConfigName')}), "
            "so it was left untouched and nothing was created. Wait until it is InService (or delete it if it is "
            "Failed) and start the run again."
        )
    artifact = model_artifact(sagemaker, training.job_name)
    # Names are per run, so an existing model or config was made by an earlier attempt of this same state.
    if not _exists(sagemaker, "list_models", "Models", "ModelName", model):
        sagemaker.call("create_model", **model_request(settings, dataset, model, artifact, sagemaker.region))
    if not _exists(sagemaker, "list_endpoint_configs", "EndpointConfigs", "EndpointConfigName", endpoint_config):
        sagemaker.call("create_endpoint_config", **endpoint_config_request(settings, dataset, endpoint_config, model))
    if existing is None:
        sagemaker.call("create_endpoint", EndpointName=endpoint_name, EndpointConfigName=endpoint_config)
        action, previous = "create", None
    elif resumed:
        logger.info("deployment was already requested by an earlier attempt", extra={"endpoint": endpoint_name})
        action = "create" if existing["EndpointStatus"] == "Creating" else "update"
        serving = existing["EndpointConfigName"]
        previous = None if serving == endpoint_config else serving
    else:
        sagemaker.call(
            "update_endpoint",
            EndpointName=endpoint_name,
            EndpointConfigName=endpoint_config,
            DeploymentConfig=plan.deployment_config(),
        )
        action, previous = "update", existing["EndpointConfigName"]
    result = {
        "endpoint": endpoint_name,
        "endpoint_config": endpoint_config,
        "model": model,
        "model_data": artifact,
        "action": action,
        "previous_endpoint_config": previous,
        "deployment_config": plan.summary() if action == "update" else {"strategy": "CREATE"},
    }
    logger.info("deployment started", extra=result)
    return result


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = deploy_endpoint(
        Dataset.model_validate(event["dataset"]),
        Training.model_validate(event["training"]),
        load_settings(),
        sagemaker_gateway(),
    )
    metrics.add_metric(name="DeploymentsStarted", unit=MetricUnit.Count, value=1)
    return result
