"""KmsKeyArn and the VPC parameters: with them set, every resource that stores data uses the key and the functions'
settings carry the network; with them empty, the stack is what it was (AWS-managed keys, SageMaker's network)."""

from __future__ import annotations

from typing import Any

import pytest

from offline.stack import Template, TemplateError
from pipeline.common.config import load_settings

KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SECURED = {
    "KmsKeyArn": KEY,
    "SubnetIds": "subnet-0a1b2c3d4e5f60718,subnet-0f1e2d3c4b5a69788",
    "SecurityGroupIds": "sg-0123456789abcdef0",
    "NetworkIsolation": "true",
}
LOG_GROUPS = ("FunctionLogGroup", "StateMachineLogGroup")


@pytest.fixture(scope="module")
def secured() -> Template:
    return Template(parameters=SECURED)


@pytest.fixture(scope="module")
def default() -> Template:
    return Template()


def _resolved(template: Template, logical_id: str) -> dict[str, Any]:
    return template.resolve(template.properties(logical_id))  # type: ignore[no-any-return]


def _role_policies(template: Template) -> dict[str, Any]:
    return {policy["PolicyName"]: policy for policy in _resolved(template, "SageMakerExecutionRole")["Policies"]}


def test_with_a_key_every_store_of_the_stack_uses_it(secured: Template) -> None:
    (rule,) = _resolved(secured, "DataBucket")["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule == {
        "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY},
        "BucketKeyEnabled": True,
    }
    assert _resolved(secured, "PipelineTable")["SSESpecification"] == {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": KEY,
    }
    assert _resolved(secured, "FailureTopic")["KmsMasterKeyId"] == KEY
    for log_group in LOG_GROUPS:
        assert _resolved(secured, log_group)["KmsKeyId"] == KEY
    assert secured.resolve(secured.body["Globals"]["Function"]["KmsKeyArn"]) == KEY
    # The jobs' role may use the key, and create grants only for AWS resources (the job and endpoint volumes).
    statements = {s["Sid"]: s for s in _role_policies(secured)["customer-managed-key"]["PolicyDocument"]["Statement"]}
    assert {s["Resource"] for s in statements.values()} == {KEY}
    assert statements["GrantTheKeyToVolumes"]["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": True}}


def test_with_a_vpc_the_jobs_role_may_manage_their_network_interfaces(secured: Template, default: Template) -> None:
    (statement,) = _role_policies(secured)["private-networking"]["PolicyDocument"]["Statement"]
    assert "ec2:CreateNetworkInterface" in statement["Action"]
    assert "private-networking" not in _role_policies(default)


def test_the_functions_settings_carry_the_key_and_the_network(
    secured: Template, monkeypatch: pytest.MonkeyPatch
) -> None:
    variables = secured.resolve(secured.body["Globals"]["Function"]["Environment"]["Variables"])
    for name, value in variables.items():
        monkeypatch.setenv(name, str(value))

    settings = load_settings()

    assert settings.kms_key_arn == KEY
    assert settings.subnet_ids == ("subnet-0a1b2c3d4e5f60718", "subnet-0f1e2d3c4b5a69788")
    assert settings.security_group_ids == ("sg-0123456789abcdef0",)
    assert settings.network_isolation is True and settings.inter_container_encryption is False


def test_with_the_defaults_nothing_changes(default: Template, monkeypatch: pytest.MonkeyPatch) -> None:
    (rule,) = _resolved(default, "DataBucket")["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule == {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    assert "SSESpecification" not in _resolved(default, "PipelineTable")
    assert _resolved(default, "FailureTopic")["KmsMasterKeyId"] == "alias/aws/sns"
    assert not [name for name in LOG_GROUPS if "KmsKeyId" in _resolved(default, name)]
    assert "KmsKeyArn" not in default.resolve(default.body["Globals"]["Function"])
    assert set(_role_policies(default)) == {"data-bucket", "container-images", "logs-and-metrics"}
    variables = default.resolve(default.body["Globals"]["Function"]["Environment"]["Variables"])
    for name, value in variables.items():
        monkeypatch.setenv(name, str(value))
    settings = load_settings()
    assert (settings.kms_key_arn, settings.subnet_ids, settings.security_group_ids) == ("", (), ())
    assert not settings.network_isolation and not settings.inter_container_encryption


def test_subnets_without_security_groups_break_the_template_rule() -> None:
    # CloudFormation checks Rules before it creates anything; so does the offline stack.
    with pytest.raises(TemplateError, match="SubnetIds and SecurityGroupIds must both be set"):
        Template(parameters={"SubnetIds": "subnet-0a1b2c3d4e5f60718"})
    with pytest.raises(TemplateError, match="SubnetIds and SecurityGroupIds must both be set"):
        Template(parameters={"SecurityGroupIds": "sg-0123456789abcdef0"})


def test_govcloud_without_a_training_image_is_refused_before_anything_is_created() -> None:
    with pytest.raises(TemplateError, match=r"pass\s+TrainingImageUri"):
        Template(region="us-gov-west-1")
    image = "123456789012.dkr.ecr.us-gov-west-1.amazonaws.com/pytorch:2.13.0-cu133-amzn2023-sagemaker"
    assert Template(region="us-gov-west-1", parameters={"TrainingImageUri": image}).region == "us-gov-west-1"
    assert Template(region="eu-west-1").region == "eu-west-1"
