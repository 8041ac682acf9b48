"""EndpointStatus: done on the requested config, rollback detected by the config actually serving."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from sagemaker_states_support import INFERENCE_IMAGE, REGION, ROLE_ARN, load_event

from pipeline import endpoint_status
from pipeline.common.errors import DeploymentFailed, DeploymentRolledBack, PollLimitExceeded
from pipeline.common.sagemaker_gateway import SageMakerGateway
from pipeline.common.state_models import Deployment

ENDPOINT = "dog-breed-classifier"
NEW = "dogs-251125-015343-3f9a1c"
OLD = "dogs-251118-020000-77aa00"
UPDATE = Deployment.model_validate(
    {k: v for k, v in load_event("endpoint_status_after_update")["deployment"].items() if k != "status"}
)
CREATE = Deployment.model_validate(
    UPDATE.model_dump()
    | {"action": "create", "previous_endpoint_config": None, "deployment_config": {"strategy": "CREATE"}}
)


def _after(deployment: Deployment, status: dict[str, Any]) -> Deployment:
    return Deployment.model_validate(deployment.model_dump() | {"status": status})


def _described(status: str, config: str, **extra: Any) -> dict[str, Any]:
    now = datetime(2025, 11, 25, 4, 0)
    return {
        "EndpointName": ENDPOINT,
        "EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{ENDPOINT}",
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": now,
        "LastModifiedTime": now,
        **extra,
    }


def _expect(stubber: Stubber, response: dict[str, Any]) -> None:
    stubber.add_response("describe_endpoint", response, {"EndpointName": ENDPOINT})


def test_update_in_progress_then_in_service_on_the_new_config(stubbed: tuple[SageMakerGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    _expect(stubber, _described("Updating", OLD))
    _expect(stubber, _described("InService", NEW))

    first = endpoint_status.poll_endpoint(UPDATE, 10, gateway)
    second = endpoint_status.poll_endpoint(_after(UPDATE, first), 10, gateway)

    assert first == {"status": "Updating", "serving_config": OLD, "done": False, "polls": 1}
    assert second == {"status": "InService", "serving_config": NEW, "done": True, "polls": 2}


@pytest.mark.parametrize("status", ["Creating", "SystemUpdating", "RollingBack"])
def test_transitional_statuses_are_not_done(status: str, stubbed: tuple[SageMakerGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    _expect(stubber, _described(status, OLD))

    assert endpoint_status.poll_endpoint(UPDATE, 10, gateway)["done"] is False


def test_back_in_service_on_the_old_config_is_a_rollback(stubbed: tuple[SageMakerGateway, Stubber]) -> None:
    # GIVEN the update rolled back: InService again, on the previous config, with an empty FailureReason
    gateway, stubber = stubbed
    _expect(stubber, _described("InService", OLD, FailureReason=""))

    with pytest.raises(DeploymentRolledBack) as raised:
        endpoint_status.poll_endpoint(UPDATE, 10, gateway)

    message = str(raised.value)
    assert f"serves {OLD} again instead of {NEW}" in message
    assert "no FailureReason given" in message
    assert "Rollback alarms: dog-breed-5xx, dog-breed-latency" in message


def test_rollback_names_the_failure_reason_when_there_is_one(stubbed: tuple[SageMakerGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    _expect(stubber, _described("InService", OLD, FailureReason="Alarm dog-breed-5xx in ALARM state"))

    with pytest.raises(DeploymentRolledBack, match=r"\(Alarm dog-breed-5xx in ALARM state\)"):
        endpoint_status.poll_endpoint(UPDATE, 10, gateway)


@pytest.mark.parametrize("status", ["Failed", "UpdateRollbackFailed"])
def test_failed_endpoint_is_a_deployment_failure(status: str, stubbed: tuple[SageMakerGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    _expect(stubber, _described(status, OLD, FailureReason="Model container failed the ping health check"))

    with pytest.raises(DeploymentFailed, match=rf"is {status} while deploying {NEW}: Model container failed the ping"):
        endpoint_status.poll_endpoint(UPDATE, 10, gateway)


def test_created_endpoint_serving_another_config_was_changed_by_someone_else(
    stubbed: tuple[SageMakerGateway, Stubber],
) -> None:
    gateway, stubber = stubbed
    _expect(stubber, _described("InService", "dogs-manual"))

    with pytest.raises(DeploymentFailed, match="another deployment changed it"):
        endpoint_status.poll_endpoint(CREATE, 10, gateway)


def test_poll_bound_leaves_the_endpoint_alone(stubbed: tuple[SageMakerGateway, Stubber]) -> None:
    # Stopping a blue/green update is what the rollback machinery is for; the handler must not interfere.
    gateway, stubber = stubbed
    _expect(stubber, _described("Updating", OLD))

    with pytest.raises(PollLimitExceeded, match="the endpoint was left as is"):
        endpoint_status.poll_endpoint(_after(UPDATE, {"polls": 5}), 5, gateway)


def test_handler_detects_a_rollback_in_moto(aws: None, pipeline_env: Any, lambda_context: Any) -> None:
    # GIVEN moto's endpoint serving the old config after the update was requested
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    for name in (OLD, NEW):
        sagemaker.create_model(ModelName=name, ExecutionRoleArn=ROLE_ARN, PrimaryContainer={"Image": INFERENCE_IMAGE})
        sagemaker.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": name,
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                }
            ],
        )
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=OLD)

    with pytest.raises(DeploymentRolledBack, match=f"serves {OLD} again"):
        endpoint_status.lambda_handler(load_event("endpoint_status_after_update"), lambda_context)

    # AND once the update lands on the new config, the next poll is done
    sagemaker.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName=NEW)
    result = endpoint_status.lambda_handler(load_event("endpoint_status_after_update"), lambda_context)
    assert (result["done"], result["polls"], result["serving_config"]) == (True, 5, NEW)
