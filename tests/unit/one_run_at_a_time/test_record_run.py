"""RecordRun and the run record: outcome, contents, cost estimate, and which outcomes mark a dataset trained."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import boto3
import pytest
from conftest import NOW, REGION

from pipeline.common import run_record
from pipeline.common.config import load_settings
from pipeline.common.pipeline_state import DatasetIdentity, PipelineTable
from pipeline.record_run import RecordInput, record_run

BUCKET = "data"
PRICES = {"ml.g4dn.xlarge": 0.72, "ml.m5.large": 0.1}
DATASET = {
    "bucket": BUCKET,
    "key": "incoming/a.zip",
    "version_id": "v1",
    "etag": '"e1"',
    "size": 42,
    "dataset_id": "abc",
    "run_id": "261125-030000-abc",
    "counts": {"train": 6, "valid": 3, "test": 3},
    "class_count": 3,
    "reads": {"requests": 2},
    "ignored": {"count": 1, "examples": ["dogImages/.DS_Store"], "directory_entries": 8},
}


def trial(name: str, seconds: int, billable: int | None = None, spot: bool = False) -> dict[str, Any]:
    description: dict[str, Any] = {
        "TrainingJobName": name,
        "ResourceConfig": {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1},
        "TrainingTimeInSeconds": seconds,
        "EnableManagedSpotTraining": spot,
        "CreationTime": NOW,
        "TrainingStartTime": NOW + timedelta(seconds=60),
        "TrainingEndTime": NOW + timedelta(seconds=60 + seconds),
    }
    if billable is not None:
        description["BillableTimeInSeconds"] = billable
    return description


TUNING = {"CreationTime": NOW + timedelta(seconds=20), "HyperParameterTuningEndTime": NOW + timedelta(seconds=620)}
TRAINING = {
    **trial("train-1", 1800, 1800),
    "ResourceConfig": {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 2},
    "CreationTime": NOW + timedelta(seconds=700),
    "TrainingEndTime": NOW + timedelta(seconds=2600),
    "FinalMetricDataList": [
        {"MetricName": "test:accuracy", "Value": 0.81},
        {"MetricName": "validation:accuracy", "Value": 0.8},
    ],
    "DebugRuleEvaluationStatuses": [
        {"RuleConfigurationName": "Overfit", "LastModifiedTime": NOW + timedelta(seconds=2700)}
    ],
}
SUCCEEDED_STATE = {
    "source": "aws.s3",
    "detail-type": "Object Created",
    "time": "2026-11-25T03:00:00Z",
    "detail": {"bucket": {"name": BUCKET}},
    "settings": {"poll_seconds": 60},
    "lease": {"acquired": True, "reason": "free"},
    "dataset": DATASET,
    "dedupe": {"train": True, "reason": "new dataset"},
    "tuning": {"job_name": "hpo-1"},
    "best": {
        "training_job_name": "hpo-1-001",
        "objective": {"name": "validation:accuracy", "value": 0.8},
        "hyperparameters": {"batch_size": "64", "learning_rate": "0.01"},
    },
    "training": {"job_name": "train-1"},
    "rules": {"passed": True, "rules": {"Overfit": "NoIssuesFound"}},
    "gate": {"passed": True, "reason": "better"},
    "deployment": {"endpoint": "ep", "endpoint_config": "dogs-1", "action": "create"},
}


class FakeGateway:
    """SageMakerGateway.call with canned descriptions (missing names answer ValidationException)."""

    def __init__(self, descriptions: dict[str, dict[str, Any]]) -> None:
        self.descriptions = descriptions
        self.calls: list[str] = []

    def call(self, operation: str, **request: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        self.calls.append(operation)
        if operation == "list_training_jobs_for_hyper_parameter_tuning_job":
            return {"TrainingJobSummaries": [{"TrainingJobName": "hpo-1-001"}, {"TrainingJobName": "hpo-1-002"}]}
        name = request.get("TrainingJobName") or request.get("HyperParameterTuningJobName")
        if name not in self.descriptions:
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "not found"}}, operation)
        return self.descriptions[name]


DESCRIPTIONS = {
    "hpo-1": TUNING,
    "hpo-1-001": trial("hpo-1-001", 600, 240, spot=True),
    "hpo-1-002": trial("hpo-1-002", 600, 600, spot=True),
    "train-1": TRAINING,
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, table_name: str) -> None:
    monkeypatch.setenv("DATA_BUCKET", BUCKET)
    monkeypatch.setenv("PIPELINE_TABLE", table_name)
    monkeypatch.setenv("INSTANCE_PRICES", json.dumps(PRICES))
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)


def record(table: PipelineTable, state: dict[str, Any], name: str = "run-1") -> tuple[dict[str, Any], dict[str, Any]]:
    result, _ = record_run(
        RecordInput(state=state, execution_name=name, execution_id=f"arn:{name}", execution_start_time=NOW),
        load_settings(),
        boto3.client("s3", region_name=REGION),
        FakeGateway(DESCRIPTIONS),  # type: ignore[arg-type]
        table,
        NOW + timedelta(seconds=3000),
    )
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=BUCKET, Key=f"runs/{name}.json")["Body"].read()
    return result, json.loads(body)


def test_record_of_a_deployed_run_holds_the_audit_and_the_cost(env: None, table: PipelineTable) -> None:
    # WHEN a run that deployed is recorded
    result, written = record(table, SUCCEEDED_STATE)
    # THEN the record is in the bucket under runs/<execution name>.json
    assert result == {
        "uri": "s3://data/runs/run-1.json",
        "outcome": "succeeded",
        "cost_usd": written["cost"]["total_usd"],
    }
    assert written["trigger"] == {"source": "aws.s3", "detail-type": "Object Created", "time": "2026-11-25T03:00:00Z"}
    assert written["dataset"]["counts"] == {"train": 6, "valid": 3, "test": 3}
    assert "reads" not in written["dataset"]
    assert written["dataset"]["ignored"]["examples"] == ["dogImages/.DS_Store"]  # the report lists them
    assert written["jobs"] == {
        "tuning": "hpo-1",
        "trials": ["hpo-1-001", "hpo-1-002"],
        "best_trial": {"training_job_name": "hpo-1-001", "objective": {"name": "validation:accuracy", "value": 0.8}},
        "training": "train-1",
    }
    assert written["hyperparameters"] == {"batch_size": "64", "learning_rate": "0.01"}
    assert written["test_accuracy"] == 0.81
    assert written["gate"] == {"passed": True, "reason": "better"}
    assert written["deployment"]["endpoint_config"] == "dogs-1"
    # AND the timings come from the jobs where the states carry none
    timings = written["timings"]
    assert (timings["total_seconds"], timings["before_tuning_seconds"], timings["tuning_seconds"]) == (3000, 20, 600)
    assert (timings["training_seconds"], timings["training_and_rules_seconds"]) == (1900, 2000)
    assert timings["after_training_seconds"] == 300
    # AND the cost is billable seconds x instances x price: spot trials billed 240 s and 600 s, training 2 x 1800 s
    cost = written["cost"]
    assert cost["total_usd"] == pytest.approx((240 + 600 + 2 * 1800) * 0.72 / 3600, abs=1e-4)
    assert cost["spot_savings_usd"] == pytest.approx(360 * 0.72 / 3600, abs=1e-4)
    assert cost["endpoint_usd_per_hour"] == pytest.approx(0.1)
    assert cost["missing_prices"] == []
    # AND the dataset now counts as trained
    trained = table.trained(DatasetIdentity.of(DATASET))
    assert trained is not None and (trained["run"], trained["outcome"]) == ("run-1", "succeeded")


def test_rejected_run_marks_the_dataset_trained(env: None, table: PipelineTable) -> None:
    result, _ = record(table, {**SUCCEEDED_STATE, "gate": {"passed": False, "reason": "worse"}})
    assert result["outcome"] == "rejected"
    assert table.trained(DatasetIdentity.of(DATASET)) is not None


def test_failed_run_is_recorded_with_its_error_and_leaves_the_dataset_untrained(
    env: None, table: PipelineTable
) -> None:
    error = {"Error": "TrainingFailed", "Cause": "{}"}
    state = {**SUCCEEDED_STATE, "error": error}
    for key in ("rules", "gate", "deployment"):
        state.pop(key)
    result, written = record(table, state)
    assert (result["outcome"], written["error"]) == ("failed", error)
    assert table.trained(DatasetIdentity.of(DATASET)) is None


def test_run_that_failed_before_any_job_is_still_recorded(env: None, table: PipelineTable) -> None:
    state = {"trigger": "schedule", "error": {"Error": "DatasetNotFound", "Cause": "no zip"}}
    result, written = record(table, state, name="run-early")
    assert result == {"uri": "s3://data/runs/run-early.json", "outcome": "failed", "cost_usd": None}
    assert (written["trigger"], written["cost"], written["dataset"]) == ({"trigger": "schedule"}, None, None)


def test_already_trained_run_trains_nothing_and_costs_nothing(env: None, table: PipelineTable) -> None:
    state = {k: v for k, v in SUCCEEDED_STATE.items() if k in ("source", "detail-type", "time", "lease", "dataset")}
    result, written = record(table, {**state, "dedupe": {"train": False, "reason": "already trained"}})
    assert (result["outcome"], result["cost_usd"], written["jobs"]["training"]) == ("already_trained", None, None)


def test_unpriced_instance_type_leaves_the_total_unknown_and_names_it() -> None:
    cost = run_record.cost_estimate([trial("t", 60)], {"ml.m5.large": 0.1}, "ml.m5.large", 2)
    assert (cost["total_usd"], cost["missing_prices"]) == (None, ["ml.g4dn.xlarge"])
    assert cost["endpoint_usd_per_hour"] == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("state", "outcome"),
    [
        ({"error": {}, "dedupe": {"train": False}}, "failed"),
        ({"dedupe": {"train": False}}, "already_trained"),
        ({"lease": {"acquired": False}}, "queued"),
        ({"dedupe": {"train": True}, "gate": {"passed": False}}, "rejected"),
        ({"dedupe": {"train": True}, "gate": {"passed": True}}, "succeeded"),
    ],
)
def test_outcome_follows_how_did_it_end(state: dict[str, Any], outcome: str) -> None:
    assert run_record.outcome_of(state) == outcome
