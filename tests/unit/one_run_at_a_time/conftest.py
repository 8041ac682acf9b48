"""Fixtures for the lease, dedupe and run record states: the template's table in moto, a fake Step Functions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from offline.stack import Template, create_table
from pipeline.common.pipeline_state import PipelineTable

REGION = "us-east-1"
MACHINE = f"arn:aws:states:{REGION}:123456789012:stateMachine:dog-breed-retraining-retrain"
NOW = datetime(2026, 11, 25, 3, 0, 0, tzinfo=UTC)
LEASE_SECONDS = 3600


def execution_arn(name: str) -> str:
    return MACHINE.replace(":stateMachine:", ":execution:") + f":{name}"


@dataclass
class FakeStepFunctions:
    """DescribeExecution and StartExecution as Step Functions answers them, with real ClientErrors.

    ``statuses``: execution ARN → status; an ARN not in it does not exist. StartExecution of a name already used
    raises ExecutionAlreadyExists, as it does on AWS once the first execution has closed.
    """

    statuses: dict[str, str] = field(default_factory=dict)
    started: list[dict[str, Any]] = field(default_factory=list)

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        if executionArn not in self.statuses:
            raise ClientError(
                {"Error": {"Code": "ExecutionDoesNotExist", "Message": f"Execution Does Not Exist: '{executionArn}'"}},
                "DescribeExecution",
            )
        return {"executionArn": executionArn, "status": self.statuses[executionArn]}

    def start_execution(self, stateMachineArn: str, name: str, input: str) -> dict[str, Any]:
        arn = f"{stateMachineArn.replace(':stateMachine:', ':execution:')}:{name}"
        if arn in self.statuses:
            raise ClientError(
                {"Error": {"Code": "ExecutionAlreadyExists", "Message": f"Execution Already Exists: '{arn}'"}},
                "StartExecution",
            )
        self.statuses[arn] = "RUNNING"
        self.started.append({"stateMachineArn": stateMachineArn, "name": name, "input": input})
        return {"executionArn": arn, "startDate": NOW}


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def table_name(aws: None) -> str:
    """The template's PipelineTable, created in moto from its own properties (key schema, billing, TTL, PITR)."""
    template = Template(region=REGION)
    (logical_id,) = template.of_type("AWS::DynamoDB::Table")
    return create_table(template, logical_id)


@pytest.fixture
def table(table_name: str) -> PipelineTable:
    return PipelineTable(boto3.client("dynamodb", region_name=REGION), table_name)


@pytest.fixture
def sfn() -> FakeStepFunctions:
    return FakeStepFunctions()


def s3_event(key: str, version: str = "v1", time: str = "2026-11-25T02:59:00Z", etag: str = "e1") -> dict[str, Any]:
    return {
        "version": "0",
        "id": f"event-{key}-{version}",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "time": time,
        "resources": ["arn:aws:s3:::data"],
        "detail": {
            "bucket": {"name": "data"},
            "object": {"key": key, "size": 42, "etag": etag, "version-id": version},
            "reason": "PutObject",
        },
    }
