"""ClaimPipeline and ReleasePipeline against the template's table in moto and a fake Step Functions."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import boto3
import pytest
from conftest import LEASE_SECONDS, MACHINE, NOW, REGION, FakeStepFunctions, execution_arn, s3_event

from pipeline import claim_pipeline as claim_module
from pipeline import release_pipeline as release_module
from pipeline.claim_pipeline import ClaimInput, claim_with_restarts
from pipeline.common.pipeline_state import PipelineTable
from pipeline.release_pipeline import ReleaseInput, release_pipeline


def claim(
    table: PipelineTable, sfn: FakeStepFunctions, name: str, event: dict[str, Any], at: timedelta = timedelta()
) -> dict[str, Any]:
    state_input = ClaimInput(
        event={**event, "settings": {"poll_seconds": 60}},
        execution_name=name,
        execution_id=execution_arn(name),
        execution_start_time=NOW + at,
    )
    sfn.statuses.setdefault(execution_arn(name), "RUNNING")
    return claim_with_restarts(state_input, table, sfn, LEASE_SECONDS, NOW + at)


def release(table: PipelineTable, sfn: FakeStepFunctions, name: str, at: timedelta = timedelta()) -> dict[str, Any]:
    return release_pipeline(
        ReleaseInput(execution_name=name, execution_id=execution_arn(name)), table, sfn, LEASE_SECONDS, NOW + at
    )


def test_free_pipeline_is_claimed_with_an_expiring_lease(table: PipelineTable, sfn: FakeStepFunctions) -> None:
    # GIVEN no lease WHEN a run claims the pipeline
    result = claim(table, sfn, "run-1", s3_event("incoming/a.zip"))
    # THEN it holds a lease that expires LeaseSeconds from now, and says why it may run
    assert result["acquired"] is True
    assert result["reason"] == "upload of s3://data/incoming/a.zip (version v1): the pipeline was free"
    lease = table.get_lease()
    assert lease is not None
    assert (lease.holder, lease.expires_at) == (execution_arn("run-1"), int(NOW.timestamp()) + LEASE_SECONDS)


def test_retried_claim_of_the_holder_keeps_the_lease(table: PipelineTable, sfn: FakeStepFunctions) -> None:
    claim(table, sfn, "run-1", s3_event("incoming/a.zip"))
    again = claim(table, sfn, "run-1", s3_event("incoming/a.zip"), at=timedelta(seconds=5))
    assert again["acquired"] is True
    assert "already held the lease" in again["reason"]


def test_trigger_during_a_run_is_queued_with_its_original_input(table: PipelineTable, sfn: FakeStepFunctions) -> None:
    # GIVEN a running holder
    claim(table, sfn, "run-1", s3_event("incoming/a.zip"))
    # WHEN another upload arrives
    event = s3_event("incoming/b.zip", time="2026-11-25T03:00:05Z")
    result = claim(table, sfn, "run-2", event, at=timedelta(seconds=5))
    # THEN it is queued behind the holder, as the trigger sent it (without the state machine's settings)
    assert result == {
        "acquired": False,
        "reason": "upload of s3://data/incoming/b.zip (version v1): run run-1 holds the pipeline; this trigger runs "
        "after it (newest trigger wins)",
        "holder": "run-1",
        "queued": True,
    }
    pending = table.get_pending()
    assert pending is not None
    assert (pending.trigger, pending.queued_by) == (event, execution_arn("run-2"))


def test_waiting_triggers_coalesce_to_the_newest(table: PipelineTable, sfn: FakeStepFunctions) -> None:
    claim(table, sfn, "run-1", s3_event("incoming/a.zip"))
    newer = claim(table, sfn, "run-3", s3_event("incoming/c.zip", time="2026-11-25T03:00:09Z"), timedelta(seconds=9))
    # WHEN an older event (a late redelivery) arrives after a newer one
    older = claim(table, sfn, "run-2", s3_event("incoming/b.zip", time="2026-11-25T03:00:02Z"), timedelta(seconds=10))
    # THEN the newer one still waits, and the older one says it was skipped
    assert newer["queued"] is True
    assert older["queued"] is False
    assert "a newer trigger already waits" in older["reason"]
    pending = table.get_pending()
    assert pending is not None and pending.queued_by == execution_arn("run-3")
    # AND of two triggers in the same second, the later arrival wins
    same_second = claim(
        table, sfn, "run-4", s3_event("incoming/d.zip", time="2026-11-25T03:00:09Z"), timedelta(seconds=11)
    )
    assert same_second["queued"] is True
    pending = table.get_pending()
    assert pending is not None and pending.queued_by == execution_arn("run-4")


def test_schedule_tick_without_event_time_is_ordered_by_its_start(table: PipelineTable, sfn: FakeStepFunctions) -> None:
    claim(table, sfn, "run-1", s3_event("incoming/a.zip"))
    tick = claim(table, sfn, "tick", {"trigger": "schedule"}, timedelta(seconds=30))
    upload = claim(table, sfn, "run-2", s3_event("incoming/b.zip", time="2026-11-25T03:00:30Z"), timedelta(seconds=31))
    assert "scheduled run" in tick["reason"]
    assert (tick["queued"], upload["queued"]) == (True, True)
    pending = table.get_pending()
    assert pending is not None and pending.queued_by == execution_arn("run-2")


def test_expired_lease_is_taken(table: PipelineTable, sfn: FakeStepFunctions) -> None:
    claim(table, sfn, "run-1", s3_event("incoming/a.zip"))
    later = claim(table, sfn, "run-2", s3_event("incoming/b.zip"), timedelta(seconds=LEASE_SECONDS + 1))
    assert later["acquired"] is True
    assert "took over the expired lease of run-1" in later["reason"]


@pytest.mark.parametrize("status", ["FAILED", "ABORTED", "TIMED_OUT", "SUCCEEDED"])
def test_lease_of_an_ended_execution_is_taken_over_before_expiry(
    table: PipelineTable, sfn: FakeStepFunctions, status: str
) -> None:
    # GIVEN a lease whose holder ended without releasing it
    claim(table, sfn, "run-1", s3_event("incoming/a.zip"))
    sfn.statuses[execution_arn("run-1")] = status
    # WHEN a trigger arrives long before the expiry
    result = claim(table, sfn, "run-2", s3_event("incoming/b.zip"), timedelta(minutes=5))
    # THEN it takes the lease over at once
    assert result["acquired"] is True
    assert result["took_over"] == f"run-1 ({status})"
    lease = table.get_lease()
    assert lease is not None and lease.holder == execution_arn("run-2")


def test_holder_that_does_not_exist_is_starting_for_a_while_then_dead(
    table: PipelineTable, sfn: FakeStepFunctions
) -> None:
    claim(table, sfn, "run-1", s3_event("incoming/a.zip"))
    del sfn.statuses[execution_arn("run-1")]  # a follow-up being started, or one whose start never happened
    soon = claim(table, sfn, "run-2", s3_event("incoming/b.zip"), timedelta(seconds=30))
    assert soon["acquired"] is False
    late = claim(
        table, sfn, "run-3", s3_event("incoming/c.zip"), timedelta(seconds=claim_module.STARTING_GRACE_SECONDS)
    )
    assert late["acquired"] is True
    assert late["took_over"] == "run-1 (MISSING)"


def test_taking_the_lease_drops_an_older_waiting_trigger(table: PipelineTable, sfn: FakeStepFunctions) -> None:
    claim(table, sfn, "run-1", s3_event("incoming/a.zip"))
    claim(table, sfn, "run-2", s3_event("incoming/b.zip", time="2026-11-25T03:00:01Z"), timedelta(seconds=1))
    sfn.statuses[execution_arn("run-1")] = "FAILED"
    result = claim(table, sfn, "run-3", s3_event("incoming/c.zip", time="2026-11-25T03:01:00Z"), timedelta(minutes=1))
    assert result["acquired"] is True
    assert result["superseded"] == "upload of s3://data/incoming/b.zip (version v1)"
    assert table.get_pending() is None


def test_lease_released_while_queueing_is_claimed_instead(table: PipelineTable, sfn: FakeStepFunctions) -> None:
    # GIVEN a holder that releases the pipeline between the newcomer's failed claim and its queue write
    claim(table, sfn, "run-1", s3_event("incoming/a.zip"))

    class ReleasingTable(PipelineTable):
        def queue(self, *args: Any, **kwargs: Any) -> bool:
            queued = super().queue(*args, **kwargs)
            boto3.client("dynamodb", region_name=REGION).delete_item(TableName=self.name, Key={"pk": {"S": "LEASE"}})
            return queued

    racing = ReleasingTable(table.client, table.name)
    # WHEN the newcomer claims
    result = claim(racing, sfn, "run-2", s3_event("incoming/b.zip"), timedelta(seconds=1))
    # THEN it runs itself instead of waiting for a run that has ended, and leaves no waiting trigger behind
    assert result["acquired"] is True
    assert table.get_pending() is None


def test_release_with_nothing_waiting_frees_the_pipeline(table: PipelineTable, sfn: FakeStepFunctions) -> None:
    claim(table, sfn, "run-1", s3_event("incoming/a.zip"))
    result = release(table, sfn, "run-1")
    assert result == {
        "released": True,
        "started": None,
        "trigger": None,
        "reason": "no trigger waited; the pipeline is free",
    }
    assert table.get_lease() is None
    assert sfn.started == []


def test_release_by_a_run_that_does_not_hold_the_lease_changes_nothing(
    table: PipelineTable, sfn: FakeStepFunctions
) -> None:
    claim(table, sfn, "run-1", s3_event("incoming/a.zip"))
    result = release(table, sfn, "run-2")
    assert result["released"] is False
    assert "held by run-1" in result["reason"]
    assert table.get_lease() is not None


def test_release_hands_the_pipeline_to_one_follow_up_run(table: PipelineTable, sfn: FakeStepFunctions) -> None:
    # GIVEN a holder and a queued upload
    claim(table, sfn, "run-1", s3_event("incoming/a.zip"))
    waiting = s3_event("incoming/b.zip", time="2026-11-25T03:00:05Z")
    claim(table, sfn, "run-2", waiting, timedelta(seconds=5))
    # WHEN the holder ends
    result = release(table, sfn, "run-1", timedelta(minutes=30))
    # THEN one follow-up run was started, named after the queued execution, with the queued input
    assert result["started"] == "after-run-2"
    assert result["trigger"] == "upload of s3://data/incoming/b.zip (version v1)"
    ((start),) = sfn.started
    assert (start["stateMachineArn"], start["name"], json.loads(start["input"])) == (MACHINE, "after-run-2", waiting)
    # AND the lease is already the follow-up's, and nothing waits any more
    lease = table.get_lease()
    assert lease is not None
    assert (lease.holder, lease.handed_over_by) == (execution_arn("after-run-2"), execution_arn("run-1"))
    assert table.get_pending() is None
    # WHEN the release is retried (the first response was lost)
    again = release(table, sfn, "run-1", timedelta(minutes=30, seconds=2))
    # THEN it names the same run and starts no second one
    assert again["started"] == "after-run-2"
    assert len(sfn.started) == 1
    # AND the follow-up run's claim finds the lease its own
    follow_up = claim(table, sfn, "after-run-2", waiting, timedelta(minutes=30, seconds=3))
    assert follow_up["acquired"] is True
    assert follow_up["handed_over_by"] == "run-1"
    assert "queued behind run-1, which started this run" in follow_up["reason"]


def test_successor_name_is_deterministic_and_fits_the_execution_name_limit() -> None:
    from pipeline.common import triggers

    long_name = "x" * 80
    name = triggers.successor_name(execution_arn(long_name))
    assert len(name) == 80 and name == triggers.successor_name(execution_arn(long_name))
    assert triggers.state_machine_arn(execution_arn("a")) == MACHINE
    assert release_module.triggers is triggers
