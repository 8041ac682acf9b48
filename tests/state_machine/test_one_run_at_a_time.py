"""One run at a time and no double training, on the real ASL: the lease, queued triggers, follow-up runs, dedupe.

A run is held in its first Wait state, WaitForTuning (``HeldRun``), while the test sends more triggers, so "during
a run" is a fact of the test rather than a race against the clock. (Not inside a handler: the in-process Lambda
runs one handler at a time, so a held handler would hold every other execution too.)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.events.models import events_backends
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from state_machine_harness import ENDING, FAILURE_TAIL, HAPPY_PATH, REGION, Pipeline, Run

from offline.moto_shims import fire_schedule
from offline.moto_shims._base import patch_attribute

QUEUED_PATH = ["LoadRunSettings", "ClaimPipeline", "IsPipelineFree", *ENDING, "QueuedBehindRunningRun"]
ALREADY_TRAINED_PATH = [
    "LoadRunSettings",
    "ClaimPipeline",
    "IsPipelineFree",
    "ValidateDataset",
    "CheckAlreadyTrained",
    "IsNewDataset",
    *ENDING,
    "AlreadyTrained",
]
HOLD_SECONDS = 30.0


class HeldRun:
    """Holds the first Wait state any run enters until :meth:`release`; later waits pass straight through.

    Queued runs never reach a Wait state, so the held one is the run that holds the lease (its tuning job runs).
    """

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.go = threading.Event()
        short_wait = WaitFunction._wait_interval

        def held_wait(wait: WaitFunction, env: Any, wait_seconds: int) -> None:
            if not self.go.is_set() and not self.entered.is_set():
                self.entered.set()
                self.go.wait(HOLD_SECONDS)
            short_wait(wait, env, wait_seconds)

        self.patch = patch_attribute(WaitFunction, "_wait_interval", held_wait)
        self.patch.start()

    def wait_until_running(self) -> None:
        assert self.entered.wait(HOLD_SECONDS), "the run never reached its first Wait state"

    def release(self) -> None:
        self.go.set()

    def remove(self) -> None:
        self.release()
        self.patch.stop()


@pytest.fixture
def holds(pipeline: Pipeline) -> Iterator[list[HeldRun]]:
    """Held runs are let go when a test ends, even a failed one, so teardown never waits for them."""
    held: list[HeldRun] = []
    yield held
    for hold in held:
        hold.remove()


def start_held_upload(pipeline: Pipeline, holds: list[HeldRun], key: str, body: bytes) -> tuple[HeldRun, str]:
    hold = HeldRun()
    holds.append(hold)
    before = len(pipeline.started_executions())
    pipeline.upload(key, body)
    (first,) = pipeline.started_executions()[before:]
    hold.wait_until_running()
    return hold, first


def newest_started(pipeline: Pipeline, before: int) -> str:
    (started,) = pipeline.started_executions()[before:]
    return started


def upload_during_run(pipeline: Pipeline, key: str, body: bytes) -> Run:
    before = len(pipeline.started_executions())
    pipeline.upload(key, body)
    return pipeline.finish(newest_started(pipeline, before))


def redeliver(pipeline: Pipeline, execution_arn: str) -> Run:
    """EventBridge delivers the event that started ``execution_arn`` once more (S3 delivers at least once)."""
    (delivery,) = [d for d in pipeline.router.deliveries if d.execution_arn == execution_arn]
    rule = events_backends[DEFAULT_ACCOUNT_ID][REGION].event_buses["default"].rules[delivery.rule_name]
    before = len(pipeline.started_executions())
    rule.send_to_targets(delivery.payload, transform_input=False)
    return pipeline.finish(newest_started(pipeline, before))


def follow_up(pipeline: Pipeline, run: Run) -> Run:
    """The run that ``run``'s ReleasePipeline started (by its deterministic name)."""
    release = run.state_output("ReleasePipeline")["release"]
    assert release["started"], release
    (arn,) = [a for a in pipeline.all_executions() if a.endswith(f":{release['started']}")]
    return pipeline.finish(arn)


def manual_run(pipeline: Pipeline, execution_input: dict[str, Any], name: str) -> Run:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = sfn.start_execution(
        stateMachineArn=pipeline.stack.state_machine_arn, name=name, input=json.dumps(execution_input)
    )["executionArn"]
    return pipeline.finish(arn)


def run_record(pipeline: Pipeline, run: Run) -> dict[str, Any]:
    record = run.state_output("RecordRun")["record"]
    assert record["uri"] == f"s3://{pipeline.stack.bucket}/runs/{run.arn.rsplit(':', 1)[-1]}.json"
    body = boto3.client("s3", region_name=REGION).get_object(
        Bucket=pipeline.stack.bucket, Key=record["uri"].split("/", 3)[3]
    )["Body"]
    return dict(json.loads(body.read()))


def table_items(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    (table,) = pipeline.stack.tables.values()
    items = boto3.client("dynamodb", region_name=REGION).scan(TableName=table)["Items"]
    return {item["pk"]["S"]: item for item in items}


def test_duplicate_event_during_a_run_is_queued_then_ends_already_trained(
    pipeline: Pipeline, holds: list[HeldRun], dataset_zip: bytes
) -> None:
    # GIVEN a run on an upload, held in WaitForTuning
    hold, first_arn = start_held_upload(pipeline, holds, "incoming/dogImages.zip", dataset_zip)
    # WHEN S3 delivers the same event again while it runs
    duplicate = redeliver(pipeline, first_arn)
    # THEN the duplicate did not start a second training: it was recorded and ended Queued, saying behind whom
    assert duplicate.status == "SUCCEEDED", duplicate.cause
    assert duplicate.path == QUEUED_PATH
    lease = duplicate.state_output("ClaimPipeline")["lease"]
    assert (lease["acquired"], lease["queued"]) == (False, True)
    assert first_arn.rsplit(":", 1)[-1] in lease["reason"]
    assert "PENDING" in table_items(pipeline)
    queued_record = run_record(pipeline, duplicate)
    assert (queued_record["outcome"], queued_record["lease"]) == ("queued", lease)
    assert duplicate.state_output("ReleasePipeline")["release"]["released"] is False
    # WHEN the first run goes on and ends
    hold.release()
    first = pipeline.finish(first_arn)
    # THEN it trained and deployed, and its release started exactly one follow-up run for the queued trigger
    assert first.status == "SUCCEEDED", first.cause
    assert first.path == HAPPY_PATH
    release = first.state_output("ReleasePipeline")["release"]
    assert release["started"] == "after-" + duplicate.arn.rsplit(":", 1)[-1]
    # AND that follow-up run ended AlreadyTrained quickly, without any SageMaker job
    again = follow_up(pipeline, first)
    assert again.status == "SUCCEEDED", again.cause
    assert again.path == ALREADY_TRAINED_PATH
    dedupe = again.state_output("CheckAlreadyTrained")["dedupe"]
    assert dedupe["train"] is False
    assert dedupe["reason"].startswith("already trained: s3://")
    assert dedupe["trained_by"]["run"] == first_arn.rsplit(":", 1)[-1]
    assert "handed_over_by" in again.state_output("ClaimPipeline")["lease"]
    assert len(pipeline.training_jobs()) == 1
    assert len(pipeline.tuning_jobs()) == 1
    # AND the pipeline is free again, with nothing waiting
    items = table_items(pipeline)
    assert "LEASE" not in items and "PENDING" not in items
    assert len(pipeline.all_executions()) == 3
    # AND each run left its record in the bucket: the trained one with everything the audit needs
    record = run_record(pipeline, first)
    assert record["outcome"] == "succeeded"
    assert record["dataset"]["key"] == "incoming/dogImages.zip"
    assert record["dataset"]["version_id"] and record["dataset"]["etag"]
    assert record["dataset"]["counts"] == {"train": 6, "valid": 3, "test": 3}
    assert record["jobs"]["training"] == pipeline.training_jobs()[0]
    assert record["jobs"]["tuning"] == pipeline.tuning_jobs()[0]
    assert len(record["jobs"]["trials"]) == 1
    assert set(record["hyperparameters"]) >= {"batch_size", "learning_rate"}
    assert record["rules"]["passed"] is True
    assert record["test_accuracy"] == pytest.approx(0.9)
    assert record["gate"]["passed"] is True
    assert record["deployment"]["action"] == "create"
    assert record["timings"]["total_seconds"] > 0
    assert record["timings"]["training_seconds"] is not None
    cost = record["cost"]
    assert cost["missing_prices"] == []
    assert [job["instance_type"] for job in cost["jobs"]] == ["ml.g4dn.xlarge", "ml.g4dn.xlarge"]
    assert cost["total_usd"] == pytest.approx(sum(job["usd"] for job in cost["jobs"]))
    assert record["error"] is None
    assert run_record(pipeline, again)["outcome"] == "already_trained"
    assert again.state_output("RecordRun")["record"]["cost_usd"] is None


def test_uploads_and_a_schedule_tick_during_a_run_coalesce_into_one_run_on_the_newest(
    pipeline: Pipeline, holds: list[HeldRun], dataset_zip: bytes
) -> None:
    # GIVEN a run on a first upload, held in WaitForTuning
    hold, first_arn = start_held_upload(pipeline, holds, "incoming/first.zip", dataset_zip)
    # WHEN a second upload, a schedule tick and a third upload arrive while it runs
    second = upload_during_run(pipeline, "incoming/second.zip", dataset_zip)
    (schedule,) = [rule for rule in pipeline.stack.rules.values() if rule.kind == "Schedule"]
    before = len(pipeline.started_executions())
    fire_schedule(schedule.rule_name, region=REGION)
    tick = pipeline.finish(newest_started(pipeline, before))
    third = upload_during_run(pipeline, "incoming/third.zip", dataset_zip)
    # THEN each of them ended Queued at once, none trained
    for queued in (second, tick, third):
        assert queued.status == "SUCCEEDED", queued.cause
        assert queued.path == QUEUED_PATH
    assert "scheduled run" in tick.state_output("ClaimPipeline")["lease"]["reason"]
    assert len(pipeline.tuning_jobs()) == 1  # the held run's
    # WHEN the first run ends
    hold.release()
    first = pipeline.finish(first_arn)
    assert first.status == "SUCCEEDED", first.cause
    # THEN it started ONE follow-up run, for the newest trigger, which trained on the newest upload
    release = first.state_output("ReleasePipeline")["release"]
    assert release["started"] == "after-" + third.arn.rsplit(":", 1)[-1]
    newest = follow_up(pipeline, first)
    assert newest.status == "SUCCEEDED", newest.cause
    assert newest.path == HAPPY_PATH
    assert newest.state_output("ValidateDataset")["dataset"]["key"] == "incoming/third.zip"
    assert newest.state_output("ReleasePipeline")["release"]["started"] is None
    assert len(pipeline.all_executions()) == 5
    assert len(pipeline.training_jobs()) == 2


def test_stale_lease_of_a_dead_run_is_taken_over(pipeline: Pipeline, two_class_zip: bytes) -> None:
    # GIVEN a lease left by a run that ended without releasing it (its execution is no longer RUNNING), far from
    # its expiry
    dead = pipeline.upload_and_run("incoming/broken.zip", two_class_zip)
    assert dead.status == "FAILED"
    (table,) = pipeline.stack.tables.values()
    expires = int((datetime.now(UTC) + timedelta(hours=11)).timestamp())
    boto3.client("dynamodb", region_name=REGION).put_item(
        TableName=table,
        Item={
            "pk": {"S": "LEASE"},
            "holder": {"S": dead.arn},
            "acquired_at": {"S": (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
            "expires_at": {"N": str(expires)},
        },
    )
    # WHEN a new trigger arrives
    started = time.monotonic()
    run = pipeline.upload_and_run("incoming/broken-again.zip", two_class_zip)
    # THEN it took the lease over at once instead of queueing behind a dead run for hours
    lease = run.state_output("ClaimPipeline")["lease"]
    assert lease["acquired"] is True
    assert lease["took_over"] == f"{dead.arn.rsplit(':', 1)[-1]} (FAILED)"
    assert "took over the lease" in lease["reason"]
    assert time.monotonic() - started < 20
    # AND its failure was recorded and released the lease like every ending
    assert run.error == "DatasetInvalid"
    assert run.path[-len(FAILURE_TAIL) :] == FAILURE_TAIL
    record = run_record(pipeline, run)
    assert (record["outcome"], record["error"]["Error"]) == ("failed", "DatasetInvalid")
    assert "LEASE" not in table_items(pipeline)


def test_same_dataset_again_ends_already_trained_unless_forced(pipeline: Pipeline, dataset_zip: bytes) -> None:
    # GIVEN a dataset a first run trained and deployed
    first = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    assert first.status == "SUCCEEDED", first.cause
    dataset = first.state_output("ValidateDataset")["dataset"]
    same = {"bucket": dataset["bucket"], "key": dataset["key"], "version_id": dataset["version_id"]}
    # WHEN a manual run names the same object version
    again = manual_run(pipeline, {"dataset": same}, "same-dataset")
    # THEN it ends AlreadyTrained without a SageMaker job, saying which run trained it and how to force
    assert again.status == "SUCCEEDED", again.cause
    assert again.path == ALREADY_TRAINED_PATH
    reason = again.state_output("CheckAlreadyTrained")["dedupe"]["reason"]
    assert first.arn.rsplit(":", 1)[-1] in reason and '"force": true' in reason
    assert len(pipeline.tuning_jobs()) == 1
    # WHEN the same run is asked for with force
    forced = manual_run(pipeline, {"dataset": same, "force": True}, "same-dataset-forced")
    # THEN it trains and deploys again
    assert forced.status == "SUCCEEDED", forced.cause
    assert forced.path == HAPPY_PATH
    assert forced.state_output("CheckAlreadyTrained")["dedupe"]["reason"].startswith('"force": true')
    assert len(pipeline.training_jobs()) == 2
    assert run_record(pipeline, forced)["forced"] is True
