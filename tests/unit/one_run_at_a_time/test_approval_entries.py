"""The waiting-for-approval entry and ResumeApproval's answers, against moto's DynamoDB (the template's table)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pipeline.common.pipeline_state import PipelineTable
from pipeline.resume_approval import resume_approval

PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/dog-breed-classifier/4"


class FakeRegistry:
    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        assert (operation, params) == ("describe_model_package", {"ModelPackageName": PACKAGE})
        return {
            "ModelApprovalStatus": "Rejected",
            "ApprovalDescription": "too many terriers confused",
            "LastModifiedBy": {"IamIdentity": {"Arn": "arn:aws:sts::123456789012:assumed-role/ml-lead/ana"}},
        }


class FakeTokens:
    """SendTaskSuccess: records the answer, or fails as Step Functions does for a task that is over."""

    def __init__(self, error: str | None = None) -> None:
        self.error = error
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send_task_success(self, taskToken: str, output: str) -> None:
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "x"}}, "SendTaskSuccess")
        self.sent.append((taskToken, json.loads(output)))


def event(status: str) -> dict[str, Any]:
    return {"detail-type": "SageMaker Model Package State Change", "detail": {"ModelPackageArn": PACKAGE,
            "ModelApprovalStatus": status}}  # fmt: skip


def test_a_decision_resumes_the_waiting_run_once(table: PipelineTable) -> None:
    table.await_approval(PACKAGE, "token-1", "arn:execution:run-1", deadline=2_000_000_000)
    tokens = FakeTokens()

    first = resume_approval(event("Rejected"), table, FakeRegistry(), tokens)  # type: ignore[arg-type]
    again = resume_approval(event("Rejected"), table, FakeRegistry(), tokens)  # type: ignore[arg-type]

    assert first["outcome"] == "resumed" and again["outcome"] == "no waiting run"
    ((token, decision),) = tokens.sent
    assert token == "token-1"
    assert decision == {
        "status": "Rejected",
        "description": "too many terriers confused",
        "approved_by": "arn:aws:sts::123456789012:assumed-role/ml-lead/ana",
        "model_package_arn": PACKAGE,
    }


def test_a_status_that_is_no_decision_is_ignored(table: PipelineTable) -> None:
    table.await_approval(PACKAGE, "token-1", "arn:execution:run-1", deadline=2_000_000_000)
    result = resume_approval(event("PendingManualApproval"), table, FakeRegistry(), FakeTokens())  # type: ignore[arg-type]
    assert result["outcome"] == "ignored"
    assert table.take_approval(PACKAGE) is not None  # still waiting


def test_a_decision_after_the_timeout_resumes_nothing(table: PipelineTable) -> None:
    table.await_approval(PACKAGE, "token-1", "arn:execution:run-1", deadline=2_000_000_000)
    result = resume_approval(event("Approved"), table, FakeRegistry(), FakeTokens("TaskTimedOut"))  # type: ignore[arg-type]
    assert (result["outcome"], result["execution"]) == ("late", "arn:execution:run-1")


def test_an_unexpected_error_puts_the_entry_back_for_eventbridges_retry(table: PipelineTable) -> None:
    table.await_approval(PACKAGE, "token-1", "arn:execution:run-1", deadline=2_000_000_000)
    with pytest.raises(ClientError, match="ThrottlingException"):
        resume_approval(event("Approved"), table, FakeRegistry(), FakeTokens("ThrottlingException"))  # type: ignore[arg-type]
    assert (table.take_approval(PACKAGE) or {})["task_token"] == "token-1"


def test_the_waiting_run_keeps_its_lease_until_the_deadline(table: PipelineTable) -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    acquired, _ = table.try_acquire("arn:execution:run-1", now, lease_seconds=3600)
    assert acquired
    assert table.extend_lease("arn:execution:run-1", expires=2_000_000_000) is True
    lease = table.get_lease()
    assert lease is not None and lease.expires_at == 2_000_000_000
    assert table.extend_lease("arn:execution:someone-else", expires=1) is False
