"""Endpoint autoscaling: target tracking on SageMakerVariantInvocationsPerInstance, kept across blue/green updates.

The scalable target (``endpoint/<name>/variant/AllTraffic``) and its policy are runtime resources, like the
endpoint itself. Their life across deployments follows SageMaker's rules ("Update endpoints that use auto
scaling"; research/mlops-anchors-wave2.md, section 4):

- A **model-only** update is allowed while the variant is a scalable target: the target and the policy are kept,
  untouched, through the update (auto scaling is only paused while the endpoint is Updating).
- An update that **changes the instance type** of a scaled variant, or **removes** (renames) it, is refused while
  the target is registered: DeployEndpoint deletes the policy and deregisters the target just before
  UpdateEndpoint (:func:`targets_to_deregister`), and EndpointStatus registers them again once the endpoint is
  InService (:func:`ensure_autoscaling`), on the new config or, after a rollback, on the old one.
- **Off** (``EndpointMaxInstanceCount`` 0 or equal to ``EndpointInstanceCount``): a target left from when it was on
  is deregistered before the next update, so the template's fixed count applies again.

A new endpoint config starts as many instances as the fleet has now (clamped to the range) where autoscaling is
on, so a blue/green update does not send a scaled-out fleet back to the minimum (:func:`initial_instance_count`).

Pure functions decide; :func:`ensure_autoscaling` and :func:`registered_targets` are the only AWS calls here
(through a :class:`SageMakerGateway` over the ``application-autoscaling`` client, which checks every request
against botocore's service model, enums included).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.common.clients import get_client
from pipeline.common.config import Settings
from pipeline.common.errors import DeploymentFailed
from pipeline.common.sagemaker_gateway import SageMakerGateway
from pipeline.common.sagemaker_requests import VARIANT_NAME

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"
POLICY_TYPE = "TargetTrackingScaling"
MAX_RESOURCE_IDS = 50  # DescribeScalableTargets takes at most 50 ResourceIds


@dataclass(frozen=True)
class Scaling:
    """What the template asks for: the variant's range and its target tracking policy."""

    endpoint: str
    variant: str
    min_instances: int
    max_instances: int
    target_invocations: float
    scale_in_cooldown: int
    scale_out_cooldown: int

    @property
    def enabled(self) -> bool:
        return self.max_instances > self.min_instances

    @property
    def resource_id(self) -> str:
        return resource_id(self.endpoint, self.variant)

    @property
    def policy_name(self) -> str:
        return f"{self.endpoint}-invocations-per-instance"

    def summary(self) -> dict[str, Any]:
        if not self.enabled:
            return {"enabled": False}
        return {
            "enabled": True,
            "resource_id": self.resource_id,
            "min_instances": self.min_instances,
            "max_instances": self.max_instances,
            "target_invocations_per_instance": self.target_invocations,
            "scale_in_cooldown_seconds": self.scale_in_cooldown,
            "scale_out_cooldown_seconds": self.scale_out_cooldown,
        }


def resource_id(endpoint: str, variant: str) -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


def scaling_from(settings: Settings) -> Scaling:
    """The autoscaling settings, checked: every refusal happens before DeployEndpoint creates anything."""
    minimum = settings.endpoint_instance_count
    maximum = settings.endpoint_max_instance_count or minimum
    if maximum < minimum:
        raise DeploymentFailed(
            f"ENDPOINT_MAX_INSTANCE_COUNT is {maximum}, below ENDPOINT_INSTANCE_COUNT {minimum} (the minimum). Set "
            "EndpointMaxInstanceCount above EndpointInstanceCount to scale, or to 0 (or equal) for a fixed count."
        )
    if not settings.target_invocations_per_instance > 0:
        raise DeploymentFailed(
            f"TARGET_INVOCATIONS_PER_INSTANCE must be above 0, got {settings.target_invocations_per_instance}."
        )
    for name, value in (
        ("SCALE_IN_COOLDOWN_SECONDS", settings.scale_in_cooldown_seconds),
        ("SCALE_OUT_COOLDOWN_SECONDS", settings.scale_out_cooldown_seconds),
    ):
        if value < 0:
            raise DeploymentFailed(f"{name} must be 0 or more, got {value}.")
    return Scaling(
        endpoint=settings.endpoint_name,
        variant=VARIANT_NAME,
        min_instances=minimum,
        max_instances=maximum,
        target_invocations=float(settings.target_invocations_per_instance),
        scale_in_cooldown=settings.scale_in_cooldown_seconds,
        scale_out_cooldown=settings.scale_out_cooldown_seconds,
    )


# -- pure decisions ----------------------------------------------------------------------------------------------------


def initial_instance_count(scaling: Scaling, endpoint: Mapping[str, Any] | None) -> int:
    """Instances the new endpoint config starts: the minimum, or with autoscaling on the fleet's current desired
    count (clamped to the range), so that a blue/green update keeps a scaled-out fleet's capacity."""
    if not scaling.enabled or endpoint is None:
        return scaling.min_instances
    for variant in endpoint.get("ProductionVariants") or []:
        if variant.get("VariantName") == scaling.variant:
            desired = variant.get("DesiredInstanceCount") or variant.get("CurrentInstanceCount")
            if desired:
                return min(max(int(desired), scaling.min_instances), scaling.max_instances)
    return scaling.min_instances


def targets_to_deregister(
    scaling: Scaling,
    registered: Sequence[str],
    serving_instance_types: Mapping[str, str],
    new_instance_type: str,
) -> list[str]:
    """The registered targets (resource IDs) that must go before UpdateEndpoint or CreateEndpoint.

    Only ours survives, and only when autoscaling stays on and its variant keeps its instance type: SageMaker allows
    a model change under a scalable target, and refuses an instance-type change or a variant's removal.
    ``serving_instance_types`` maps the serving config's variants to their instance types ({} when there is no
    endpoint, where any target left behind by an endpoint deleted earlier is stale).
    """
    kept = scaling.enabled and serving_instance_types.get(scaling.variant) == new_instance_type
    return [target for target in registered if not (kept and target == scaling.resource_id)]


def register_request(scaling: Scaling) -> dict[str, Any]:
    return {
        "ServiceNamespace": NAMESPACE,
        "ResourceId": scaling.resource_id,
        "ScalableDimension": DIMENSION,
        "MinCapacity": scaling.min_instances,
        "MaxCapacity": scaling.max_instances,
    }


def policy_configuration(scaling: Scaling) -> dict[str, Any]:
    return {
        "TargetValue": scaling.target_invocations,
        "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
        "ScaleInCooldown": scaling.scale_in_cooldown,
        "ScaleOutCooldown": scaling.scale_out_cooldown,
        "DisableScaleIn": False,
    }


def policy_request(scaling: Scaling) -> dict[str, Any]:
    return {
        "PolicyName": scaling.policy_name,
        "ServiceNamespace": NAMESPACE,
        "ResourceId": scaling.resource_id,
        "ScalableDimension": DIMENSION,
        "PolicyType": POLICY_TYPE,
        "TargetTrackingScalingPolicyConfiguration": policy_configuration(scaling),
    }


def registration_calls(
    scaling: Scaling, target: Mapping[str, Any] | None, policy: Mapping[str, Any] | None
) -> list[str]:
    """The calls that bring the described target and policy to what ``scaling`` asks for; [] keeps both as they are.

    RegisterScalableTarget and PutScalingPolicy are create-or-update, so a changed range or policy is one call.
    """
    if not scaling.enabled:
        return []
    calls = []
    if target is None or (target.get("MinCapacity"), target.get("MaxCapacity")) != (
        scaling.min_instances,
        scaling.max_instances,
    ):
        calls.append("register_scalable_target")
    current = (policy or {}).get("TargetTrackingScalingPolicyConfiguration") or {}
    # A policy cannot outlive its target (deregistering deletes it), so a new target always gets the policy put.
    if (
        target is None
        or policy is None
        or policy.get("PolicyType") != POLICY_TYPE
        or any(current.get(key) != value for key, value in policy_configuration(scaling).items())
    ):
        calls.append("put_scaling_policy")
    return calls


# -- AWS calls ---------------------------------------------------------------------------------------------------------


def autoscaling_gateway() -> SageMakerGateway:
    """The same checked, throttling-aware door as SageMaker's, over the Application Auto Scaling client."""
    return SageMakerGateway(get_client("application-autoscaling"))


def registered_targets(autoscaling: SageMakerGateway, resource_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The scalable targets registered for these resource IDs (the endpoint's variants), by resource ID."""
    found: dict[str, dict[str, Any]] = {}
    wanted = list(dict.fromkeys(resource_ids))
    for start in range(0, len(wanted), MAX_RESOURCE_IDS):
        for page in autoscaling.pages(
            "describe_scalable_targets",
            ServiceNamespace=NAMESPACE,
            ResourceIds=wanted[start : start + MAX_RESOURCE_IDS],
            ScalableDimension=DIMENSION,
        ):
            found |= {target["ResourceId"]: target for target in page.get("ScalableTargets", [])}
    return found


def scaling_policies(autoscaling: SageMakerGateway, target_resource_id: str) -> list[dict[str, Any]]:
    pages = autoscaling.pages(
        "describe_scaling_policies",
        ServiceNamespace=NAMESPACE,
        ResourceId=target_resource_id,
        ScalableDimension=DIMENSION,
    )
    return [policy for page in pages for policy in page.get("ScalingPolicies", [])]


def ensure_autoscaling(autoscaling: SageMakerGateway, scaling: Scaling) -> dict[str, Any]:
    """Registers the target and puts the policy where they are missing or differ; idempotent, so a retried state
    or a second poll repeats nothing. Called only with the endpoint InService (registration needs it)."""
    if not scaling.enabled:
        return scaling.summary()
    target = registered_targets(autoscaling, [scaling.resource_id]).get(scaling.resource_id)
    policy = next(
        (p for p in scaling_policies(autoscaling, scaling.resource_id) if p["PolicyName"] == scaling.policy_name),
        None,
    )
    calls = registration_calls(scaling, target, policy)
    if "register_scalable_target" in calls:
        autoscaling.call("register_scalable_target", **register_request(scaling))
    if "put_scaling_policy" in calls:
        autoscaling.call("put_scaling_policy", **policy_request(scaling))
    action = "registered" if target is None else ("updated" if calls else "kept")
    return scaling.summary() | {"action": action, "policy": scaling.policy_name}
