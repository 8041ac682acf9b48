"""Fixtures shared by every test: fake credentials, a fresh client cache, one botocore loader, a Lambda context."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from offline.moto_shims import SharedServiceModels
from pipeline.common.clients import reset_clients

REGION = "us-east-1"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker takes one core: torch in it (and in the training jobs and endpoints it starts,
    which inherit the environment) runs one thread. Two OpenMP threads per process on two busy cores stall each
    other far worse than one (tests/training/conftest.py, research/cpu-performance.md)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach real AWS: fake credentials, a fixed region, no profile."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "DogBreedRetraining")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "retraining-tests")


@pytest.fixture(autouse=True)
def fresh_clients() -> None:
    reset_clients()


@pytest.fixture(autouse=True, scope="session")
def shared_service_models() -> Iterator[None]:
    """Every botocore session of the test process shares one loader, as in the offline run: the service models
    (SageMaker's JSON is 2.6 MB) are parsed once per worker instead of once per test's clients. Clients, sessions
    and moto's state stay per test; botocore only reads the models."""
    with SharedServiceModels():
        yield


@dataclass
class LambdaContext:
    function_name: str = "test-function"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:test-function"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()
