"""Deliver EventBridge events to Step Functions and Lambda targets, as AWS does and moto 5.2.5 does not.

moto's ``Rule.send_to_targets`` only knows logs, SQS, event-bus, archive and API-destination targets; for a
state machine or function target it raises, and S3's EventBridge hook swallows that error and stops delivering
to every later rule. It also ignores a target's ``Input``/``InputPath``, lets DISABLED rules receive events, and
lets a schedule-only rule (no pattern) match every event. ``EventBridgeRouter`` replaces ``send_to_targets``:

- DISABLED rules get nothing; a rule with only a ``ScheduleExpression`` gets only its own ticks
  (``fire_schedule``), never ordinary events;
- ``Input``, ``InputPath`` and ``InputTransformer`` shape the payload;
- a ``states`` target starts an execution (UUID name, like EventBridge), a ``lambda`` target invokes the function
  (synchronously here; EventBridge invokes asynchronously);
- other target types are left to moto;
- a failing target is recorded in ``deliveries`` and does not stop delivery to other targets or rules.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jsonpath_ng.ext import parse as parse_jsonpath
from moto.awslambda.utils import get_backend as lambda_backend
from moto.core import DEFAULT_ACCOUNT_ID
from moto.events.models import Rule, events_backends
from moto.events.utils import EventTemplateParser
from moto.stepfunctions.responses import get_backend as stepfunctions_backend
from moto.utilities.arns import parse_arn

from offline.moto_shims._base import MotoPatch, patch_attribute, require_pinned_moto

logger = logging.getLogger(__name__)

_original_send_to_targets = Rule.send_to_targets
SCHEDULED_EVENT = "Scheduled Event"


@dataclass(frozen=True)
class Delivery:
    """One event handed to one target: what was sent, and what came of it."""

    rule_name: str
    target_arn: str
    payload: Any
    execution_arn: str | None = None
    error: str | None = None


def _iso_time(value: Any) -> Any:
    if isinstance(value, int | float):  # moto's S3 hook stores a unix timestamp; EventBridge sends ISO 8601
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def target_payload(target: dict[str, Any], event: dict[str, Any]) -> Any:
    """The payload EventBridge sends to a target, after its Input, InputPath or InputTransformer."""
    if "Input" in target:
        return json.loads(target["Input"])
    if "InputPath" in target:
        matches = parse_jsonpath(target["InputPath"]).find(event)
        return matches[0].value if matches else None
    if "InputTransformer" in target:
        transformer = target["InputTransformer"]
        return EventTemplateParser.parse(
            input_template=transformer.get("InputTemplate"),
            input_paths_map=transformer.get("InputPathsMap", {}),
            event={"ingestion-time": event.get("time"), **event},
        )
    return event


def _is_schedule_only(rule: Rule) -> bool:
    return bool(rule.scheduled_expression) and not rule.event_pattern.get_pattern()


def _is_tick_of(rule: Rule, event: dict[str, Any]) -> bool:
    return event.get("detail-type") == SCHEDULED_EVENT and event.get("resources") == [rule.arn]


class EventBridgeRouter(MotoPatch):
    """Patch ``Rule.send_to_targets``; ``deliveries`` lists every event sent to a states or lambda target."""

    def __init__(self) -> None:
        super().__init__()
        self.deliveries: list[Delivery] = []

    def _patchers_to_start(self) -> list[Any]:
        router = self

        def send_to_targets(rule: Rule, original_event: dict[str, Any], transform_input: bool = True) -> None:
            router.route(rule, original_event, transform_input)

        return [patch_attribute(Rule, "send_to_targets", send_to_targets)]

    def route(self, rule: Rule, original_event: dict[str, Any], transform_input: bool = True) -> None:
        if rule.state != "ENABLED":
            return
        if _is_schedule_only(rule):
            if not _is_tick_of(rule, original_event):
                return
        elif not rule.event_pattern.matches_event(original_event):
            return
        event = {**original_event, "time": _iso_time(original_event.get("time"))}
        ours = [t for t in rule.targets if parse_arn(t["Arn"]).service in ("states", "lambda")]
        others = [t for t in rule.targets if t not in ours]
        for target in ours:
            self.deliveries.append(self._deliver(rule, target, event))
        if others:
            all_targets = rule.targets
            rule.targets = others
            try:
                _original_send_to_targets(rule, event, transform_input)
            finally:
                rule.targets = all_targets

    def _deliver(self, rule: Rule, target: dict[str, Any], event: dict[str, Any]) -> Delivery:
        arn = parse_arn(target["Arn"])
        payload: Any = None
        try:
            payload = target_payload(target, event)
            if arn.service == "states":
                execution = stepfunctions_backend(arn.account, arn.region).start_execution(
                    state_machine_arn=target["Arn"], name=str(uuid.uuid4()), execution_input=json.dumps(payload)
                )
                return Delivery(rule.name, target["Arn"], payload, execution_arn=execution.execution_arn)
            lambda_backend(arn.account, arn.region).invoke(
                function_name=target["Arn"],
                qualifier=None,
                body=json.dumps(payload),
                headers={"x-amz-invocation-type": "Event"},
                response_headers={},
            )
            return Delivery(rule.name, target["Arn"], payload)
        except Exception as exc:  # EventBridge records a failed invocation and carries on with other targets
            logger.warning("EventBridge rule %s could not deliver to %s: %r", rule.name, target["Arn"], exc)
            return Delivery(rule.name, target["Arn"], payload, error=f"{type(exc).__name__}: {exc}")


def fire_schedule(
    rule_name: str, *, account: str = DEFAULT_ACCOUNT_ID, region: str = "us-east-1", bus: str = "default"
) -> dict[str, Any]:
    """Send one tick of a ``ScheduleExpression`` rule to its targets (moto never fires schedules).

    Returns the ``Scheduled Event`` that was sent. A DISABLED rule receives nothing, as on AWS.
    """
    require_pinned_moto()
    rule = events_backends[account][region].event_buses[bus].rules.get(rule_name)
    if rule is None:
        raise KeyError(f"no EventBridge rule {rule_name!r} on bus {bus!r} in {account}/{region}")
    if not rule.scheduled_expression:
        raise ValueError(f"rule {rule_name!r} has no ScheduleExpression, so it has no schedule to fire")
    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": SCHEDULED_EVENT,
        "source": "aws.events",
        "account": account,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule.arn],
        "detail": {},
    }
    rule.send_to_targets(event, transform_input=False)
    return event
