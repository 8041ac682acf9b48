"""Each function's IAM policy grants the AWS actions its handler code calls, and no SageMaker/SNS/CloudWatch more.

A missing permission is the failure no offline run can show (moto does not enforce IAM), so the AWS calls are read
from the handler's source and the modules of the package it imports, then mapped to IAM actions.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name
from template_loading import REPO_ROOT, load_sam_template, policy_statements

PIPELINE_DIR = REPO_ROOT / "functions" / "pipeline"

# S3 reads also need s3:ListBucket: without it a missing key answers 403 AccessDenied instead of 404/NoSuchKey,
# and the handlers treat absence as a normal case.
S3_ACTIONS = {
    "head_object": {"s3:GetObject", "s3:ListBucket"},
    "get_object": {"s3:GetObject", "s3:ListBucket"},
    "put_object": {"s3:PutObject"},
    "list_objects_v2": {"s3:ListBucket"},
    # The managed copy: HeadObject, then CopyObject or a multipart copy; a tagged source copies its tags.
    "copy": {"s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:PutObject", "s3:PutObjectTagging"},
}
# Reads that may name a VersionId (a keyword, or **params of unknown keys) are authorised as s3:GetObjectVersion.
S3_VERSIONED_READS = {"head_object", "get_object"}
SNS_ACTIONS = {"publish": {"sns:Publish"}}
# SageMaker calls that need more than their own action.
PASSES_THE_ROLE = {"CreateHyperParameterTuningJob", "CreateTrainingJob", "CreateModel"}
READS_ROLLBACK_ALARMS = {"UpdateEndpoint", "CreateEndpoint"}
# Application Auto Scaling checks that its caller could act on the target itself (its "Permissions validation":
# "the API caller has permissions to access AWS resources in the target service and in CloudWatch"; SageMaker's
# "Auto scaling prerequisites" lists these actions), and the first registration creates its service-linked role.
AUTOSCALING_CHECKS_THE_CALLER_FOR = {
    "RegisterScalableTarget": {
        "iam:CreateServiceLinkedRole",
        "sagemaker:DescribeEndpoint",
        "sagemaker:DescribeEndpointConfig",
        "sagemaker:UpdateEndpointWeightsAndCapacities",
    },
    "PutScalingPolicy": {"cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms"},
    "DeleteScalingPolicy": {"cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms"},
    "DeregisterScalableTarget": {"cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms"},
}
CHECKED_SERVICES = ("sagemaker:", "sns:", "cloudwatch:", "iam:", "lambda:", "application-autoscaling:")


@functools.cache
def _sagemaker_operations() -> dict[str, str]:
    model = botocore.session.get_session().get_service_model("sagemaker")
    return {xform_name(name): name for name in model.operation_names}


@functools.cache
def _autoscaling_operations() -> dict[str, str]:
    model = botocore.session.get_session().get_service_model("application-autoscaling")
    return {xform_name(name): name for name in model.operation_names}


def _imported_pipeline_modules(path: Path, seen: set[Path]) -> set[Path]:
    """``path`` and every module of the pipeline package it imports, transitively."""
    if path in seen:
        return seen
    seen.add(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
            module_path = REPO_ROOT / "functions" / Path(*node.module.split("."))
            for candidate in (module_path.with_suffix(".py"), module_path / "__init__.py"):
                if candidate.exists():
                    _imported_pipeline_modules(candidate, seen)
    return seen


@functools.cache
def aws_actions_called_by(handler_module: Path) -> set[str]:
    sagemaker_operations = _sagemaker_operations()
    autoscaling_operations = _autoscaling_operations()
    actions: set[str] = set()
    for path in _imported_pipeline_modules(handler_module, set()):
        for node in ast.walk(ast.parse(path.read_text())):
            # SageMaker goes through SageMakerGateway.call("operation", ...), sometimes via a helper's argument:
            # any string that is a SageMaker operation name counts as a call.
            if isinstance(node, ast.Constant) and node.value in sagemaker_operations:
                actions.add(f"sagemaker:{sagemaker_operations[node.value]}")
            # Application Auto Scaling goes through the same gateway, over its own client.
            if isinstance(node, ast.Constant) and node.value in autoscaling_operations:
                actions.add(f"application-autoscaling:{autoscaling_operations[node.value]}")
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            method = node.func.attr
            first = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
            if method == "get_paginator" and first in S3_ACTIONS:
                actions |= S3_ACTIONS[first]
            elif method == "copy" and len(node.args) < 3:
                continue  # dict.copy(), not the S3 managed copy (source, bucket, key)
            elif method in S3_ACTIONS:
                actions |= S3_ACTIONS[method]
                if method in S3_VERSIONED_READS and any(kw.arg in ("VersionId", None) for kw in node.keywords):
                    actions.add("s3:GetObjectVersion")
            elif method in SNS_ACTIONS:
                actions |= SNS_ACTIONS[method]
    operations = {action.split(":", 1)[1] for action in actions if action.startswith("sagemaker:")}
    if operations & PASSES_THE_ROLE:
        actions.add("iam:PassRole")
    if any(name.startswith("Create") for name in operations):
        actions.add("sagemaker:AddTags")  # creating with Tags is authorised as AddTags too
    if operations & READS_ROLLBACK_ALARMS:
        actions.add("cloudwatch:DescribeAlarms")  # SageMaker reads the rollback alarms as the caller
    for action in [action for action in actions if action.startswith("application-autoscaling:")]:
        actions |= AUTOSCALING_CHECKS_THE_CALLER_FOR.get(action.split(":", 1)[1], set())
    return actions


def conditional_statements(function: dict[str, Any], condition: str) -> list[dict[str, Any]]:
    return [
        statement["Fn::If"][1]
        for policy in function["Properties"].get("Policies", [])
        for statement in policy["Statement"]
        if statement.get("Fn::If", [None])[0] == condition
    ]


def _actions(statement: dict[str, Any]) -> set[str]:
    actions = statement["Action"]
    return set(actions if isinstance(actions, list) else [actions])


def granted_actions(function: dict[str, Any]) -> set[str]:
    granted = set()
    for statement in policy_statements(function):
        assert statement["Effect"] == "Allow"
        granted |= _actions(statement)
    return granted


def _function_cases() -> list[Any]:
    resources = load_sam_template()["Resources"]
    return [
        pytest.param(name, resource, id=name)
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::Function"
    ]


def _handler_path(function: dict[str, Any]) -> Path:
    module = function["Properties"]["Handler"].rpartition(".")[0]
    return REPO_ROOT / "functions" / Path(*module.split(".")).with_suffix(".py")


def test_action_scan_finds_the_calls_of_a_known_handler() -> None:
    # The scan is only as good as its patterns: DeployEndpoint is known to create and update the endpoint.
    actions = aws_actions_called_by(PIPELINE_DIR / "deploy_endpoint.py")
    assert {"sagemaker:CreateModel", "sagemaker:UpdateEndpoint", "iam:PassRole"} <= actions


@pytest.mark.parametrize(("name", "function"), _function_cases())
def test_function_may_do_what_its_code_calls(name: str, function: dict[str, Any]) -> None:
    handler = _handler_path(function)
    if not handler.exists():
        pytest.skip(f"{handler.relative_to(REPO_ROOT)} is not written yet")
    missing = aws_actions_called_by(handler) - granted_actions(function)
    assert missing == set(), f"{name} calls AWS actions its policy does not grant"


@pytest.mark.parametrize(("name", "function"), _function_cases())
def test_function_is_granted_no_service_action_its_code_never_calls(name: str, function: dict[str, Any]) -> None:
    handler = _handler_path(function)
    if not handler.exists():
        pytest.skip(f"{handler.relative_to(REPO_ROOT)} is not written yet")
    granted = {action for action in granted_actions(function) if action.startswith(CHECKED_SERVICES)}
    unused = granted - aws_actions_called_by(handler)
    assert unused == set(), f"{name} is granted actions its code never calls"


@pytest.mark.parametrize(("name", "function"), _function_cases())
def test_pass_role_is_only_for_the_sagemaker_role_and_only_to_sagemaker(name: str, function: dict[str, Any]) -> None:
    for statement in policy_statements(function):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if "iam:PassRole" in actions:
            assert actions == ["iam:PassRole"]
            assert statement["Resource"] == {"Fn::GetAtt": ["SageMakerExecutionRole", "Arn"]}
            assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}, name


# With KmsKeyArn set, a function gets the key only through the services it uses, and only the actions each use needs:
# reading SSE-KMS objects decrypts their data key, writing (multipart and copies included) also generates one; the
# table's key is decrypted through DynamoDB; publishing to the encrypted topic generates and decrypts a data key
# (the topic had an AWS-managed key before, so that statement names KmsKeyArn or the account's keys); creating jobs
# and endpoints with a volume key lets SageMaker create grants as the caller.
SAGEMAKER_CALLS_WITH_A_VOLUME_KEY = {
    "sagemaker:CreateHyperParameterTuningJob",
    "sagemaker:CreateTrainingJob",
    "sagemaker:CreateEndpointConfig",
    "sagemaker:CreateEndpoint",
    "sagemaker:UpdateEndpoint",
}
THE_KEY = {"Ref": "KmsKeyArn"}
THE_KEY_OR_THE_SNS_MANAGED_ONE = {
    "Fn::If": ["HasKmsKey", THE_KEY, {"Fn::Sub": "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*"}]
}


def kms_needs(actions: set[str], *, dead_letter_queue: bool = False) -> dict[str, set[str]]:
    """The kms: actions a function needs on the customer-managed key, by the service it goes through."""
    needs: dict[str, set[str]] = {}
    if dead_letter_queue:
        needs["sqs"] = {"kms:Decrypt", "kms:GenerateDataKey"}
    if "s3:PutObject" in actions:
        needs["s3"] = {"kms:Decrypt", "kms:GenerateDataKey"}
    elif "s3:GetObject" in actions:
        needs["s3"] = {"kms:Decrypt"}
    if any(action.startswith("dynamodb:") for action in actions):
        needs["dynamodb"] = {"kms:Decrypt", "kms:DescribeKey"}
    if "sns:Publish" in actions:
        needs["sns"] = {"kms:Decrypt", "kms:GenerateDataKey*"}
    if actions & SAGEMAKER_CALLS_WITH_A_VOLUME_KEY:
        needs["sagemaker"] = {"kms:CreateGrant", "kms:DescribeKey"}
    return needs


def test_kms_needs_follow_the_services_a_function_uses() -> None:
    assert kms_needs({"s3:GetObject", "dynamodb:GetItem"}) == {
        "s3": {"kms:Decrypt"},
        "dynamodb": {"kms:Decrypt", "kms:DescribeKey"},
    }
    assert kms_needs({"s3:PutObject", "sagemaker:CreateTrainingJob"}) == {
        "s3": {"kms:Decrypt", "kms:GenerateDataKey"},
        "sagemaker": {"kms:CreateGrant", "kms:DescribeKey"},
    }
    assert kms_needs({"sagemaker:DescribeTrainingJob"}) == {}


@pytest.mark.parametrize(("name", "function"), _function_cases())
def test_with_a_customer_key_a_function_gets_exactly_the_kms_actions_it_needs(
    name: str, function: dict[str, Any]
) -> None:
    conditional = conditional_statements(function, "HasKmsKey")
    granted: dict[str, set[str]] = {}
    for statement in policy_statements(function):
        actions = _actions(statement)
        if not any(action.startswith("kms:") for action in actions):
            continue
        assert {action.partition(":")[0] for action in actions} == {"kms"}, name
        via = statement["Condition"]["StringEquals"]["kms:ViaService"]["Fn::Sub"]
        service = via.removesuffix(".${AWS::Region}.${AWS::URLSuffix}")
        if service == "sns":
            assert statement["Resource"] == THE_KEY_OR_THE_SNS_MANAGED_ONE, name
        else:
            assert statement in conditional and statement["Resource"] == THE_KEY, f"{name}: only with KmsKeyArn"
        assert service not in granted, f"{name}: one statement per service"
        granted[service] = actions
    has_queue = function["Properties"].get("DeadLetterQueue", {}).get("Type") == "SQS"
    assert granted == kms_needs(granted_actions(function), dead_letter_queue=has_queue), name
