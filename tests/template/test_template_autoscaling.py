"""Endpoint autoscaling in the template: its parameters reach the functions, and its grants are as narrow as
Application Auto Scaling allows, leaving the rollback alarms to the rollback."""

from __future__ import annotations

from typing import Any

import pytest
from template_loading import load_sam_template, policy_statements

SCALABLE_TARGETS = {
    "Fn::Sub": "arn:${AWS::Partition}:application-autoscaling:${AWS::Region}:${AWS::AccountId}:scalable-target/*"
}
TARGET_TRACKING_ALARMS = {
    "Fn::Sub": "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:"
    "TargetTracking-endpoint/${EndpointName}/variant/*"
}
SERVICE_LINKED_ROLE = {
    "Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/aws-service-role/"
    "sagemaker.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
}
DESCRIBES = {"application-autoscaling:DescribeScalableTargets", "application-autoscaling:DescribeScalingPolicies"}
POLICY_WRITES = {"application-autoscaling:PutScalingPolicy", "application-autoscaling:DeleteScalingPolicy"}
ALARM_WRITES = {"cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"}
THE_ENDPOINT = {"Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/${EndpointName}"}


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    resources: dict[str, Any] = load_sam_template()["Resources"]
    return resources


def _actions(statement: dict[str, Any]) -> set[str]:
    actions = statement["Action"]
    return set(actions if isinstance(actions, list) else [actions])


def _functions(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}


def test_the_parameters_reach_every_function_and_default_to_off() -> None:
    template = load_sam_template()
    parameters = template["Parameters"]
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    for parameter, variable in {
        "EndpointMaxInstanceCount": "ENDPOINT_MAX_INSTANCE_COUNT",
        "TargetInvocationsPerInstance": "TARGET_INVOCATIONS_PER_INSTANCE",
        "ScaleInCooldownSeconds": "SCALE_IN_COOLDOWN_SECONDS",
        "ScaleOutCooldownSeconds": "SCALE_OUT_COOLDOWN_SECONDS",
    }.items():
        assert parameters[parameter]["Type"] == "Number"
        assert variables[variable] == {"Ref": parameter}
    assert (parameters["EndpointMaxInstanceCount"]["Default"], parameters["EndpointMaxInstanceCount"]["MinValue"]) == (
        0,
        0,
    )
    assert parameters["TargetInvocationsPerInstance"]["MinValue"] > 0
    for cooldown in ("ScaleInCooldownSeconds", "ScaleOutCooldownSeconds"):
        assert parameters[cooldown]["MinValue"] == 0


def test_only_the_deploy_and_status_functions_manage_autoscaling_and_only_deploy_deregisters(
    resources: dict[str, Any],
) -> None:
    managing = {}
    for name, function in _functions(resources).items():
        actions = {a for s in policy_statements(function) for a in _actions(s) if a.startswith("application-auto")}
        if actions:
            managing[name] = actions
    writes = {"application-autoscaling:RegisterScalableTarget", "application-autoscaling:PutScalingPolicy"}
    assert managing == {
        "DeployEndpointFunction": DESCRIBES
        | writes
        | {"application-autoscaling:DeregisterScalableTarget", "application-autoscaling:DeleteScalingPolicy"},
        "EndpointStatusFunction": DESCRIBES | writes,
    }


@pytest.mark.parametrize("name", ["DeployEndpointFunction", "EndpointStatusFunction"])
def test_autoscaling_grants_are_as_narrow_as_the_service_allows(resources: dict[str, Any], name: str) -> None:
    for statement in policy_statements(resources[name]):
        actions = _actions(statement)
        autoscaling = {action for action in actions if action.startswith("application-autoscaling:")}
        if not autoscaling:
            continue
        assert autoscaling == actions, f"{name}: autoscaling actions share no statement with others"
        if actions <= DESCRIBES:
            assert statement["Resource"] == "*"  # the Describe calls have no resource-level permissions
            continue
        # Writes: this account's targets in this region, never "*"; policies only in SageMaker's namespace.
        assert statement["Resource"] == SCALABLE_TARGETS, name
        if actions & POLICY_WRITES:
            assert actions <= POLICY_WRITES
            assert statement["Condition"] == {
                "StringEquals": {"application-autoscaling:service-namespace": "sagemaker"}
            }
        else:
            assert "Condition" not in statement


@pytest.mark.parametrize("name", ["DeployEndpointFunction", "EndpointStatusFunction"])
def test_only_autoscalings_own_role_may_be_created(resources: dict[str, Any], name: str) -> None:
    (statement,) = [s for s in policy_statements(resources[name]) if "iam:CreateServiceLinkedRole" in _actions(s)]
    assert _actions(statement) == {"iam:CreateServiceLinkedRole"}
    assert statement["Resource"] == SERVICE_LINKED_ROLE
    assert statement["Condition"] == {
        "StringEquals": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}
    }


def test_capacity_changes_are_granted_on_the_endpoint_only_for_autoscalings_check(resources: dict[str, Any]) -> None:
    for name, function in _functions(resources).items():
        for statement in policy_statements(function):
            if "sagemaker:UpdateEndpointWeightsAndCapacities" in _actions(statement):
                assert name in {"DeployEndpointFunction", "EndpointStatusFunction"}
                assert THE_ENDPOINT in statement["Resource"]


def test_no_function_may_change_any_alarm_but_the_endpoints_target_tracking_ones(resources: dict[str, Any]) -> None:
    # The rollback alarms are the template's: autoscaling neither replaces nor deletes them.
    for name, function in _functions(resources).items():
        for statement in policy_statements(function):
            if _actions(statement) & ALARM_WRITES:
                assert statement["Resource"] == TARGET_TRACKING_ALARMS, name
