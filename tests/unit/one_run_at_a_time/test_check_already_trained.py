"""CheckAlreadyTrained: the dataset identity, force, and the scheduled run's rule."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import NOW

from pipeline.check_already_trained import CheckInput, check_already_trained
from pipeline.common.pipeline_state import DatasetIdentity, PipelineTable

DATASET = {"bucket": "data", "key": "incoming/a.zip", "version_id": "v1", "etag": '"e1"', "dataset_id": "abc"}


def check(table: PipelineTable, event: dict[str, Any], dataset: dict[str, Any] = DATASET, always: bool = False) -> Any:
    return check_already_trained(CheckInput(dataset=dataset, event=event, execution_name="run-2"), table, always)


def test_new_dataset_trains(table: PipelineTable) -> None:
    result = check(table, {"source": "aws.s3"})
    assert result["train"] is True
    assert (
        result["reason"] == 'new dataset: s3://data/incoming/a.zip (version v1, ETag "e1") has not been trained before'
    )
    assert result["identity"] == {"bucket": "data", "key": "incoming/a.zip", "version_id": "v1", "etag": '"e1"'}
    assert result["trained_by"] is None


def test_trained_dataset_is_not_trained_again(table: PipelineTable) -> None:
    # GIVEN a run that trained this object version
    table.mark_trained(DatasetIdentity.of(DATASET), "run-1", "succeeded", NOW)
    # WHEN a duplicate event names it again
    result = check(table, {"source": "aws.s3"})
    # THEN it is skipped, naming the run and how to force
    assert result["train"] is False
    assert result["reason"].startswith('already trained: s3://data/incoming/a.zip (version v1, ETag "e1") was trained')
    assert '"force": true' in result["reason"]
    assert result["trained_by"] == {"run": "run-1", "outcome": "succeeded", "trained_at": "2026-11-25T03:00:00.000000Z"}


def test_new_version_of_the_same_key_trains(table: PipelineTable) -> None:
    table.mark_trained(DatasetIdentity.of(DATASET), "run-1", "succeeded", NOW)
    result = check(table, {"source": "aws.s3"}, {**DATASET, "version_id": "v2", "etag": '"e2"'})
    assert result["train"] is True
    assert "last trained: s3://data/incoming/a.zip by run run-1" in result["reason"]


def test_force_trains_a_trained_dataset(table: PipelineTable) -> None:
    table.mark_trained(DatasetIdentity.of(DATASET), "run-1", "rejected", NOW)
    result = check(table, {"dataset": {"bucket": "data", "key": "incoming/a.zip"}, "force": True})
    assert result["train"] is True
    assert result["reason"].startswith('"force": true in the input')
    assert "outcome rejected" in result["reason"]


@pytest.mark.parametrize("event", [{"trigger": "schedule"}, {"detail-type": "Scheduled Event", "source": "aws.events"}])
def test_schedule_trains_only_something_newer_unless_always(table: PipelineTable, event: dict[str, Any]) -> None:
    # GIVEN the newest dataset was trained
    table.mark_trained(DatasetIdentity.of(DATASET), "run-1", "succeeded", NOW)
    # WHEN the schedule fires THEN there is nothing newer to train
    skipped = check(table, event)
    assert skipped["train"] is False
    assert skipped["reason"].startswith("scheduled run: the newest dataset s3://data/incoming/a.zip")
    assert "AlwaysRetrainOnSchedule" in skipped["reason"]
    # AND with AlwaysRetrainOnSchedule it retrains
    assert check(table, event, always=True)["train"] is True
    # AND a newer upload trains
    assert check(table, event, {**DATASET, "key": "incoming/b.zip"})["train"] is True


def test_failed_runs_leave_the_dataset_untrained(table: PipelineTable) -> None:
    assert table.trained(DatasetIdentity.of(DATASET)) is None
    assert check(table, {"source": "aws.s3"})["train"] is True
