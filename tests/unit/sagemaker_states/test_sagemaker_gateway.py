"""The one place where SageMaker errors become retryable or not: by error code and HTTP status."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.stub import Stubber

from pipeline.common.errors import SageMakerThrottled
from pipeline.common.sagemaker_gateway import SageMakerGateway


@pytest.mark.parametrize(
    ("code", "http_status"),
    [("ThrottlingException", 400), ("InternalFailure", 500), ("ServiceUnavailable", 503), ("SomethingNew", 502)],
)
def test_throttling_and_server_errors_become_retryable(code: str, http_status: int) -> None:
    client = boto3.client("sagemaker", region_name="us-east-1")
    with Stubber(client) as stubber:
        stubber.add_client_error("describe_training_job", service_error_code=code, http_status_code=http_status)

        with pytest.raises(SageMakerThrottled, match="describe_training_job") as raised:
            SageMakerGateway(client).call("describe_training_job", TrainingJobName="train-1")

    assert isinstance(raised.value.__cause__, ClientError)


@pytest.mark.parametrize("code", ["ValidationException", "ResourceLimitExceeded", "ResourceInUse"])
def test_client_errors_stay_terminal(code: str) -> None:
    # ResourceLimitExceeded is a quota: waiting minutes does not clear it, so it must not be retried.
    client = boto3.client("sagemaker", region_name="us-east-1")
    with Stubber(client) as stubber:
        stubber.add_client_error("describe_training_job", service_error_code=code, http_status_code=400)

        with pytest.raises(ClientError) as raised:
            SageMakerGateway(client).call("describe_training_job", TrainingJobName="train-1")

    assert raised.value.response["Error"]["Code"] == code


def test_unreachable_endpoint_becomes_retryable() -> None:
    class Unreachable:
        meta = boto3.client("sagemaker", region_name="us-east-1").meta

        def describe_training_job(self, **request: object) -> dict[str, object]:
            raise EndpointConnectionError(endpoint_url="https://api.sagemaker.us-east-1.amazonaws.com")

    with pytest.raises(SageMakerThrottled, match="could not be reached"):
        SageMakerGateway(Unreachable()).call("describe_training_job", TrainingJobName="train-1")


def test_region_comes_from_the_client() -> None:
    assert SageMakerGateway(boto3.client("sagemaker", region_name="eu-west-1")).region == "eu-west-1"
