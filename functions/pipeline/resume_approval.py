"""ResumeApproval: a person's decision in the model registry resumes the run waiting for it.

Triggered by EventBridge's ``SageMaker Model Package State Change`` events of this pipeline's package group with
status Approved or Rejected (template.yaml). It takes the waiting run's entry for that package (deleted in the
same call, so a duplicate event resumes nothing) and sends the decision to its task token: ``SendTaskSuccess``
with ``{"status", "description", "approved_by"}`` (who changed the package, from DescribeModelPackage's
LastModifiedBy) for both outcomes; the state machine's IsApproved choice routes Approved to the deployment and
Rejected to ModelRejected. Outcomes without a resume: no waiting run for the package (the pipeline's own
ApproveModel/RejectModel updates, an old package, a duplicate event), or a token the run no longer accepts (the
approval arrived after the timeout: logged, the package keeps its new status, nothing is deployed).
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from pipeline.common.clients import get_client
from pipeline.common.config import load_settings
from pipeline.common.model_packages import approver
from pipeline.common.observability import logger, tracer
from pipeline.common.pipeline_state import PipelineTable
from pipeline.common.sagemaker_gateway import SageMakerGateway, sagemaker_gateway

DECISIONS = ("Approved", "Rejected")
# Step Functions' answers for a token whose task is over (timed out, or the execution ended).
GONE = {"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"}


@tracer.capture_method
def resume_approval(
    event: dict[str, Any], table: PipelineTable, sagemaker: SageMakerGateway, stepfunctions: Any
) -> dict[str, Any]:
    detail = event.get("detail") or {}
    arn = str(detail.get("ModelPackageArn", ""))
    status = detail.get("ModelApprovalStatus")
    if status not in DECISIONS:
        return {"model_package_arn": arn, "outcome": "ignored", "why": f"status {status} is no decision"}
    waiting = table.take_approval(arn)
    if waiting is None:
        logger.info("no run waits for this package", extra={"model_package_arn": arn, "status": status})
        return {"model_package_arn": arn, "outcome": "no waiting run"}
    described = sagemaker.call("describe_model_package", ModelPackageName=arn)
    decision = {
        "status": str(described.get("ModelApprovalStatus", status)),
        "description": str(described.get("ApprovalDescription") or ""),
        "approved_by": approver(described),
        "model_package_arn": arn,
    }
    try:
        stepfunctions.send_task_success(taskToken=waiting["task_token"], output=json.dumps(decision))
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in GONE:
            table.await_approval(arn, waiting["task_token"], waiting["execution"], int(waiting["deadline"]))
            raise  # EventBridge retries; the entry is back for that attempt
        logger.warning(
            "the decision came after the run stopped waiting: nothing is deployed",
            extra={"model_package_arn": arn, "execution": waiting["execution"], "status": decision["status"]},
        )
        return {"model_package_arn": arn, "outcome": "late", "execution": waiting["execution"]}
    logger.info("run resumed", extra=decision | {"execution": waiting["execution"]})
    return {"model_package_arn": arn, "outcome": "resumed", "execution": waiting["execution"], **decision}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = load_settings()
    table = PipelineTable(get_client("dynamodb"), settings.pipeline_table)
    return resume_approval(event, table, sagemaker_gateway(), get_client("stepfunctions"))
