"""Endpoint autoscaling through the real state machine: the first run registers the target once the endpoint is
InService, a later model-only run keeps it (same target, same policy), and a rolled-back run leaves it valid."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from state_machine_harness import REGION, TEMPLATE_PARAMETERS, Pipeline, assert_failed_in

AUTOSCALED = TEMPLATE_PARAMETERS | {"EndpointMaxInstanceCount": "3", "TargetInvocationsPerInstance": "300"}


def _autoscaling(pipeline: Pipeline) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The endpoint variant's scalable targets and scaling policies, as Application Auto Scaling holds them."""
    client = boto3.client("application-autoscaling", region_name=REGION)
    resource = f"endpoint/{pipeline.endpoint_name}/variant/AllTraffic"
    targets = client.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])
    policies = client.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource)
    return targets["ScalableTargets"], policies["ScalingPolicies"]


@pytest.mark.parametrize("template_parameters", [AUTOSCALED], ids=["autoscaled"], indirect=True)
def test_the_target_is_registered_by_the_first_run_and_kept_by_updates_and_rollbacks(
    pipeline: Pipeline, dataset_zip: bytes
) -> None:
    # WHEN a first run creates the endpoint
    first = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)

    # THEN once it was InService its variant became a target between 1 and 3 instances, with the policy
    assert first.status == "SUCCEEDED", first.cause
    assert first.output is not None
    assert first.output["deployment"]["status"]["autoscaling"]["action"] == "registered"
    targets, policies = _autoscaling(pipeline)
    assert [(t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [(1, 3)]
    assert [p["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] for p in policies] == [300.0]

    # WHEN a second run deploys a new model on the same instance type (blue/green update)
    second = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)

    # THEN the update ran under the same target and policy, untouched
    assert second.status == "SUCCEEDED", second.cause
    assert second.output is not None
    assert second.output["deployment"]["action"] == "update"
    assert second.output["deployment"]["autoscaling"]["deregistered"] == []
    assert second.output["deployment"]["status"]["autoscaling"]["action"] == "kept"
    assert _autoscaling(pipeline) == (targets, policies)

    # WHEN a third run's model fails its health check and the update is rolled back
    pipeline.code.behave(model="broken")
    third = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)

    # THEN the run failed as a rollback, and the fleet serving again still has its target and policy
    assert (third.status, third.error) == ("FAILED", "DeploymentRolledBack"), third.cause
    assert_failed_in(third, "GetEndpointStatus")
    assert _autoscaling(pipeline) == (targets, policies)
