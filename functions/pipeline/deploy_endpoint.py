"""DeployEndpoint: creates the Model and EndpointConfig, then creates the endpoint or starts a guarded update.

Input: ``{"dataset": $.dataset, "training": $.training, "execution_name": str}``.
Output ($.deployment): ``{"endpoint", "endpoint_config", "model", "action": "create"|"update",
"previous_endpoint_config", "deployment_config": {...}, "autoscaling": {...}}``.

Everything that can be refused is checked before anything is created: the deployment plan (strategy against
instance count), the autoscaling range, the training job's artifact, and the endpoint's state (an endpoint that is
not InService is left untouched). An update is blue/green with the template's alarms as rollback triggers.

Autoscaling (pipeline.common.endpoint_autoscaling): with it on, the new config starts the fleet's current count; a
scalable target SageMaker would refuse the update under (instance type changed, variant gone, autoscaling turned
off) has its policies deleted and is deregistered right before UpdateEndpoint, and is registered again if
UpdateEndpoint itself fails. EndpointStatus registers the target once the endpoint is InService.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.common import names
from pipeline.common.config import Settings, load_settings
from pipeline.common.deployment_planning import plan_deployment
from pipeline.common.endpoint_autoscaling import (
    DIMENSION,
    NAMESPACE,
    Scaling,
    autoscaling_gateway,
    ensure_autoscaling,
    initial_instance_count,
    registered_targets,
    resource_id,
    scaling_from,
    scaling_policies,
    targets_to_deregister,
)
from pipeline.common.errors import DeploymentFailed
from pipeline.common.observability import logger, metrics, tracer
from pipeline.common.sagemaker_gateway import SageMakerGateway, sagemaker_gateway
from pipeline.common.sagemaker_requests import endpoint_config_request, model_request
from pipeline.common.state_models import Dataset, Training


def _exists(sagemaker: SageMakerGateway, list_operation: str, items_key: str, name_key: str, name: str) -> bool:
    """Whether a resource of that exact name exists; listing tells absence apart without parsing error messages."""
    return any(
        item[name_key] == name
        for page in sagemaker.pages(list_operation, NameContains=name, MaxResults=100)
        for item in page.get(items_key, [])
    )


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


def _stale_targets(
    sagemaker: SageMakerGateway,
    autoscaling: SageMakerGateway,
    scaling: Scaling,
    existing: dict[str, Any] | None,
    instance_type: str,
) -> list[str]:
    """The scalable targets on the endpoint's variants that must be deregistered before it is created or updated."""
    variants = [variant["VariantName"] for variant in (existing or {}).get("ProductionVariants") or []]
    resource_ids = [resource_id(scaling.endpoint, variant) for variant in [*variants, scaling.variant]]
    registered = list(registered_targets(autoscaling, resource_ids))
    if not registered:
        return []
    serving: dict[str, str] = {}
    if existing is not None:
        config = sagemaker.call("describe_endpoint_config", EndpointConfigName=existing["EndpointConfigName"])
        serving = {variant["VariantName"]: variant.get("InstanceType", "") for variant in config["ProductionVariants"]}
    return targets_to_deregister(scaling, registered, serving, instance_type)


def deregister_targets(autoscaling: SageMakerGateway, resource_ids: list[str]) -> None:
    """SageMaker's procedure: delete the target's scaling policies, then deregister the target."""
    for target in resource_ids:
        for policy in scaling_policies(autoscaling, target):
            autoscaling.call(
                "delete_scaling_policy",
                PolicyName=policy["PolicyName"],
                ServiceNamespace=NAMESPACE,
                ResourceId=target,
                ScalableDimension=DIMENSION,
            )
        autoscaling.call(
            "deregister_scalable_target", ServiceNamespace=NAMESPACE, ResourceId=target, ScalableDimension=DIMENSION
        )
        logger.info("scalable target deregistered before the deployment", extra={"resource_id": target})


def _restore_autoscaling(autoscaling: SageMakerGateway, scaling: Scaling) -> None:
    """After a refused UpdateEndpoint the old fleet keeps serving: give it its autoscaling back."""
    try:
        ensure_autoscaling(autoscaling, scaling)
    except Exception:  # the refusal is the error to report; this is only its clean-up
        logger.exception("autoscaling could not be registered again after the refused update")


@tracer.capture_method
def deploy_endpoint(
    dataset: Dataset,
    training: Training,
    settings: Settings,
    sagemaker: SageMakerGateway,
    autoscaling: SageMakerGateway,
) -> dict[str, Any]:
    # Checked against the minimum: whether CANARY or LINEAR is possible must not depend on the traffic of the day.
    plan = plan_deployment(
        settings.deployment_strategy,
        settings.endpoint_instance_count,
        settings.bake_time_seconds,
        settings.rollback_alarms,
    )
    scaling = scaling_from(settings)
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
    instance_count = initial_instance_count(scaling, existing)
    if instance_count != plan.instance_count:  # a scaled-out fleet: shift its traffic in steps of its real size
        plan = plan_deployment(
            settings.deployment_strategy, instance_count, settings.bake_time_seconds, settings.rollback_alarms
        )
    # Names are per run, so an existing model or config was made by an earlier attempt of this same state.
    if not _exists(sagemaker, "list_models", "Models", "ModelName", model):
        sagemaker.call("create_model", **model_request(settings, dataset, model, artifact, sagemaker.region))
    if not _exists(sagemaker, "list_endpoint_configs", "EndpointConfigs", "EndpointConfigName", endpoint_config):
        sagemaker.call(
            "create_endpoint_config",
            **endpoint_config_request(settings, dataset, endpoint_config, model, instance_count),
        )
    deregistered: list[str] = []
    if not resumed:  # a resumed attempt already did this before its own UpdateEndpoint
        deregistered = _stale_targets(sagemaker, autoscaling, scaling, existing, settings.endpoint_instance_type)
        deregister_targets(autoscaling, deregistered)
    if existing is None:
        sagemaker.call("create_endpoint", EndpointName=endpoint_name, EndpointConfigName=endpoint_config)
        action, previous = "create", None
    elif resumed:
        logger.info("deployment was already requested by an earlier attempt", extra={"endpoint": endpoint_name})
        action = "create" if existing["EndpointStatus"] == "Creating" else "update"
        serving = existing["EndpointConfigName"]
        previous = None if serving == endpoint_config else serving
    else:
        try:
            sagemaker.call(
                "update_endpoint",
                EndpointName=endpoint_name,
                EndpointConfigName=endpoint_config,
                DeploymentConfig=plan.deployment_config(),
            )
        except Exception:
            if deregistered:
                _restore_autoscaling(autoscaling, scaling)
            raise
        action, previous = "update", existing["EndpointConfigName"]
    result = {
        "endpoint": endpoint_name,
        "endpoint_config": endpoint_config,
        "model": model,
        "model_data": artifact,
        "action": action,
        "previous_endpoint_config": previous,
        "deployment_config": plan.summary() if action == "update" else {"strategy": "CREATE"},
        "autoscaling": scaling.summary() | {"initial_instance_count": instance_count, "deregistered": deregistered},
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
        autoscaling_gateway(),
    )
    metrics.add_metric(name="DeploymentsStarted", unit=MetricUnit.Count, value=1)
    return result
