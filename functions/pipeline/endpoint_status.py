"""EndpointStatus: one poll of the endpoint after DeployEndpoint, with rollback detection.

Input: ``{"deployment": $.deployment}`` (with the previous poll's ``status`` after the first round).
Output ($.deployment.status): ``{"status", "serving_config", "done", "polls"}``, with ``"autoscaling"`` once done.

After a blue/green rollback the endpoint returns to InService on the *previous* config, and its FailureReason
may be empty, so the status alone would read as success: the serving config is compared with the requested one.

Autoscaling is registered here, with the endpoint InService (pipeline.common.endpoint_autoscaling): after the first
creation, after an update that needed the target deregistered, and after a rollback too, so that the fleet that
serves again keeps a valid target. A model-only update kept the target; the check then changes nothing.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.common.config import Settings, load_settings
from pipeline.common.endpoint_autoscaling import autoscaling_gateway, ensure_autoscaling, scaling_from
from pipeline.common.errors import DeploymentFailed, DeploymentRolledBack, SageMakerThrottled
from pipeline.common.observability import logger, metrics, tracer
from pipeline.common.polling import poll_limit_error
from pipeline.common.sagemaker_gateway import SageMakerGateway, sagemaker_gateway
from pipeline.common.state_models import Deployment, next_poll

PENDING_STATUSES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "OutOfService"})
FAILED_STATUSES = frozenset({"Failed", "UpdateRollbackFailed", "Deleting"})


@tracer.capture_method
def poll_endpoint(deployment: Deployment, max_polls: int, sagemaker: SageMakerGateway) -> dict[str, Any]:
    polls = next_poll(deployment.status)
    description = sagemaker.call("describe_endpoint", EndpointName=deployment.endpoint)
    status = description["EndpointStatus"]
    serving = description.get("EndpointConfigName", "")
    reason = description.get("FailureReason") or "no FailureReason given"
    if status in FAILED_STATUSES:
        raise DeploymentFailed(
            f"endpoint {deployment.endpoint} is {status} while deploying {deployment.endpoint_config}: {reason}. "
            "See the endpoint's events in the SageMaker console and /aws/sagemaker/Endpoints/ logs."
        )
    if status == "InService" and serving != deployment.endpoint_config:
        if deployment.action == "update":
            alarms = deployment.deployment_config.get("alarms") or ["(no rollback alarms configured)"]
            raise DeploymentRolledBack(
                f"endpoint {deployment.endpoint} rolled back: it serves {serving} again instead of "
                f"{deployment.endpoint_config} ({reason}). Rollback alarms: {', '.join(alarms)}; check which one "
                "fired in CloudWatch. The previous model kept serving."
            )
        raise DeploymentFailed(
            f"endpoint {deployment.endpoint} serves {serving}, not the {deployment.endpoint_config} this run created; "
            "another deployment changed it."
        )
    done = status == "InService"
    if not done and polls > max_polls:
        raise poll_limit_error(
            f"deployment of {deployment.endpoint_config} to {deployment.endpoint}",
            max_polls,
            "the endpoint was left as is.",
        )
    summary = {"status": status, "serving_config": serving, "done": done, "polls": polls}
    logger.info("endpoint polled", extra={"endpoint": deployment.endpoint, **summary})
    return summary


def check_endpoint(
    deployment: Deployment, settings: Settings, sagemaker: SageMakerGateway, autoscaling: SageMakerGateway
) -> dict[str, Any]:
    """One poll; once the endpoint is InService again, on the new config or rolled back, its autoscaling is ensured."""
    scaling = scaling_from(settings)
    try:
        summary = poll_endpoint(deployment, settings.max_polls, sagemaker)
    except DeploymentRolledBack as rolled_back:
        try:
            restored = ensure_autoscaling(autoscaling, scaling)
        except SageMakerThrottled:
            raise  # retried by the state machine: the next poll sees the rollback again and repeats this
        except Exception as error:
            raise DeploymentRolledBack(f"{rolled_back} Autoscaling could not be registered again: {error}") from error
        logger.info("autoscaling after the rollback", extra={"endpoint": deployment.endpoint, **restored})
        raise
    if summary["done"]:
        summary["autoscaling"] = ensure_autoscaling(autoscaling, scaling)
        logger.info("autoscaling", extra={"endpoint": deployment.endpoint, **summary["autoscaling"]})
    return summary


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        result = check_endpoint(
            Deployment.model_validate(event["deployment"]), load_settings(), sagemaker_gateway(), autoscaling_gateway()
        )
    except DeploymentRolledBack:
        metrics.add_metric(name="DeploymentsRolledBack", unit=MetricUnit.Count, value=1)
        raise
    metrics.add_metric(name="EndpointPolls", unit=MetricUnit.Count, value=1)
    return result
