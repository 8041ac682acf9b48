"""ClaimPipeline state: one run at a time. Takes the pipeline lease, or queues this trigger behind the running run.

Input (the state machine's Parameters)::

    {"event": <the state: execution input + settings>, "execution_name": "...", "execution_id": "<execution ARN>",
     "execution_start_time": "2026-11-25T01:53:43.123Z"}

Output (``$.lease``)::

    {"acquired": true, "reason": "...", "expires_at": "...", "took_over": "<name>" | null,
     "handed_over_by": "<name>" | null, "superseded": "<trigger>" | null}
    {"acquired": false, "reason": "...", "holder": "<name>", "queued": true | false}

The lease is taken when it is free, expired, or already ours (a retried attempt, or a lease handed over by the run
that started this one). A holder whose execution is no longer RUNNING (it failed in a way that skipped
ReleasePipeline, was stopped or timed out) is taken over at once instead of after the expiry. When a running
run holds it, this trigger becomes THE waiting trigger unless a newer one already waits; the holder starts one
follow-up run with it when it ends. A waiting trigger older than the one that takes the lease is dropped: the
pipeline's job is a model of the newest data.
"""

from __future__ import annotations

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
from pipeline.common.pipeline_state import Lease, PipelineTable, iso

# A lease handed to a follow-up run names an execution that exists only once StartExecution returns: until then
# "does not exist" means "being started", not "dead".
STARTING_GRACE_SECONDS = 300
_ATTEMPTS = 4


class ClaimInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    event: dict[str, Any]
    execution_name: str
    execution_id: str
    execution_start_time: datetime


def holder_status(sfn: Any, lease: Lease, now: datetime) -> str:
    """RUNNING, a terminal status, STARTING (a fresh handover) or UNKNOWN (we may not look: treat as running)."""
    try:
        return str(sfn.describe_execution(executionArn=lease.holder)["status"])
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code == "ExecutionDoesNotExist":
            acquired = datetime.fromisoformat(lease.acquired_at.replace("Z", "+00:00"))
            return "STARTING" if (now - acquired).total_seconds() < STARTING_GRACE_SECONDS else "MISSING"
        logger.warning("cannot describe the lease holder; assuming it runs", extra={"holder": lease.holder})
        return "UNKNOWN"


def _expiry(now: datetime, seconds: int) -> str:
    return iso(datetime.fromtimestamp(int(now.timestamp()) + seconds, UTC))


@tracer.capture_method
def claim_pipeline(
    state_input: ClaimInput, table: PipelineTable, sfn: Any, lease_seconds: int, now: datetime
) -> dict[str, Any]:
    trigger = triggers.original_input(state_input.event)
    me = state_input.execution_id
    recency = triggers.recency(trigger, state_input.execution_start_time, now)
    what = triggers.describe(trigger)
    for _ in range(_ATTEMPTS):
        acquired, before = table.try_acquire(me, now, lease_seconds)
        took_over = None
        if not acquired:
            assert before is not None  # the condition failed, so a lease was there
            status = holder_status(sfn, before, now)
            if status in ("RUNNING", "STARTING", "UNKNOWN"):
                return _queue(table, trigger, what, recency, me, now)
            if not table.take_over(before, me, now, lease_seconds):
                continue  # another trigger took it first: look again
            took_over = f"{triggers.execution_name(before.holder)} ({status})"
        superseded = table.drop_superseded(recency)
        return {
            "acquired": True,
            "reason": _acquired_reason(what, before, me, took_over, now),
            "expires_at": _expiry(now, lease_seconds),
            "took_over": took_over,
            "handed_over_by": triggers.execution_name(before.handed_over_by)
            if before and before.holder == me and before.handed_over_by
            else None,
            "superseded": triggers.describe(superseded.trigger) if superseded else None,
        }
    raise RuntimeError(f"the pipeline lease changed hands {_ATTEMPTS} times while this run tried to take it")


def _acquired_reason(what: str, before: Lease | None, me: str, took_over: str | None, now: datetime) -> str:
    if took_over:
        return f"{what}: took over the lease of {took_over}, which ended without releasing it"
    if before is None:
        return f"{what}: the pipeline was free"
    if before.holder == me and before.handed_over_by:
        return f"{what}: queued behind {triggers.execution_name(before.handed_over_by)}, which started this run"
    if before.holder == me:
        return f"{what}: this run already held the lease (retried attempt)"
    return (
        f"{what}: took over the expired lease of {triggers.execution_name(before.holder)} "
        f"(expired {iso(datetime.fromtimestamp(before.expires_at, UTC))})"
    )


def _queue(
    table: PipelineTable, trigger: dict[str, Any], what: str, recency: str, me: str, now: datetime
) -> dict[str, Any]:
    queued = table.queue(trigger, recency, me, now)
    # The holder may have released between our failed write and the queue write; its release only hands over a
    # trigger it sees, so a trigger written after it would wait for nobody: look once more.
    current = table.get_lease()
    if current is None or current.expires_at < int(now.timestamp()):
        if queued:
            table.drop_pending(me)
        raise _LeaseFreedMeanwhile()
    holder_name = triggers.execution_name(current.holder)
    if queued and holder_name == triggers.successor_name(me):
        reason = f"{what}: the run that just ended started {holder_name} with this trigger"
    elif queued:
        reason = f"{what}: run {holder_name} holds the pipeline; this trigger runs after it (newest trigger wins)"
    else:
        reason = f"{what}: run {holder_name} holds the pipeline and a newer trigger already waits for it; skipped"
    return {"acquired": False, "reason": reason, "holder": holder_name, "queued": queued}


class _LeaseFreedMeanwhile(Exception):
    """Internal: the lease was released while this trigger was being queued; the claim starts over."""


def claim_with_restarts(
    state_input: ClaimInput, table: PipelineTable, sfn: Any, lease_seconds: int, now: datetime
) -> dict[str, Any]:
    for _ in range(_ATTEMPTS):
        try:
            return claim_pipeline(state_input, table, sfn, lease_seconds, now)
        except _LeaseFreedMeanwhile:
            continue
    raise RuntimeError(f"the pipeline lease was released and retaken {_ATTEMPTS} times while this run queued")


@logger.inject_lambda_context(correlation_id_path="execution_name", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state_input = ClaimInput.model_validate(event)
    settings = load_settings()
    table = PipelineTable(get_client("dynamodb"), settings.pipeline_table)
    result = claim_with_restarts(
        state_input, table, get_client("stepfunctions"), settings.lease_seconds, datetime.now(UTC)
    )
    metrics.add_metric(name="TriggersRun" if result["acquired"] else "TriggersQueued", unit=MetricUnit.Count, value=1)
    logger.info("pipeline lease", extra={"lease": result})
    return result
