"""RequestApproval (ApprovalMode manual): the run waits for a person's decision on its model in the registry.

Invoked by the AwaitApproval state (``lambda:invoke.waitForTaskToken``) with ``{"task_token": $$.Task.Token,
"gate": $.gate, "dataset": $.dataset, "execution_name", "execution_id"}``. It stores the token under the model
package (``APPROVAL#<arn>`` in the pipeline table), keeps the run's lease until the approval deadline (an upload
meanwhile is queued, not started), and tells the notice topic what awaits approval, with its paired figures, the
run report and the exact commands that approve or reject. The state then waits: ResumeApproval sends the
decision when the registry's ``SageMaker Model Package State Change`` event arrives; after ``ApprovalTimeoutHours``
the state times out (``States.Timeout``) and the run ends in ApprovalTimedOut.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.common.champion_gate import interval_text
from pipeline.common.clients import get_client
from pipeline.common.config import Settings, load_settings
from pipeline.common.observability import logger, tracer
from pipeline.common.pipeline_state import PipelineTable
from pipeline.common.state_models import Dataset, Gate
from pipeline.notify_failure import SUBJECT_LIMIT, console_link


def approval_commands(package_arn: str) -> list[str]:
    update = f"aws sagemaker update-model-package --model-package-arn {package_arn}"
    return [
        f'{update} --model-approval-status Approved --approval-description "<why it may serve>"',
        f'{update} --model-approval-status Rejected --approval-description "<why not>"',
    ]


def approval_notice(
    gate: Gate, dataset: Dataset, execution_name: str, execution_id: str, deadline: datetime, report_uri: str
) -> tuple[str, str]:
    paired = gate.paired
    comparison = (
        f"{paired['difference']:+.4f} against the serving model on the same {paired['images']} test images "
        f"({interval_text(paired['confidence'], paired['interval'])})"
        if paired
        else "no serving model was scored on the same images"
    )
    lines = [
        f"The dog-breed retraining run {execution_name} trained a model that passed the rule and champion/challenger "
        "gates. ApprovalMode is manual: it is deployed only when a person approves it in the model registry.",
        "",
        f"Model package (PendingManualApproval): {gate.model_package_arn}",
        f"Test accuracy: {gate.challenger_accuracy:.4f}; {comparison}",
        f"Gate: {gate.reason}",
        f"Dataset: s3://{dataset.bucket}/{dataset.key}",
        f"Run report (written when the run ends): {report_uri}",
        f"Execution: {console_link(execution_id)}",
        "",
        "Approve or reject it in SageMaker Studio (Models > Registered models), the console, or:",
        *(f"  {command}" for command in approval_commands(gate.model_package_arn)),
        "",
        f"The run waits until {deadline.isoformat()} (ApprovalTimeoutHours); then it ends ApprovalTimedOut, the "
        "package stays pending and the endpoint is not changed.",
    ]
    return f"Model awaits approval: {execution_name}"[:SUBJECT_LIMIT], "\n".join(lines)


@tracer.capture_method
def request_approval(
    event: dict[str, Any], settings: Settings, table: PipelineTable, sns: Any, now: datetime
) -> dict[str, Any]:
    gate = Gate.model_validate(event["gate"])
    dataset = Dataset.model_validate(event["dataset"])
    execution_name, execution_id = str(event["execution_name"]), str(event["execution_id"])
    deadline = int(now.timestamp()) + settings.approval_timeout_seconds
    table.await_approval(gate.model_package_arn, str(event["task_token"]), execution_id, deadline)
    # The lease would expire long before a 3-day wait; while it is held, a new upload queues behind this run.
    if not table.extend_lease(execution_id, deadline + settings.lease_seconds):
        logger.warning("the lease is not this run's: a new upload may start during the wait")
    subject, body = approval_notice(
        gate,
        dataset,
        execution_name,
        execution_id,
        datetime.fromtimestamp(deadline, UTC),
        settings.run_report_uri(execution_name),
    )
    message_id = None
    if settings.failure_topic_arn:
        message_id = sns.publish(TopicArn=settings.failure_topic_arn, Subject=subject, Message=body)["MessageId"]
    result = {"model_package_arn": gate.model_package_arn, "deadline": deadline, "message_id": message_id}
    logger.info("waiting for approval", extra=result)
    return result


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = load_settings()
    table = PipelineTable(get_client("dynamodb"), settings.pipeline_table)
    return request_approval(event, settings, table, get_client("sns"), datetime.now(UTC))
