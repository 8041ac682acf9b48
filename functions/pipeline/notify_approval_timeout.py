"""NotifyApprovalTimeout: nobody decided within ApprovalTimeoutHours; the run ends ApprovalTimedOut.

Input: ``{"gate": $.gate, "execution_name", "execution_id"}``. The package stays PendingManualApproval (an approval
now changes the registry only: ResumeApproval finds no waiting run), the endpoint is untouched, the waiting entry is
removed and the notice says so; RecordRun and ReleasePipeline follow, which frees the lease.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.common.clients import get_client
from pipeline.common.config import Settings, load_settings
from pipeline.common.observability import logger, tracer
from pipeline.common.pipeline_state import PipelineTable
from pipeline.common.state_models import Gate
from pipeline.notify_failure import SUBJECT_LIMIT, console_link


@tracer.capture_method
def notify_approval_timeout(
    event: dict[str, Any], settings: Settings, table: PipelineTable, sns: Any
) -> dict[str, Any]:
    gate = Gate.model_validate(event["gate"])
    execution_name = str(event["execution_name"])
    table.take_approval(gate.model_package_arn)
    body = "\n".join(
        [
            f"Nobody approved or rejected the model of run {execution_name} within "
            f"{settings.approval_timeout_seconds / 3600:g} hours (ApprovalTimeoutHours). The run ended "
            "ApprovalTimedOut; the endpoint was not changed.",
            "",
            f"Model package (still PendingManualApproval): {gate.model_package_arn}",
            "Approving it now records the decision in the registry but deploys nothing; upload the dataset again "
            "(or start a run with force) to train and ask again.",
            f"Run report: {settings.run_report_uri(execution_name)}",
            f"Execution: {console_link(str(event.get('execution_id', '')))}",
        ]
    )
    message_id = None
    if settings.failure_topic_arn:
        subject = f"Approval timed out: {execution_name}"[:SUBJECT_LIMIT]
        message_id = sns.publish(TopicArn=settings.failure_topic_arn, Subject=subject, Message=body)["MessageId"]
    logger.info("approval timed out", extra={"model_package_arn": gate.model_package_arn})
    return {"model_package_arn": gate.model_package_arn, "message_id": message_id}


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = load_settings()
    table = PipelineTable(get_client("dynamodb"), settings.pipeline_table)
    return notify_approval_timeout(event, settings, table, get_client("sns"))
