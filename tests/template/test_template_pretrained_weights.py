"""The pinned pretrained weights in the template: the parameter pins torchvision's file, every function sees the key,
and only the two readers that need the object may read it (the SageMaker jobs, StartTuning's HeadObject), read only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from template_loading import policy_statements

WEIGHTS_RESOURCE = {"Fn::Sub": "${DataBucket.Arn}/${PretrainedWeightsKey}"}
# Resources that would cover the weights object too: the whole bucket, or its weights/ prefix.
COVERING = [WEIGHTS_RESOURCE, {"Fn::Sub": "${DataBucket.Arn}/*"}, {"Fn::Sub": "${DataBucket.Arn}/weights/*"}]
# torchvision's ResNet18_Weights.DEFAULT (training_code/dog_model.IMAGENET_RESNET18_FILE; a training test holds it).
TORCHVISION_FILE = "resnet18-f37072fd.pth"


def _resources(statement: dict[str, Any]) -> list[Any]:
    resource = statement.get("Resource", [])
    return resource if isinstance(resource, list) else [resource]


def _actions(statement: dict[str, Any]) -> set[str]:
    actions = statement["Action"]
    return set(actions if isinstance(actions, list) else [actions])


def _role_statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for policy in role["Properties"]["Policies"]:
        if "Fn::If" in policy:
            policy = policy["Fn::If"][1]
        found += policy["PolicyDocument"]["Statement"]
    return found


def _readers(sam_template: dict[str, Any]) -> dict[str, set[str]]:
    """Every function or role with a statement whose resource covers the weights object, and what it may do."""
    readers: dict[str, set[str]] = {}
    for name, resource in sam_template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            statements = policy_statements(resource)
        elif resource["Type"] == "AWS::IAM::Role":
            statements = _role_statements(resource)
        else:
            continue
        for statement in statements:
            if any(covering in _resources(statement) for covering in COVERING):
                readers.setdefault(name, set()).update(_actions(statement))
    return readers


def test_the_default_key_is_torchvisions_pinned_file(sam_template: dict[str, Any]) -> None:
    parameter = sam_template["Parameters"]["PretrainedWeightsKey"]
    assert parameter["Default"] == f"weights/{TORCHVISION_FILE}"
    variables = sam_template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["PRETRAINED_WEIGHTS_KEY"] == {"Ref": "PretrainedWeightsKey"}


@pytest.mark.parametrize(
    ("key", "allowed"),
    [
        (f"weights/{TORCHVISION_FILE}", True),
        ("models/resnet18-standin-6a8c9f61.pth", True),
        ("weights/resnet18.pth", False),  # pins nothing: the jobs could not verify it
        ("weights/resnet18-F37072FD.pth", False),  # torchvision's hex is lower case, and so is hashlib's
        (f"/weights/{TORCHVISION_FILE}", False),  # an S3 key has no leading slash
    ],
)
def test_a_key_must_pin_its_files_sha256(sam_template: dict[str, Any], key: str, allowed: bool) -> None:
    pattern = sam_template["Parameters"]["PretrainedWeightsKey"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, key)) is allowed


def test_only_the_jobs_and_start_tuning_may_read_the_weights_and_nobody_may_write_them(
    sam_template: dict[str, Any],
) -> None:
    # (the staging command runs with the deployer's credentials: no role of the stack replaces the pinned file)
    assert _readers(sam_template) == {
        "SageMakerExecutionRole": {"s3:GetObject"},
        "StartTuningFunction": {"s3:GetObject"},
    }


def test_the_deploy_guide_says_how_the_weights_get_into_the_bucket() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()
    assert "make stage-weights STACK=" in guide and "PretrainedWeightsKey" in guide
