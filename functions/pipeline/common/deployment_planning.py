"""The blue/green DeploymentConfig for an endpoint update, chosen from the instance count (pure; no AWS).

One instance cannot split traffic, so it gets ALL_AT_ONCE with a bake period (TerminationWaitInSeconds) during
which the rollback alarms can still send traffic back to the old fleet. From two instances a one-instance
CANARY is at most half the fleet; LINEAR moves about a quarter of the fleet per step (the API allows 10–50%).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipeline.common.errors import DeploymentFailed

STRATEGIES = ("AUTO", "ALL_AT_ONCE", "CANARY", "LINEAR")
MAX_WAIT_SECONDS = 3600
MAX_ALARMS = 10
EXECUTION_TIMEOUT_RANGE = (600, 28800)
# Time for SageMaker to provision the new fleet and pass health checks, on top of the waits we ask for.
PROVISIONING_ALLOWANCE_SECONDS = 1800


@dataclass(frozen=True)
class DeploymentPlan:
    strategy: str
    instance_count: int
    step_instances: int
    wait_seconds: int
    bake_seconds: int
    max_execution_seconds: int
    alarms: tuple[str, ...]

    def deployment_config(self) -> dict[str, Any]:
        routing: dict[str, Any] = {"Type": self.strategy, "WaitIntervalInSeconds": self.wait_seconds}
        if self.strategy == "CANARY":
            routing["CanarySize"] = {"Type": "INSTANCE_COUNT", "Value": self.step_instances}
        elif self.strategy == "LINEAR":
            routing["LinearStepSize"] = {"Type": "INSTANCE_COUNT", "Value": self.step_instances}
        config: dict[str, Any] = {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": routing,
                "TerminationWaitInSeconds": self.bake_seconds,
                "MaximumExecutionTimeoutInSeconds": self.max_execution_seconds,
            }
        }
        if self.alarms:
            config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": alarm} for alarm in self.alarms]}
        return config

    def summary(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "instance_count": self.instance_count,
            "step_instances": self.step_instances,
            "wait_seconds": self.wait_seconds,
            "bake_seconds": self.bake_seconds,
            "max_execution_seconds": self.max_execution_seconds,
            "alarms": list(self.alarms),
        }


def _resolved_strategy(requested: str, instance_count: int) -> str:
    strategy = requested.strip().upper()
    if strategy not in STRATEGIES:
        raise DeploymentFailed(f"DEPLOYMENT_STRATEGY={requested!r} is not one of {', '.join(STRATEGIES)}.")
    if strategy == "AUTO":
        return "ALL_AT_ONCE" if instance_count == 1 else "CANARY"
    if strategy in {"CANARY", "LINEAR"} and instance_count < 2:
        raise DeploymentFailed(
            f"DEPLOYMENT_STRATEGY={strategy} needs at least 2 endpoint instances (a step may be at most 50% of the "
            f"fleet), but ENDPOINT_INSTANCE_COUNT is {instance_count}. Raise the count, or use AUTO or ALL_AT_ONCE, "
            "which bakes the single instance behind the rollback alarms."
        )
    return strategy


def plan_deployment(
    requested_strategy: str, instance_count: int, bake_seconds: int, alarms: tuple[str, ...]
) -> DeploymentPlan:
    if instance_count < 1:
        raise DeploymentFailed(f"ENDPOINT_INSTANCE_COUNT must be at least 1, got {instance_count}.")
    if not 0 <= bake_seconds <= MAX_WAIT_SECONDS:
        raise DeploymentFailed(f"BAKE_TIME_SECONDS must be between 0 and {MAX_WAIT_SECONDS}, got {bake_seconds}.")
    if len(alarms) > MAX_ALARMS:
        raise DeploymentFailed(f"at most {MAX_ALARMS} rollback alarms are allowed, got {len(alarms)}: {list(alarms)}.")
    strategy = _resolved_strategy(requested_strategy, instance_count)
    if strategy == "ALL_AT_ONCE":
        step, wait, shifts = instance_count, 0, 0
    elif strategy == "CANARY":
        step, wait, shifts = 1, bake_seconds, 1
    else:
        step, wait = math.ceil(instance_count / 4), bake_seconds
        shifts = math.ceil(instance_count / step)
    # At most 4 shifts of at most an hour plus an hour's bake: always within the API's 8-hour maximum.
    timeout = max(EXECUTION_TIMEOUT_RANGE[0], wait * shifts + bake_seconds + PROVISIONING_ALLOWANCE_SECONDS)
    return DeploymentPlan(strategy, instance_count, step, wait, bake_seconds, timeout, alarms)
