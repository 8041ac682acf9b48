"""What starts a run: the template's upload rule (incoming/*.zip only) and its schedule (the newest zip)."""

from __future__ import annotations

from datetime import timedelta

import boto3
import pytest
from state_machine_harness import HAPPY_PATH, REGION, TEMPLATE_PARAMETERS, Pipeline, assert_failed_in


def test_uploads_outside_incoming_zips_start_nothing(pipeline: Pipeline, dataset_zip: bytes) -> None:
    # GIVEN the template's upload rule
    # WHEN zips land outside incoming/, and other files inside it
    for key in ("other/dogImages.zip", "incoming/notes.txt", "incoming/dogImages.zip.partial", "incomingdogs.zip"):
        pipeline.upload(key, dataset_zip)
    # THEN no rule delivered anything and no execution exists
    assert pipeline.router.deliveries == []
    assert pipeline.all_executions() == []


def test_schedule_tick_runs_on_the_newest_incoming_zip(
    pipeline: Pipeline, dataset_zip: bytes, two_class_zip: bytes
) -> None:
    # GIVEN two zips under incoming/ that arrived while the upload rule was disabled: an invalid one that sorts
    # first, and the valid one an hour newer
    events = boto3.client("events", region_name=REGION)
    (upload_rule,) = [rule for rule in pipeline.stack.rules.values() if rule.kind == "EventBridgeRule"]
    events.disable_rule(Name=upload_rule.rule_name)
    pipeline.upload("incoming/a-older.zip", two_class_zip)
    pipeline.upload("incoming/b-newer.zip", dataset_zip)
    pipeline.make_older("incoming/a-older.zip", by=timedelta(hours=1))
    assert pipeline.all_executions() == []
    # WHEN the schedule rule fires
    run = pipeline.tick_schedule()
    # THEN the run was started with the schedule's input, validated the newest zip and succeeded
    assert run.status == "SUCCEEDED", run.cause
    assert run.path == HAPPY_PATH
    assert run.output is not None
    assert run.output["trigger"] == "schedule"
    assert (run.output["dataset"]["key"], run.output["dataset"]["trigger"]) == ("incoming/b-newer.zip", "schedule")
    endpoint = pipeline.endpoint()
    assert endpoint is not None
    assert endpoint["EndpointConfigName"] == run.output["deployment"]["endpoint_config"]


def test_schedule_tick_without_any_incoming_zip_fails_with_dataset_not_found(pipeline: Pipeline) -> None:
    # GIVEN an empty incoming/ prefix
    # WHEN the schedule rule fires
    run = pipeline.tick_schedule()
    # THEN ValidateDataset said where datasets go, and the failure was published
    assert run.error == "DatasetNotFound", run.cause
    assert_failed_in(run, "ValidateDataset")
    assert f"found no .zip under s3://{pipeline.stack.bucket}/incoming/" in run.cause_message
    ((subject, message),) = pipeline.notifications()
    assert subject.startswith("Retraining failed: DatasetNotFound (")
    assert "Trigger:" in message
    assert pipeline.tuning_jobs() == []


@pytest.mark.parametrize(
    "template_parameters", [TEMPLATE_PARAMETERS | {"ScheduleExpression": "rate(1 day)"}], ids=["daily"], indirect=True
)
def test_failure_notice_of_a_scheduled_run_does_not_misname_the_schedule(pipeline: Pipeline) -> None:
    # GIVEN a daily schedule and nothing under incoming/
    # WHEN the schedule fires and the run fails
    pipeline.tick_schedule()
    # THEN the notice does not call the schedule weekly
    ((_, message),) = pipeline.notifications()
    assert "weekly" not in message
