"""NotifyFailure: tells people a run failed, in words they can act on without opening CloudWatch.

Input: ``{"error": {"Error", "Cause"}, "state": <the whole state>, "execution_id": str, "execution_name": str}``.
Output ($.notification): ``{"message_id": str | None}``; with no FAILURE_TOPIC_ARN set nothing is published.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.common.clients import get_client
from pipeline.common.config import load_settings
from pipeline.common.observability import logger, tracer

SUBJECT_LIMIT = 100
# Where each state leaves the name of what it started, for the "what was running" part of the message.
_PROGRESS = (
    ("Tuning job", ("tuning", "job_name")),
    ("Best trial", ("best", "training_job_name")),
    ("Training job", ("training", "job_name")),
    ("Endpoint", ("deployment", "endpoint")),
    ("Endpoint config", ("deployment", "endpoint_config")),
)


def readable_cause(cause: str) -> str:
    """The Lambda ``errorMessage`` when the Cause is a Lambda error payload, else the Cause as it is."""
    try:
        payload = json.loads(cause)
    except (TypeError, ValueError):
        return cause
    if isinstance(payload, dict) and "errorMessage" in payload:
        return str(payload["errorMessage"])
    return cause


def console_link(execution_arn: str) -> str:
    region = execution_arn.split(":")[3] if execution_arn.count(":") >= 4 else "us-east-1"
    return (
        f"https://{region}.console.aws.amazon.com/states/home?region={region}"
        f"#/v2/executions/details/{quote(execution_arn, safe=':')}"
    )


def dataset_of(state: dict[str, Any]) -> dict[str, Any] | None:
    """The dataset from ValidateDataset's output, a manual input, or the raw S3 event, whichever is there."""
    dataset = state.get("dataset")
    if isinstance(dataset, dict) and "bucket" in dataset and "key" in dataset:
        return {"bucket": dataset["bucket"], "key": dataset["key"], "version_id": dataset.get("version_id")}
    detail = state.get("detail")
    if isinstance(detail, dict) and "bucket" in detail and "object" in detail:
        return {
            "bucket": detail["bucket"].get("name"),
            "key": detail["object"].get("key"),
            "version_id": detail["object"].get("version-id"),
        }
    return None


def _lookup(state: dict[str, Any], path: tuple[str, str]) -> Any:
    part = state.get(path[0])
    return part.get(path[1]) if isinstance(part, dict) else None


def failure_message(event: dict[str, Any], report_uri: str | None = None) -> tuple[str, str]:
    """(subject, body) of the notification; ``report_uri``: where the run's report will be."""
    error = event.get("error") or {}
    state = event.get("state") or {}
    error_name = str(error.get("Error", "UnknownError"))
    execution_name = str(event.get("execution_name", "?"))
    lines = [
        f"The dog-breed retraining run {execution_name} failed.",
        "",
        f"Error: {error_name}",
        f"Cause: {readable_cause(str(error.get('Cause', 'no cause given')))}",
        "",
        f"Execution: {console_link(str(event.get('execution_id', '')))}",
    ]
    if report_uri:
        lines.append(f"Run report (written when the run ends, with what failed where): {report_uri}")
    dataset = dataset_of(state)
    if dataset:
        version = f" (version {dataset['version_id']})" if dataset.get("version_id") else ""
        lines.append(f"Dataset: s3://{dataset['bucket']}/{dataset['key']}{version}")
    if state.get("trigger") == "schedule" or state.get("detail-type") == "Scheduled Event":
        lines.append("Trigger: the scheduled run (EventBridge schedule)")
    progress = [(label, _lookup(state, path)) for label, path in _PROGRESS]
    lines += [f"{label}: {value}" for label, value in progress if value]
    lines += ["", "The serving endpoint was not changed by this run unless a guarded update rolled back."]
    subject = f"Retraining failed: {error_name} ({execution_name})"
    return subject[:SUBJECT_LIMIT], "\n".join(lines)


@tracer.capture_method
def notify_failure(event: dict[str, Any], topic_arn: str, sns: Any, report_uri: str | None = None) -> dict[str, Any]:
    subject, body = failure_message(event, report_uri)
    if not topic_arn:
        logger.warning("no FAILURE_TOPIC_ARN set; failure not published", extra={"subject": subject, "body": body})
        return {"message_id": None}
    response = sns.publish(TopicArn=topic_arn, Subject=subject, Message=body)
    logger.info("failure published", extra={"message_id": response["MessageId"], "subject": subject})
    return {"message_id": response["MessageId"]}


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = load_settings()
    report = settings.run_report_uri(str(event.get("execution_name", "?")))
    return notify_failure(event, settings.failure_topic_arn, get_client("sns"), report)
