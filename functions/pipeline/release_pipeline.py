"""ReleasePipeline state: on every ending, give the lease back, or pass it to one follow-up run for the waiting trigger.

Input (the state machine's Parameters)::

    {"execution_name": "...", "execution_id": "<execution ARN>"}

The lease is read from the table rather than from ``$.lease``: a run whose ClaimPipeline failed has no ``$.lease``,
and must still end through here. Output (``$.release``)::

    {"released": true, "started": "<execution name>" | null, "trigger": "<what it runs>" | null, "reason": "..."}

With no trigger waiting, the lease is deleted in one transaction with a check that none waits (so a trigger queued
at that moment is either seen here or sees the lease gone and runs itself). With one waiting, one transaction
deletes it and re-points the lease at the follow-up execution; then StartExecution starts it under a name derived
from the queued execution. A retried attempt finds the lease already handed over by this run and asks for the
same name again, which Step Functions answers without starting a second run.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from pipeline.common import triggers
from pipeline.common.clients import get_client
from pipeline.common.config import load_settings
from pipeline.common.observability import logger, metrics, tracer
from pipeline.common.pipeline_state import PipelineTable

_ATTEMPTS = 5


class ReleaseInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    execution_name: str
    execution_id: str


def start_successor(sfn: Any, own_execution: str, name: str, trigger_json: str) -> str:
    """StartExecution, idempotent by name: an execution of that name already there was started by us."""
    try:
        return str(
            sfn.start_execution(
                stateMachineArn=triggers.state_machine_arn(own_execution), name=name, input=trigger_json
            )["executionArn"]
        )
    except ClientError as error:
        if str(error.response.get("Error", {}).get("Code", "")) != "ExecutionAlreadyExists":
            raise
        logger.info("follow-up run already started by an earlier attempt", extra={"follow_up": name})
        return triggers.successor_arn(own_execution, name)


@tracer.capture_method
def release_pipeline(
    state_input: ReleaseInput, table: PipelineTable, sfn: Any, lease_seconds: int, now: datetime
) -> dict[str, Any]:
    me = state_input.execution_id
    for _ in range(_ATTEMPTS):
        lease = table.get_lease()
        if lease is not None and lease.handed_over_by == me and lease.successor_input is not None:
            # A retried attempt: the hand-over happened, the start may not have.
            name = triggers.execution_name(lease.holder)
            start_successor(sfn, me, name, lease.successor_input)
            trigger = triggers.describe(json.loads(lease.successor_input))
            return _result(True, name, trigger, f"handed the pipeline to {name} for the {trigger}")
        if lease is None or lease.holder != me:
            holder = triggers.execution_name(lease.holder) if lease else "nobody"
            return _result(False, None, None, f"this run did not hold the lease (held by {holder}); nothing to do")
        pending = table.get_pending()
        if pending is None:
            if table.release(me):
                return _result(True, None, None, "no trigger waited; the pipeline is free")
            continue  # a trigger was queued meanwhile: hand over to it
        name = triggers.successor_name(pending.queued_by)
        successor = triggers.successor_arn(me, name)
        if not table.hand_over(me, pending, successor, now, lease_seconds):
            continue  # a newer trigger replaced it meanwhile
        start_successor(sfn, me, name, json.dumps(pending.trigger, sort_keys=True))
        trigger = triggers.describe(pending.trigger)
        return _result(True, name, trigger, f"started {name} for the {trigger} that waited for this run")
    raise RuntimeError(f"the waiting trigger changed {_ATTEMPTS} times while this run released the pipeline")


def _result(released: bool, started: str | None, trigger: str | None, reason: str) -> dict[str, Any]:
    return {"released": released, "started": started, "trigger": trigger, "reason": reason}


@logger.inject_lambda_context(correlation_id_path="execution_name", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state_input = ReleaseInput.model_validate(event)
    settings = load_settings()
    table = PipelineTable(get_client("dynamodb"), settings.pipeline_table)
    result = release_pipeline(
        state_input, table, get_client("stepfunctions"), settings.lease_seconds, datetime.now(UTC)
    )
    if result["started"]:
        metrics.add_metric(name="FollowUpRunsStarted", unit=MetricUnit.Count, value=1)
    logger.info("pipeline released", extra={"release": result})
    return result
