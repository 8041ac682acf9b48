"""NotifyFailure: a message a person can act on, published to the failure topic."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from sagemaker_states_support import REGION, load_event

from pipeline import notify_failure

EXECUTION_ARN = "arn:aws:states:eu-west-1:123456789012:execution:RetrainPipeline:0b8a5f3e-8a43-4d0e-9a51-7c1f2b9d6e10"


@pytest.fixture
def topic_queue(aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """A failure topic with a queue subscribed (SNS envelope kept, so the subject arrives too)."""
    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="retraining-failures")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="failures")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "false"})
    monkeypatch.setenv("DATA_BUCKET", "dog-data")
    monkeypatch.setenv("FAILURE_TOPIC_ARN", topic)
    return queue_url


def _published(queue_url: str) -> dict[str, Any]:
    messages = boto3.client("sqs", region_name=REGION).receive_message(QueueUrl=queue_url)["Messages"]
    assert len(messages) == 1
    envelope: dict[str, Any] = json.loads(messages[0]["Body"])
    return envelope


def test_publishes_error_unwrapped_cause_link_dataset_and_jobs(topic_queue: str, lambda_context: Any) -> None:
    result = notify_failure.lambda_handler(load_event("notify_failure_rule_issues"), lambda_context)

    published = _published(topic_queue)
    assert published["MessageId"] == result["message_id"]
    assert published["Subject"] == "Retraining failed: RuleIssuesFound (0b8a5f3e-8a43-4d0e-9a51-7c1f2b9d6e10)"
    body = published["Message"]
    assert "Error: RuleIssuesFound" in body
    # The Lambda error payload is unwrapped: the message, not the JSON with its stack trace.
    assert "Cause: training job train-251125-015343-3f9a1c failed the rule gate: Overfit IssuesFound" in body
    assert "stackTrace" not in body
    assert (
        "https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/"
        f"{EXECUTION_ARN}" in body
    )
    assert "Dataset: s3://dog-data/incoming/dogImages.zip (version 3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY)" in body
    assert "Training job: train-251125-015343-3f9a1c" in body
    assert "Endpoint:" not in body
    # AND it links to the run's report, next to its record
    assert "Run report (written when the run ends, with what failed where): s3://" in body
    assert "/runs/0b8a5f3e-8a43-4d0e-9a51-7c1f2b9d6e10.html" in body


def test_dataset_comes_from_the_s3_event_when_validation_failed() -> None:
    event = load_event("notify_failure_rule_issues")
    del event["state"]["dataset"]
    event["error"] = {"Error": "DatasetInvalid", "Cause": "plain text: train/ has 132 classes, expected 133"}

    subject, body = notify_failure.failure_message(event)

    assert "Cause: plain text: train/ has 132 classes, expected 133" in body
    assert "Dataset: s3://dog-data/incoming/dogImages.zip (version 3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY)" in body
    assert subject.startswith("Retraining failed: DatasetInvalid")


def test_scheduled_run_without_a_dataset_says_so() -> None:
    event = {
        "error": {"Error": "DatasetNotFound", "Cause": "no zip under incoming/"},
        "state": {"trigger": "schedule"},
        "execution_id": EXECUTION_ARN,
        "execution_name": "weekly",
    }

    _, body = notify_failure.failure_message(event)

    assert "Trigger: the scheduled run (EventBridge schedule)" in body
    assert "Dataset:" not in body


def test_json_cause_that_is_not_a_lambda_error_is_kept_whole() -> None:
    assert notify_failure.readable_cause('{"status": 500}') == '{"status": 500}'


def test_subject_stays_within_the_sns_limit() -> None:
    event = {"error": {"Error": "E" * 200, "Cause": ""}, "state": {}, "execution_id": "", "execution_name": "x"}

    subject, _ = notify_failure.failure_message(event)

    assert len(subject) == 100


def test_without_a_topic_nothing_is_published(
    aws: None, pipeline_env: Any, monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    monkeypatch.delenv("FAILURE_TOPIC_ARN", raising=False)

    result = notify_failure.lambda_handler(load_event("notify_failure_rule_issues"), lambda_context)

    assert result == {"message_id": None}
