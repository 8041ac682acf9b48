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
from template_loading import REPO_ROOT, load_sam_template

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
CHECKED_SERVICES = ("sagemaker:", "sns:", "cloudwatch:", "iam:", "lambda:")


@functools.cache
def _sagemaker_operations() -> dict[str, str]:
    model = botocore.session.get_session().get_service_model("sagemaker")
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
    actions: set[str] = set()
    for path in _imported_pipeline_modules(handler_module, set()):
        for node in ast.walk(ast.parse(path.read_text())):
            # SageMaker goes through SageMakerGateway.call("operation", ...), sometimes via a helper's argument:
            # any string that is a SageMaker operation name counts as a call.
            if isinstance(node, ast.Constant) and node.value in sagemaker_operations:
                actions.add(f"sagemaker:{sagemaker_operations[node.value]}")
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
    return actions


def granted_actions(function: dict[str, Any]) -> set[str]:
    granted = set()
    for policy in function["Properties"].get("Policies", []):
        assert isinstance(policy, dict) and "Statement" in policy, "only inline statements: they say what is granted"
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow"
            actions = statement["Action"]
            granted |= set(actions if isinstance(actions, list) else [actions])
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
    for policy in function["Properties"].get("Policies", []):
        for statement in policy["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if "iam:PassRole" in actions:
                assert actions == ["iam:PassRole"]
                assert statement["Resource"] == {"Fn::GetAtt": ["SageMakerExecutionRole", "Arn"]}
                assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}, (
                    name
                )
