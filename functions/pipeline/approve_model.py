"""ApproveModel: the deployed model's package becomes Approved, with the endpoint config it serves as.

Input: ``{"gate": $.gate, "deployment": $.deployment, "execution_name": str}``.
Output ($.approval): ``{"model_package_arn", "status": "Approved", "endpoint", "endpoint_config"}``.

Runs only after EndpointStatus saw the endpoint InService on this run's config, so Approved means "was serving".
The recorded ``endpoint_config`` is how the next run's StartTraining finds its champion. With ApprovalMode manual
the package is Approved already, by a person: their description and identity are kept, the deployment added.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.common.model_approval import set_approval
from pipeline.common.model_packages import ENDPOINT_CONFIG_KEY, approver
from pipeline.common.observability import logger, metrics, tracer
from pipeline.common.sagemaker_gateway import SageMakerGateway, sagemaker_gateway
from pipeline.common.state_models import Deployment, Gate


@tracer.capture_method
def approve_model(
    gate: Gate,
    deployment: Deployment,
    execution_name: str,
    sagemaker: SageMakerGateway,
) -> dict[str, Any]:
    deployed = (
        f"Deployed by run {execution_name}: endpoint {deployment.endpoint} serves it as {deployment.endpoint_config}."
    )
    approved_by = execution_name
    package = sagemaker.call("describe_model_package", ModelPackageName=gate.model_package_arn)
    earlier = str(package.get("ApprovalDescription") or "")
    # Approved already: by a person (ApprovalMode manual), unless it is this step's own earlier attempt.
    if package.get("ModelApprovalStatus") == "Approved" and not earlier.endswith(deployed):
        approved_by = approver(package)
        deployed = f"Approved by {approved_by}: {earlier} | {deployed}"
    set_approval(
        sagemaker,
        gate.model_package_arn,
        "Approved",
        deployed,
        {ENDPOINT_CONFIG_KEY: deployment.endpoint_config, "endpoint": deployment.endpoint, "approved_by": approved_by},
    )
    result = {
        "model_package_arn": gate.model_package_arn,
        "status": "Approved",
        "endpoint": deployment.endpoint,
        "endpoint_config": deployment.endpoint_config,
    }
    logger.info("model approved", extra=result)
    return result


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = approve_model(
        Gate.model_validate(event["gate"]),
        Deployment.model_validate(event["deployment"]),
        str(event.get("execution_name", "")),
        sagemaker_gateway(),
    )
    metrics.add_metric(name="ModelPackagesApproved", unit=MetricUnit.Count, value=1)
    return result
