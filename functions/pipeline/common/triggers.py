"""What started a run, as the lease and the dedupe states need it: the original input, its time, a readable line."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from pipeline.common.pipeline_state import iso

# Keys the state machine adds to the execution input before ClaimPipeline; never part of a trigger.
_ADDED_BY_THE_STATE_MACHINE = ("settings",)
EXECUTION_NAME_MAX = 80
SUCCESSOR_PREFIX = "after-"


def original_input(state: dict[str, Any]) -> dict[str, Any]:
    """The execution input as the trigger sent it (what a follow-up run must be started with)."""
    return {key: value for key, value in state.items() if key not in _ADDED_BY_THE_STATE_MACHINE}


def is_scheduled(trigger: dict[str, Any]) -> bool:
    return trigger.get("trigger") == "schedule" or trigger.get("detail-type") == "Scheduled Event"


def is_forced(trigger: dict[str, Any]) -> bool:
    return trigger.get("force") is True


def trigger_time(trigger: dict[str, Any], execution_start_time: datetime) -> datetime:
    """When the trigger happened: the EventBridge event's time, else when the execution started."""
    raw = trigger.get("time")
    if isinstance(raw, str):
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            pass
    return execution_start_time


def recency(trigger: dict[str, Any], execution_start_time: datetime, now: datetime) -> str:
    """Orders triggers: their time to the second (events carry no more), then their arrival (``now``)."""
    moment = trigger_time(trigger, execution_start_time).astimezone(UTC).replace(microsecond=0)
    return f"{iso(moment)}|{iso(now)}"


def describe(trigger: dict[str, Any]) -> str:
    """One line for the console and the logs: which upload, schedule or manual run this is."""
    force = " (force)" if is_forced(trigger) else ""
    detail = trigger.get("detail")
    if trigger.get("source") == "aws.s3" and isinstance(detail, dict):
        bucket = (detail.get("bucket") or {}).get("name")
        obj = detail.get("object") or {}
        version = f" (version {obj['version-id']})" if obj.get("version-id") else ""
        return f"upload of s3://{bucket}/{obj.get('key')}{version}{force}"
    if is_scheduled(trigger):
        return f"scheduled run{force}"
    dataset = trigger.get("dataset")
    if isinstance(dataset, dict):
        return f"manual run on s3://{dataset.get('bucket')}/{dataset.get('key')}{force}"
    return f"manual run{force}"


def execution_name(execution_arn: str) -> str:
    return execution_arn.rsplit(":", 1)[-1]


def state_machine_arn(execution_arn: str) -> str:
    """arn:...:execution:<machine>:<name> → arn:...:stateMachine:<machine>."""
    parts = execution_arn.split(":")
    if len(parts) < 8 or parts[5] != "execution":
        raise ValueError(f"{execution_arn!r} is not a Step Functions execution ARN")
    return ":".join([*parts[:5], "stateMachine", parts[6]])


def successor_name(queued_by: str) -> str:
    """The follow-up run's execution name, derived from the execution that queued the trigger.

    Deterministic, so a retried ReleasePipeline asks for the same name and cannot start a second run; unique,
    because the queued execution's own name is.
    """
    name = f"{SUCCESSOR_PREFIX}{execution_name(queued_by)}"
    if len(name) <= EXECUTION_NAME_MAX:
        return name
    digest = hashlib.sha256(queued_by.encode()).hexdigest()[:12]
    return f"{name[: EXECUTION_NAME_MAX - 13]}-{digest}"


def successor_arn(own_execution_arn: str, name: str) -> str:
    machine = state_machine_arn(own_execution_arn).split(":")
    return ":".join([*machine[:5], "execution", machine[6], name])
