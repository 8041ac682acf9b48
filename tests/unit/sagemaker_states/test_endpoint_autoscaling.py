"""Endpoint autoscaling across deployments, on moto's Application Auto Scaling: registered once the endpoint is
InService, kept through a model-only blue/green update, deregistered before an instance-type change and registered
again after it, valid after a rollback; and the pure decisions behind it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.validate import validate_parameters
from sagemaker_states_support import INFERENCE_IMAGE, REGION, ROLE_ARN, load_event

from pipeline import deploy_endpoint, endpoint_status, start_training
from pipeline.common import endpoint_autoscaling as scaling_module
from pipeline.common.config import Settings
from pipeline.common.endpoint_autoscaling import (
    DIMENSION,
    NAMESPACE,
    Scaling,
    initial_instance_count,
    policy_request,
    register_request,
    registration_calls,
    scaling_from,
    targets_to_deregister,
)
from pipeline.common.errors import DeploymentFailed, DeploymentRolledBack
from pipeline.common.request_validation import operation_model, request_problems
from pipeline.common.sagemaker_gateway import SageMakerGateway
from pipeline.common.state_models import Dataset, Deployment, Training

ENDPOINT = "dog-breed-classifier"
TARGET = f"endpoint/{ENDPOINT}/variant/AllTraffic"
POLICY = f"{ENDPOINT}-invocations-per-instance"
NEW = "dogs-251125-015343-3f9a1c"
OLD = "dogs-251118-020000-77aa00"
WRITES = {"register_scalable_target", "put_scaling_policy", "delete_scaling_policy", "deregister_scalable_target"}


def _refusal(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {}}, operation)


class RecordingGateway(SageMakerGateway):
    """A real (moto) gateway that writes every operation into a log shared by both services, in call order.

    Over SageMaker it also applies the rule moto lacks: UpdateEndpoint fails when it would change the instance type
    of a variant that is a scalable target ("Update endpoints that use auto scaling")."""

    def __init__(self, client: Any, log: list[str], refuse: str | None = None) -> None:
        super().__init__(client)
        self.log, self.refuse = log, refuse

    def call(self, operation: str, **request: Any) -> dict[str, Any]:
        self.log.append(operation)
        if operation == self.refuse:
            raise _refusal("ResourceLimitExceeded", "quota", operation)
        if operation == "update_endpoint":
            self._refuse_an_instance_type_change_under_a_target(request)
        return super().call(operation, **request)

    def _refuse_an_instance_type_change_under_a_target(self, request: dict[str, Any]) -> None:
        endpoint = self.client.describe_endpoint(EndpointName=request["EndpointName"])
        serving = self.client.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        new = self.client.describe_endpoint_config(EndpointConfigName=request["EndpointConfigName"])
        new_types = {variant["VariantName"]: variant["InstanceType"] for variant in new["ProductionVariants"]}
        autoscaling = boto3.client("application-autoscaling", region_name=REGION)
        for variant in serving["ProductionVariants"]:
            target = f"endpoint/{request['EndpointName']}/variant/{variant['VariantName']}"
            registered = autoscaling.describe_scalable_targets(ServiceNamespace=NAMESPACE, ResourceIds=[target])
            if registered["ScalableTargets"] and new_types.get(variant["VariantName"]) != variant["InstanceType"]:
                raise _refusal("ValidationException", f"{target} is a target for auto scaling", "update_endpoint")


@dataclasses.dataclass
class Account:
    sagemaker: RecordingGateway
    autoscaling: RecordingGateway
    log: list[str]
    settings: Settings

    def with_settings(self, **changes: Any) -> Account:
        return dataclasses.replace(self, settings=dataclasses.replace(self.settings, **changes))

    def serve_old_model(self, instance_type: str = "ml.m5.large") -> None:
        """An endpoint on OLD, as an earlier run left it."""
        client = self.sagemaker.client
        client.create_model(ModelName=OLD, ExecutionRoleArn=ROLE_ARN, PrimaryContainer={"Image": INFERENCE_IMAGE})
        client.create_endpoint_config(
            EndpointConfigName=OLD,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": OLD,
                    "InitialInstanceCount": 1,
                    "InstanceType": instance_type,
                }
            ],
        )
        client.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=OLD)

    def register_as_before(self) -> None:
        """The target and policy an earlier run's EndpointStatus registered."""
        scaling_module.ensure_autoscaling(self.autoscaling, scaling_from(self.settings))
        self.log.clear()

    def deploy(self) -> dict[str, Any]:
        event = load_event("deploy_endpoint_after_rules")
        return deploy_endpoint.deploy_endpoint(
            Dataset.model_validate(event["dataset"]),
            Training.model_validate(event["training"]),
            self.settings,
            self.sagemaker,
            self.autoscaling,
        )

    def poll(self, deployment: dict[str, Any]) -> dict[str, Any]:
        return endpoint_status.check_endpoint(
            Deployment.model_validate(deployment), self.settings, self.sagemaker, self.autoscaling
        )

    def target(self) -> dict[str, Any] | None:
        targets = self.autoscaling.client.describe_scalable_targets(ServiceNamespace=NAMESPACE, ResourceIds=[TARGET])
        found = targets["ScalableTargets"]
        return found[0] if found else None

    def policies(self) -> list[dict[str, Any]]:
        client = self.autoscaling.client
        return list(client.describe_scaling_policies(ServiceNamespace=NAMESPACE, ResourceId=TARGET)["ScalingPolicies"])

    def roll_back_to_old(self, sagemaker_backend: Any) -> None:
        """What SageMaker does when an alarm fires during the bake: InService again on the old config."""
        endpoint = sagemaker_backend.endpoints[ENDPOINT]
        config = sagemaker_backend.describe_endpoint_config(OLD)
        endpoint.endpoint_config_name = OLD
        endpoint.production_variants = endpoint._process_production_variants(config["ProductionVariants"])
        endpoint.endpoint_status = "InService"


@pytest.fixture
def trained(sagemaker_backend: Any, pipeline_env: Path, lambda_context: Any) -> None:
    start_training.lambda_handler(load_event("start_training_best_trial"), lambda_context)


@pytest.fixture
def account(trained: None, settings: Settings) -> Account:
    log: list[str] = []
    return Account(
        sagemaker=RecordingGateway(boto3.client("sagemaker", region_name=REGION), log),
        autoscaling=RecordingGateway(boto3.client("application-autoscaling", region_name=REGION), log),
        log=log,
        settings=dataclasses.replace(settings, endpoint_max_instance_count=4),
    )


# -- across deployments, on moto ------------------------------------------------------------------------------------


def test_first_deployment_registers_the_target_and_its_policy_once_in_service(
    trained: None, monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    # GIVEN autoscaling between 1 and 3 instances, through the template's variables and the real handlers
    monkeypatch.setenv("ENDPOINT_MAX_INSTANCE_COUNT", "3")
    monkeypatch.setenv("TARGET_INVOCATIONS_PER_INSTANCE", "450")
    monkeypatch.setenv("SCALE_IN_COOLDOWN_SECONDS", "900")
    monkeypatch.setenv("SCALE_OUT_COOLDOWN_SECONDS", "120")
    autoscaling = boto3.client("application-autoscaling", region_name=REGION)

    # WHEN DeployEndpoint creates the endpoint
    deployment = deploy_endpoint.lambda_handler(load_event("deploy_endpoint_after_rules"), lambda_context)

    # THEN nothing is registered yet (the variant is not live), and the config starts the minimum
    assert deployment["action"] == "create"
    assert deployment["autoscaling"]["initial_instance_count"] == 1
    assert autoscaling.describe_scalable_targets(ServiceNamespace=NAMESPACE)["ScalableTargets"] == []

    # WHEN EndpointStatus sees it InService
    status = endpoint_status.lambda_handler({"deployment": deployment, "execution_name": "run-1"}, lambda_context)

    # THEN the variant is a target between 1 and 3, tracking 450 invocations a minute per instance
    assert status["done"] is True
    assert status["autoscaling"]["action"] == "registered"
    (target,) = autoscaling.describe_scalable_targets(ServiceNamespace=NAMESPACE)["ScalableTargets"]
    assert (target["ResourceId"], target["ScalableDimension"]) == (TARGET, DIMENSION)
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 3)
    (policy,) = autoscaling.describe_scaling_policies(ServiceNamespace=NAMESPACE, ResourceId=TARGET)["ScalingPolicies"]
    assert (policy["PolicyName"], policy["PolicyType"]) == (POLICY, "TargetTrackingScaling")
    assert policy["TargetTrackingScalingPolicyConfiguration"] == {
        "TargetValue": 450.0,
        "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
        "ScaleInCooldown": 900,
        "ScaleOutCooldown": 120,
        "DisableScaleIn": False,
    }
    # AND a second look (a retried state) changes nothing
    again = endpoint_status.lambda_handler({"deployment": deployment, "execution_name": "run-1"}, lambda_context)
    assert again["autoscaling"]["action"] == "kept"


def test_model_only_update_keeps_the_target_and_the_policy(account: Account) -> None:
    # GIVEN the old model serving on ml.m5.large, autoscaled
    account.serve_old_model()
    account.register_as_before()
    target, (policy,) = account.target(), account.policies()

    # WHEN a new model on the same instance type is deployed and comes up
    deployment = account.deploy()
    status = account.poll(deployment)

    # THEN the update ran under the registered target: nothing was deregistered, registered or put again
    assert deployment["action"] == "update"
    assert deployment["autoscaling"]["deregistered"] == []
    assert "update_endpoint" in account.log
    assert WRITES.isdisjoint(account.log), account.log
    assert (status["done"], status["autoscaling"]["action"]) == (True, "kept")
    # AND it is the same target (same ARN, same resource) with the same policy
    assert account.target() == target
    assert account.policies() == [policy]


def test_instance_type_change_deregisters_before_the_update_and_registers_after(account: Account) -> None:
    # GIVEN the old model autoscaled on ml.m5.large, and a template that now asks for ml.c5.large
    account.serve_old_model("ml.m5.large")
    account.register_as_before()
    account = account.with_settings(endpoint_instance_type="ml.c5.large")

    # WHEN the new model is deployed
    deployment = account.deploy()

    # THEN the policy was deleted, then the target deregistered, and only then UpdateEndpoint was called
    log = account.log
    assert log.index("delete_scaling_policy") < log.index("deregister_scalable_target") < log.index("update_endpoint")
    assert "register_scalable_target" not in log
    assert deployment["autoscaling"]["deregistered"] == [TARGET]
    assert account.target() is None
    config = account.sagemaker.client.describe_endpoint_config(EndpointConfigName=NEW)
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.c5.large"

    # WHEN EndpointStatus sees the new fleet InService
    status = account.poll(deployment)

    # THEN the target and its policy are registered again, after the update
    assert log.index("update_endpoint") < log.index("register_scalable_target") < log.index("put_scaling_policy")
    assert status["autoscaling"]["action"] == "registered"
    target = account.target()
    assert target is not None and (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    assert [policy["PolicyName"] for policy in account.policies()] == [POLICY]


def test_without_deregistering_sagemaker_would_refuse_the_instance_type_change(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rule RecordingGateway applies is what makes the order matter: skip the deregistration, and it refuses.
    account.serve_old_model("ml.m5.large")
    account.register_as_before()
    account = account.with_settings(endpoint_instance_type="ml.c5.large")
    monkeypatch.setattr(deploy_endpoint, "deregister_targets", lambda autoscaling, resource_ids: None)

    with pytest.raises(ClientError, match="is a target for auto scaling"):
        account.deploy()


def test_rollback_after_an_instance_type_change_leaves_a_valid_target(account: Account, sagemaker_backend: Any) -> None:
    # GIVEN an instance-type change under way (the target deregistered before UpdateEndpoint)
    account.serve_old_model("ml.m5.large")
    account.register_as_before()
    account = account.with_settings(endpoint_instance_type="ml.c5.large")
    deployment = account.deploy()
    assert account.target() is None
    # AND an alarm rolls it back: the old fleet serves again
    account.roll_back_to_old(sagemaker_backend)

    # WHEN EndpointStatus polls
    with pytest.raises(DeploymentRolledBack, match=f"serves {OLD} again"):
        account.poll(deployment)

    # THEN the variant that serves is a target again, with its policy
    target = account.target()
    assert target is not None and (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    variants = account.sagemaker.client.describe_endpoint(EndpointName=ENDPOINT)["ProductionVariants"]
    assert [f"endpoint/{ENDPOINT}/variant/{variant['VariantName']}" for variant in variants] == [TARGET]
    assert [policy["PolicyName"] for policy in account.policies()] == [POLICY]


def test_rollback_after_a_model_only_update_keeps_the_target_untouched(
    account: Account, sagemaker_backend: Any
) -> None:
    account.serve_old_model()
    account.register_as_before()
    target, policies = account.target(), account.policies()
    deployment = account.deploy()
    account.roll_back_to_old(sagemaker_backend)

    with pytest.raises(DeploymentRolledBack):
        account.poll(deployment)

    assert WRITES.isdisjoint(account.log), account.log
    assert (account.target(), account.policies()) == (target, policies)


def test_a_scaled_out_fleet_keeps_its_size_through_the_update(account: Account) -> None:
    # GIVEN autoscaling took the serving fleet to 3 instances
    account.serve_old_model()
    account.register_as_before()
    account.sagemaker.client.update_endpoint_weights_and_capacities(
        EndpointName=ENDPOINT, DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 3}]
    )

    # WHEN the new model is deployed
    deployment = account.deploy()

    # THEN the new fleet starts with 3, and AUTO shifts traffic as for 3 instances (a one-instance canary)
    config = account.sagemaker.client.describe_endpoint_config(EndpointConfigName=NEW)
    assert config["ProductionVariants"][0]["InitialInstanceCount"] == 3
    assert deployment["autoscaling"]["initial_instance_count"] == 3
    assert (deployment["deployment_config"]["strategy"], deployment["deployment_config"]["instance_count"]) == (
        "CANARY",
        3,
    )


def test_turning_autoscaling_off_deregisters_the_target_and_does_not_register_it_again(account: Account) -> None:
    account.serve_old_model()
    account.register_as_before()
    account = account.with_settings(endpoint_max_instance_count=0)

    deployment = account.deploy()
    status = account.poll(deployment)

    assert account.log.index("deregister_scalable_target") < account.log.index("update_endpoint")
    assert deployment["autoscaling"] == {"enabled": False, "initial_instance_count": 1, "deregistered": [TARGET]}
    assert status["autoscaling"] == {"enabled": False}
    assert account.target() is None
    assert "register_scalable_target" not in account.log


def test_a_refused_update_gives_the_old_fleet_its_target_back(account: Account) -> None:
    # GIVEN an instance-type change, and SageMaker refusing the UpdateEndpoint (no quota for the new type)
    account.serve_old_model("ml.m5.large")
    account.register_as_before()
    account = account.with_settings(endpoint_instance_type="ml.c5.large")
    account.sagemaker.refuse = "update_endpoint"

    with pytest.raises(ClientError, match="ResourceLimitExceeded"):
        account.deploy()

    # THEN the target was deregistered for the update, and registered again once it was refused
    log = account.log
    assert (
        log.index("deregister_scalable_target") < log.index("update_endpoint") < log.index("register_scalable_target")
    )
    assert account.target() is not None
    assert [policy["PolicyName"] for policy in account.policies()] == [POLICY]


def test_a_target_left_by_a_deleted_endpoint_is_deregistered_before_the_endpoint_is_created(account: Account) -> None:
    # GIVEN a target from an endpoint of the same name that was deleted by someone who could not deregister it
    account.autoscaling.client.register_scalable_target(
        ServiceNamespace=NAMESPACE, ResourceId=TARGET, ScalableDimension=DIMENSION, MinCapacity=2, MaxCapacity=9
    )

    deployment = account.deploy()
    assert deployment["autoscaling"]["deregistered"] == [TARGET]
    assert account.log.index("deregister_scalable_target") < account.log.index("create_endpoint")

    account.poll(deployment)
    target = account.target()
    assert target is not None and (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)


def test_a_maximum_below_the_minimum_is_refused_before_anything_is_created(account: Account) -> None:
    account = account.with_settings(endpoint_instance_count=3, endpoint_max_instance_count=2)

    with pytest.raises(DeploymentFailed, match="ENDPOINT_MAX_INSTANCE_COUNT is 2, below ENDPOINT_INSTANCE_COUNT 3"):
        account.deploy()

    assert [name for name in account.log if name.startswith("create")] == []


# -- the pure decisions ---------------------------------------------------------------------------------------------


def _scaling(minimum: int = 1, maximum: int = 4) -> Scaling:
    return Scaling(ENDPOINT, "AllTraffic", minimum, maximum, 600.0, 600, 300)


@pytest.mark.parametrize(("maximum", "enabled", "effective"), [(0, False, 2), (2, False, 2), (5, True, 5)])
def test_zero_or_the_minimum_is_off(settings: Settings, maximum: int, enabled: bool, effective: int) -> None:
    scaling = scaling_from(
        dataclasses.replace(settings, endpoint_instance_count=2, endpoint_max_instance_count=maximum)
    )
    assert (scaling.enabled, scaling.max_instances) == (enabled, effective)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"target_invocations_per_instance": 0.0}, "TARGET_INVOCATIONS_PER_INSTANCE must be above 0"),
        ({"scale_in_cooldown_seconds": -1}, "SCALE_IN_COOLDOWN_SECONDS must be 0 or more"),
        ({"scale_out_cooldown_seconds": -5}, "SCALE_OUT_COOLDOWN_SECONDS must be 0 or more"),
    ],
)
def test_impossible_settings_are_refused(settings: Settings, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(DeploymentFailed, match=message):
        scaling_from(dataclasses.replace(settings, endpoint_max_instance_count=3, **changes))


def _endpoint(desired: int | None) -> dict[str, Any]:
    variant: dict[str, Any] = {"VariantName": "AllTraffic"}
    if desired is not None:
        variant["DesiredInstanceCount"] = desired
    return {"ProductionVariants": [variant]}


@pytest.mark.parametrize(
    ("scaling", "endpoint", "count"),
    [
        (_scaling(2, 6), None, 2),  # a new endpoint starts the minimum
        (_scaling(2, 6), _endpoint(5), 5),  # a scaled-out fleet keeps its size
        (_scaling(2, 6), _endpoint(9), 6),  # a fleet above a lowered maximum starts at the maximum
        (_scaling(2, 6), _endpoint(1), 2),  # one below a raised minimum starts at the minimum
        (_scaling(2, 6), _endpoint(None), 2),  # a variant that reports no count
        (_scaling(2, 2), _endpoint(5), 2),  # off: the template's fixed count
    ],
)
def test_initial_instance_count(scaling: Scaling, endpoint: dict[str, Any] | None, count: int) -> None:
    assert initial_instance_count(scaling, endpoint) == count


OTHER = f"endpoint/{ENDPOINT}/variant/Blue"


@pytest.mark.parametrize(
    ("scaling", "registered", "serving", "deregistered"),
    [
        (_scaling(), [TARGET], {"AllTraffic": "ml.m5.large"}, []),  # model-only update: kept
        (_scaling(), [TARGET], {"AllTraffic": "ml.c5.large"}, [TARGET]),  # instance type changes
        (_scaling(), [OTHER], {"Blue": "ml.m5.large"}, [OTHER]),  # a variant the new config does not have
        (_scaling(1, 1), [TARGET], {"AllTraffic": "ml.m5.large"}, [TARGET]),  # autoscaling turned off
        (_scaling(), [TARGET], {}, [TARGET]),  # no endpoint: a leftover
        (_scaling(), [], {"AllTraffic": "ml.m5.large"}, []),  # nothing registered
    ],
)
def test_which_targets_go_before_the_update(
    scaling: Scaling, registered: list[str], serving: dict[str, str], deregistered: list[str]
) -> None:
    assert targets_to_deregister(scaling, registered, serving, "ml.m5.large") == deregistered


def _policy(**configuration: Any) -> dict[str, Any]:
    body = scaling_module.policy_configuration(_scaling()) | configuration
    return {
        "PolicyName": POLICY,
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": body,
    }


@pytest.mark.parametrize(
    ("target", "policy", "calls"),
    [
        (None, None, ["register_scalable_target", "put_scaling_policy"]),
        ({"MinCapacity": 1, "MaxCapacity": 4}, _policy(), []),
        ({"MinCapacity": 1, "MaxCapacity": 8}, _policy(), ["register_scalable_target"]),
        ({"MinCapacity": 1, "MaxCapacity": 4}, _policy(TargetValue=70.0), ["put_scaling_policy"]),
        ({"MinCapacity": 1, "MaxCapacity": 4}, None, ["put_scaling_policy"]),
        (None, _policy(), ["register_scalable_target", "put_scaling_policy"]),  # a policy cannot outlive its target
    ],
)
def test_registration_repeats_only_what_differs(
    target: dict[str, Any] | None, policy: dict[str, Any] | None, calls: list[str]
) -> None:
    assert registration_calls(_scaling(), target, policy) == calls


def test_no_registration_when_off() -> None:
    assert registration_calls(_scaling(3, 3), None, None) == []


@pytest.mark.parametrize(
    ("operation", "request_body"),
    [("register_scalable_target", register_request(_scaling())), ("put_scaling_policy", policy_request(_scaling()))],
)
def test_requests_pass_the_service_model(operation: str, request_body: dict[str, Any]) -> None:
    validate_parameters(request_body, operation_model("application-autoscaling", operation).input_shape)
    assert request_problems("application-autoscaling", operation, request_body) == []


def test_a_misspelt_metric_is_caught_before_aws_sees_it() -> None:
    # botocore does not check enums; the gateway's own check does.
    request = policy_request(_scaling())
    request["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"] = {
        "PredefinedMetricType": "SageMakerInvocationsPerInstance"
    }
    (problem,) = request_problems("application-autoscaling", "put_scaling_policy", request)
    assert "PredefinedMetricType: 'SageMakerInvocationsPerInstance' is not one of" in problem
