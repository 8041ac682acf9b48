"""The one door to SageMaker: every request is checked against the API model, throttling becomes retryable.

botocore's standard retry mode already retries throttling and 5xx a few times inside one invocation; when it
gives up, :class:`SageMakerThrottled` hands the wait to the state machine's longer back-off instead of failing
the run. Errors are told apart by their code and HTTP status, never by message text.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from pipeline.common.clients import get_client
from pipeline.common.errors import SageMakerThrottled
from pipeline.common.request_validation import check_request

# ResourceLimitExceeded is deliberately absent: a quota does not clear by waiting a few minutes.
TRANSIENT_ERROR_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestThrottled",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalServerError",
    }
)
_NETWORK_ERRORS = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)


def is_transient(error: ClientError) -> bool:
    code = error_code(error)
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return code in TRANSIENT_ERROR_CODES or status >= 500


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def training_channel_uri(job: dict[str, Any]) -> str | None:
    """The S3 URI of a described job's first input channel (training job or tuning job definition)."""
    channels = job.get("InputDataConfig") or job.get("TrainingJobDefinition", {}).get("InputDataConfig", [])
    return channels[0]["DataSource"]["S3DataSource"]["S3Uri"] if channels else None


class SageMakerGateway:
    """Wraps a boto3 SageMaker client; tests attach a botocore Stubber to :attr:`client`."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @property
    def region(self) -> str:
        return str(self.client.meta.region_name)

    def call(self, operation: str, **request: Any) -> dict[str, Any]:
        """Calls ``operation`` (the boto3 method name) after checking ``request`` against the API model."""
        check_request(self.client.meta.service_model, operation, request)
        try:
            response: dict[str, Any] = getattr(self.client, operation)(**request)
        except ClientError as error:
            if is_transient(error):
                raise SageMakerThrottled(
                    f"SageMaker {operation} was throttled or unavailable after the client's own retries "
                    f"({error.response['Error'].get('Code')}); the state machine retries it with back-off."
                ) from error
            raise
        except _NETWORK_ERRORS as error:
            raise SageMakerThrottled(f"SageMaker {operation} could not be reached ({error}); retrying.") from error
        return response

    def pages(self, operation: str, **request: Any) -> Iterator[dict[str, Any]]:
        """Every page of a listing ``operation``, each a checked :meth:`call`, following NextToken; stop iterating
        to stop fetching."""
        request = dict(request)
        while True:
            page = self.call(operation, **request)
            yield page
            if not page.get("NextToken"):
                return
            request["NextToken"] = page["NextToken"]


def sagemaker_gateway() -> SageMakerGateway:
    return SageMakerGateway(get_client("sagemaker"))
