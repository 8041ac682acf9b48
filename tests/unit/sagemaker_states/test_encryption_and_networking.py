"""KmsKeyArn, SubnetIds/SecurityGroupIds, NetworkIsolation and InterContainerTrafficEncryption in every SageMaker
request: carried where set (and valid for the API model), absent where not."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from botocore.validate import validate_parameters
from test_sagemaker_requests import BEST, CODE_URI

from pipeline.common.config import Settings, load_settings
from pipeline.common.request_validation import operation_model, request_problems
from pipeline.common.sagemaker_requests import (
    endpoint_config_request,
    has_instance_storage,
    model_package_request,
    model_request,
    training_job_request,
    tuning_job_request,
)
from pipeline.common.state_models import Dataset

KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SUBNETS = ("subnet-0a1b2c3d4e5f60718", "subnet-0f1e2d3c4b5a69788")
GROUPS = ("sg-0123456789abcdef0",)
ARTIFACT = "s3://dog-data/jobs/r/train-1/output/model.tar.gz"


def _secured(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings,
        kms_key_arn=KEY,
        subnet_ids=SUBNETS,
        security_group_ids=GROUPS,
        network_isolation=True,
        inter_container_encryption=True,
        # EBS-backed instances: the volume key applies (see the instance-storage test for NVMe ones).
        tuning_instance_type="ml.p3.2xlarge",
        training_instance_type="ml.p3.2xlarge",
    )


def _requests(settings: Settings, dataset: Dataset) -> dict[str, dict[str, Any]]:
    return {
        "create_hyper_parameter_tuning_job": tuning_job_request(settings, dataset, "hpo-1", CODE_URI, "us-east-1"),
        "create_training_job": training_job_request(settings, dataset, BEST, "train-1", CODE_URI, "us-east-1"),
        "create_model": model_request(settings, dataset, "dogs-1", ARTIFACT, "us-east-1"),
        "create_endpoint_config": endpoint_config_request(settings, dataset, "dogs-1", "dogs-1"),
        "create_model_package": model_package_request(settings, dataset, ARTIFACT, "us-east-1", "d", {}, "token"),
    }


def _assert_valid(operation: str, request: dict[str, Any]) -> None:
    validate_parameters(request, operation_model("sagemaker", operation).input_shape)
    assert request_problems("sagemaker", operation, request) == []


def test_with_a_key_and_a_vpc_every_job_model_and_endpoint_carries_them(settings: Settings, dataset: Dataset) -> None:
    requests = _requests(_secured(settings), dataset)
    vpc = {"SecurityGroupIds": list(GROUPS), "Subnets": list(SUBNETS)}

    trial = requests["create_hyper_parameter_tuning_job"]["TrainingJobDefinition"]
    for job in (trial, requests["create_training_job"]):
        assert job["OutputDataConfig"]["KmsKeyId"] == KEY
        assert job["ResourceConfig"]["VolumeKmsKeyId"] == KEY
        assert job["VpcConfig"] == vpc
        assert job["EnableNetworkIsolation"] is True
        assert job["EnableInterContainerTrafficEncryption"] is True
    model = requests["create_model"]
    assert model["VpcConfig"] == vpc and model["EnableNetworkIsolation"] is True
    assert requests["create_endpoint_config"]["KmsKeyId"] == KEY
    for operation, request in requests.items():
        _assert_valid(operation, request)


def test_with_the_defaults_no_request_names_a_key_a_vpc_or_isolation(settings: Settings, dataset: Dataset) -> None:
    names = (
        "KmsKeyId",
        "VolumeKmsKeyId",
        "VpcConfig",
        "EnableNetworkIsolation",
        "EnableInterContainerTrafficEncryption",
    )

    for operation, request in _requests(settings, dataset).items():
        assert not [name for name in names if name in repr(request)], operation
    # And the one field the secured variant changes in place keeps its old shape.
    trial = tuning_job_request(settings, dataset, "hpo-1", CODE_URI, "us-east-1")["TrainingJobDefinition"]
    assert trial["ResourceConfig"] == {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30}


@pytest.mark.parametrize(
    ("instance_type", "local"),
    [
        ("ml.g4dn.xlarge", True),
        ("ml.p4d.24xlarge", True),
        ("ml.p3dn.24xlarge", True),
        ("ml.m5d.large", True),
        ("ml.c6id.xlarge", True),
        ("ml.g5.2xlarge", True),
        ("ml.p5.48xlarge", True),
        ("ml.trn1.32xlarge", True),
        ("ml.m5.large", False),
        ("ml.c5.xlarge", False),
        ("ml.p3.2xlarge", False),
        ("ml.g4ad.xlarge", True),
        ("ml.inf2.xlarge", False),
    ],
)
def test_instance_storage_is_told_by_the_family(instance_type: str, local: bool) -> None:
    assert has_instance_storage(instance_type) is local


def test_nvme_instances_get_no_volume_key_but_their_output_is_still_encrypted(
    settings: Settings, dataset: Dataset
) -> None:
    # GIVEN the default GPU instances (g4dn: local NVMe, which SageMaker refuses a volume key for) and an m5d endpoint
    secured = dataclasses.replace(
        _secured(settings),
        tuning_instance_type="ml.g4dn.xlarge",
        training_instance_type="ml.g4dn.xlarge",
        endpoint_instance_type="ml.m5d.large",
    )
    requests = _requests(secured, dataset)

    for job in (
        requests["create_hyper_parameter_tuning_job"]["TrainingJobDefinition"],
        requests["create_training_job"],
    ):
        assert "VolumeKmsKeyId" not in job["ResourceConfig"]
        assert job["OutputDataConfig"]["KmsKeyId"] == KEY
    assert "KmsKeyId" not in requests["create_endpoint_config"]


def test_subnets_without_security_groups_are_refused_when_settings_load(
    pipeline_env: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUBNET_IDS", ",".join(SUBNETS))
    with pytest.raises(ValueError, match="SUBNET_IDS and SECURITY_GROUP_IDS must both be set"):
        load_settings()
    monkeypatch.setenv("SECURITY_GROUP_IDS", " sg-0123456789abcdef0 , ")
    loaded = load_settings()
    assert (loaded.subnet_ids, loaded.security_group_ids) == (SUBNETS, GROUPS)
