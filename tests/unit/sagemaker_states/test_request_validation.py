"""Our check of what botocore does not validate: enums, maximums and name patterns from the service model."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from pipeline.common.errors import InvalidSageMakerRequest
from pipeline.common.request_validation import check_request, request_problems
from pipeline.common.sagemaker_gateway import SageMakerGateway


def _update_request(routing_type: str) -> dict[str, object]:
    return {
        "EndpointName": "dog-breed-classifier",
        "EndpointConfigName": "dogs-251125-015343-3f9a1c",
        "DeploymentConfig": {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {"Type": routing_type, "WaitIntervalInSeconds": 0},
                "TerminationWaitInSeconds": 600,
            }
        },
    }


def test_misspelt_enum_is_reported_with_its_path_and_the_allowed_values() -> None:
    # GIVEN the spelling the prose of the docs suggests WHEN checked THEN the API's enum is named
    problems = request_problems("sagemaker", "update_endpoint", _update_request("AllAtOnce"))

    assert problems == [
        "DeploymentConfig.BlueGreenUpdatePolicy.TrafficRoutingConfiguration.Type: 'AllAtOnce' is not one of "
        "['ALL_AT_ONCE', 'CANARY', 'LINEAR']"
    ]


def test_valid_enum_passes() -> None:
    assert request_problems("sagemaker", "UpdateEndpoint", _update_request("ALL_AT_ONCE")) == []


def test_enum_inside_a_list_is_checked() -> None:
    request = {
        "HyperParameterTuningJobName": "hpo-1",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "ResourceLimits": {"MaxParallelTrainingJobs": 1},
            "ParameterRanges": {
                "ContinuousParameterRanges": [
                    {"Name": "learning_rate", "MinValue": "0.001", "MaxValue": "0.1", "ScalingType": "Log"}
                ]
            },
        },
    }

    problems = request_problems("sagemaker", "create_hyper_parameter_tuning_job", request)

    assert len(problems) == 1
    assert problems[0].startswith("HyperParameterTuningJobConfig.ParameterRanges.ContinuousParameterRanges[0]")


def test_too_long_tuning_job_name_breaks_length_and_pattern() -> None:
    problems = request_problems(
        "sagemaker", "describe_hyper_parameter_tuning_job", {"HyperParameterTuningJobName": "h" * 33}
    )

    assert any("33 characters, at most 32" in problem for problem in problems)


def test_number_above_the_model_maximum_is_reported() -> None:
    request = _update_request("ALL_AT_ONCE")
    request["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TerminationWaitInSeconds"] = 3601  # type: ignore[index]

    assert request_problems("sagemaker", "update_endpoint", request) == [
        "DeploymentConfig.BlueGreenUpdatePolicy.TerminationWaitInSeconds: 3601 is above the maximum 3600"
    ]


def test_invalid_name_pattern_is_reported() -> None:
    problems = request_problems("sagemaker", "describe_training_job", {"TrainingJobName": "bad name!"})

    assert problems and "does not match" in problems[0]


def test_check_request_raises_the_named_error_with_every_problem() -> None:
    with pytest.raises(InvalidSageMakerRequest, match=r"AllAtOnce.*ALL_AT_ONCE"):
        check_request("sagemaker", "update_endpoint", _update_request("AllAtOnce"))


def test_gateway_refuses_an_invalid_request_before_sending_it() -> None:
    # GIVEN a stubbed client with no scripted response WHEN an invalid request goes through the gateway
    client = boto3.client("sagemaker", region_name="us-east-1")
    with Stubber(client) as stubber:
        with pytest.raises(InvalidSageMakerRequest):
            SageMakerGateway(client).call("update_endpoint", **_update_request("AllAtOnce"))
        # THEN nothing reached the client (a sent request would have failed on the empty stub queue instead)
        stubber.assert_no_pending_responses()


def test_unknown_operation_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="no operation"):
        request_problems("sagemaker", "create_dog", {})
