"""WriteRunReport's edges: the trials, the timeline, the thumbnails and the evaluation it hands the renderer."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.stub import Stubber
from sagemaker_states_support import BUCKET, REGION

from pipeline import write_run_report
from pipeline.common.sagemaker_gateway import SageMakerGateway

START = datetime(2026, 12, 2, 5, 0, tzinfo=UTC)


def test_trials_are_the_leaderboard_rows(stubbed: tuple[SageMakerGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    summary = {
        "TrainingJobName": "hpo-1-001-aaaa",
        "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/hpo-1-001-aaaa",
        "CreationTime": START,
        "TrainingStartTime": START,
        "TrainingEndTime": START + timedelta(seconds=95),
        "TrainingJobStatus": "Completed",
        "TunedHyperParameters": {"batch_size": '"64"', "learning_rate": "0.0123"},
        "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "validation:accuracy", "Value": 0.71},
    }
    stubber.add_response(
        "list_training_jobs_for_hyper_parameter_tuning_job",
        {"TrainingJobSummaries": [summary]},
        {"HyperParameterTuningJobName": "hpo-1", "MaxResults": 100},
    )
    assert write_run_report.trials(gateway, "hpo-1") == [
        {
            "name": "hpo-1-001-aaaa",
            "status": "Completed",
            "objective": 0.71,
            "duration_seconds": 95.0,
            "hyperparameters": {"batch_size": "64", "learning_rate": "0.0123"},
        }
    ]
    assert write_run_report.trials(gateway, None) == []


class _History:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events

    def get_paginator(self, name: str) -> Any:
        assert name == "get_execution_history"
        events = self.events

        class Paginator:
            def paginate(self, executionArn: str) -> list[dict[str, Any]]:
                return [{"events": events[:2]}, {"events": events[2:]}]

        return Paginator()


def _event(kind: str, seconds: float, name: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": kind, "timestamp": START + timedelta(seconds=seconds)}
    if kind.endswith("StateEntered"):
        event["stateEnteredEventDetails"] = {"name": name}
    if kind.endswith("StateExited"):
        event["stateExitedEventDetails"] = {"name": name}
    return event


def test_the_timeline_has_every_state_with_its_duration_and_the_failed_one_marked() -> None:
    events = [
        _event("ExecutionStarted", 0),
        _event("TaskStateEntered", 0, "ValidateDataset"),
        _event("TaskStateExited", 1.5, "ValidateDataset"),
        _event("TaskStateEntered", 1.5, "CheckRules"),
        _event("LambdaFunctionFailed", 4.0),
        _event("TaskStateExited", 4.0, "CheckRules"),
        _event("TaskStateEntered", 4.0, "NotifyFailure"),
    ]
    rows, path, failed = write_run_report.execution_timeline(_History(events), "arn:execution")
    assert path == ["ValidateDataset", "CheckRules", "NotifyFailure"]
    assert failed == "CheckRules"
    assert [(r["state"], r.get("seconds"), r["status"]) for r in rows] == [
        ("ValidateDataset", 1.5, "succeeded"),
        ("CheckRules", 2.5, "failed"),
        ("NotifyFailure", None, "running"),
    ]
    assert rows[0]["entered"] == START.isoformat()


def test_thumbnails_come_out_of_the_validated_zip_and_a_missing_image_is_skipped(aws: None) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("dogImages/test/001.A/a_1.jpg", b"jpeg-one")
        zipped.writestr("dogImages/test/002.B/b_1.jpg", b"jpeg-two")
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=BUCKET, Key="validated/x/dataset.zip", Body=archive.getvalue())
    mistakes = [
        {"path": "dogImages/test/002.B/b_1.jpg", "true": "002.B", "predicted": "001.A", "probability": 0.9},
        {"path": "dogImages/test/003.C/gone.jpg", "true": "003.C", "predicted": "001.A", "probability": 0.8},
    ]
    pictures = write_run_report.thumbnails(s3, f"s3://{BUCKET}/validated/x/dataset.zip", mistakes)
    assert pictures == [mistakes[0] | {"jpeg": b"jpeg-two"}]
    assert write_run_report.thumbnails(s3, None, mistakes) == []


def test_the_evaluation_is_rebuilt_from_the_gate() -> None:
    challenger = {"accuracy": 0.8, "images": 836, "misclassified": []}
    paired = {"confidence": 0.95, "interval": [-0.01, 0.03]}
    gate = {"models": {"challenger": challenger, "champion": {"accuracy": 0.79}}, "paired": paired}
    assert write_run_report._evaluation(gate) == {
        "test_images": 836,
        "confidence": 0.95,
        "challenger": challenger,
        "champion": {"accuracy": 0.79},
        "paired": paired,
    }
    assert write_run_report._evaluation({"passed": False}) is None  # an old record, or a failed run
