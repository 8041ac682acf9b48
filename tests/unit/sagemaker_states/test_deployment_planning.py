"""Blue/green plans: what each strategy becomes for an instance count, and what is refused up front."""

from __future__ import annotations

import pytest

from pipeline.common.deployment_planning import plan_deployment
from pipeline.common.errors import DeploymentFailed
from pipeline.common.request_validation import request_problems

ALARMS = ("dog-breed-5xx", "dog-breed-latency")


def _valid_for_the_api(config: dict[str, object]) -> list[str]:
    return request_problems(
        "sagemaker", "update_endpoint", {"EndpointName": "e", "EndpointConfigName": "c", "DeploymentConfig": config}
    )


def test_auto_with_one_instance_is_all_at_once_with_a_bake_period() -> None:
    plan = plan_deployment("AUTO", 1, 600, ALARMS)

    assert plan.deployment_config() == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
            "TerminationWaitInSeconds": 600,
            "MaximumExecutionTimeoutInSeconds": 2400,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "dog-breed-5xx"}, {"AlarmName": "dog-breed-latency"}]},
    }
    assert _valid_for_the_api(plan.deployment_config()) == []


def test_auto_with_two_instances_sends_a_one_instance_canary() -> None:
    plan = plan_deployment("auto", 2, 300, ALARMS)

    routing = plan.deployment_config()["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing == {
        "Type": "CANARY",
        "WaitIntervalInSeconds": 300,
        "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
    }
    assert plan.max_execution_seconds > 300 + 300
    assert _valid_for_the_api(plan.deployment_config()) == []


@pytest.mark.parametrize(("count", "step"), [(2, 1), (3, 1), (4, 1), (5, 2), (10, 3), (40, 10)])
def test_linear_steps_stay_between_ten_and_fifty_percent(count: int, step: int) -> None:
    plan = plan_deployment("LINEAR", count, 120, ALARMS)

    size = plan.deployment_config()["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["LinearStepSize"]
    assert size == {"Type": "INSTANCE_COUNT", "Value": step}
    assert 0.1 <= step / count <= 0.5


def test_timeout_exceeds_the_total_wait_of_a_long_linear_update() -> None:
    plan = plan_deployment("LINEAR", 8, 3600, ALARMS)

    # 4 steps of 2 instances, each followed by a wait, then the bake before the old fleet goes.
    assert plan.max_execution_seconds > 4 * 3600 + 3600
    assert _valid_for_the_api(plan.deployment_config()) == []


@pytest.mark.parametrize("strategy", ["CANARY", "LINEAR"])
def test_split_traffic_with_one_instance_is_refused_with_the_way_out(strategy: str) -> None:
    with pytest.raises(DeploymentFailed, match=r"at least 2 endpoint instances.*ENDPOINT_INSTANCE_COUNT is 1.*AUTO"):
        plan_deployment(strategy, 1, 600, ALARMS)


def test_unknown_strategy_is_refused() -> None:
    with pytest.raises(DeploymentFailed, match="'ROLLING' is not one of AUTO, ALL_AT_ONCE, CANARY, LINEAR"):
        plan_deployment("ROLLING", 3, 600, ALARMS)


def test_bake_time_above_the_api_limit_is_refused() -> None:
    with pytest.raises(DeploymentFailed, match="BAKE_TIME_SECONDS must be between 0 and 3600"):
        plan_deployment("AUTO", 1, 3601, ALARMS)


@pytest.mark.parametrize("strategy", ["ALL_AT_ONCE", "CANARY", "LINEAR"])
def test_longest_waits_still_fit_the_api_timeout_range(strategy: str) -> None:
    for count in range(2, 101):
        plan = plan_deployment(strategy, count, 3600, ALARMS)
        assert _valid_for_the_api(plan.deployment_config()) == [], count


def test_more_than_ten_alarms_are_refused() -> None:
    with pytest.raises(DeploymentFailed, match="at most 10 rollback alarms"):
        plan_deployment("AUTO", 1, 0, tuple(f"alarm-{n}" for n in range(11)))


def test_without_alarms_there_is_no_rollback_configuration() -> None:
    config = plan_deployment("AUTO", 1, 0, ()).deployment_config()

    assert "AutoRollbackConfiguration" not in config
    assert config["BlueGreenUpdatePolicy"]["MaximumExecutionTimeoutInSeconds"] == 1800
    assert _valid_for_the_api(config) == []
