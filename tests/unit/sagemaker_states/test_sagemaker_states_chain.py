"""The SageMaker states chained as the real ASL wires them: each handler's output, written where the ASL's
ResultPath puts it, is a valid input for the next state's Parameters. A contract check between the handlers;
the full state machine runs in tests/state_machine."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from sagemaker_states_support import REGION, load_event

from pipeline import (
    approve_model,
    check_rules,
    deploy_endpoint,
    endpoint_status,
    evaluate_model,
    pick_best_job,
    start_training,
    start_tuning,
    training_status,
    tuning_status,
)

ASL = json.loads((Path(__file__).resolve().parents[3] / "state_machine" / "retrain.asl.json").read_text())
HANDLERS: dict[str, Callable[[dict[str, Any], Any], dict[str, Any]]] = {
    "StartTuning": start_tuning.lambda_handler,
    "GetTuningStatus": tuning_status.lambda_handler,
    "PickBestJob": pick_best_job.lambda_handler,
    "StartTraining": start_training.lambda_handler,
    "GetTrainingStatus": training_status.lambda_handler,
    "CheckRules": check_rules.lambda_handler,
    "EvaluateModel": evaluate_model.lambda_handler,
    "DeployEndpoint": deploy_endpoint.lambda_handler,
    "GetEndpointStatus": endpoint_status.lambda_handler,
    "ApproveModel": approve_model.lambda_handler,
}
EXECUTION = {
    "Name": "0b8a5f3e-8a43-4d0e-9a51-7c1f2b9d6e10",
    "Id": "arn:aws:states:us-east-1:123456789012:execution:x:y",
}


def _read(state: dict[str, Any], path: str) -> Any:
    if path.startswith("$$.Execution."):
        return EXECUTION[path.removeprefix("$$.Execution.")]
    value: Any = state
    for part in path.removeprefix("$").strip(".").split("."):
        value = value[part] if part else value
    return value


def _write(state: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.removeprefix("$.").split(".")
    target = state
    for part in parents:
        target = target[part]
    target[leaf] = value


def _parameters(template: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    return {
        name.removesuffix(".$"): _read(state, path) if name.endswith(".$") else path for name, path in template.items()
    }


def test_handlers_feed_each_other_through_the_asl_wiring(
    sagemaker_backend: Any, pipeline_env: Path, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN Debugger off (moto fills no rule statuses), a state just after ValidateDataset, and moto's jobs completing
    monkeypatch.setenv("DEBUGGER_RULES_ENABLED", "false")
    monkeypatch.setenv("PROFILER_RULES_ENABLED", "false")
    state: dict[str, Any] = {
        "settings": {"poll_seconds": 0},
        "dataset": load_event("start_tuning_validated_dataset")["dataset"],
    }

    def before(name: str) -> None:
        # What SageMaker would have produced by the time each state runs.
        if name == "PickBestJob":
            job = sagemaker_backend.hyper_parameter_tuning_jobs[state["tuning"]["job_name"]]
            job.training_job_summaries = [_trial(state["tuning"]["job_name"])]
        if name == "CheckRules":
            judged = {"status": "NoIssuesFound", "details": "judged"}
            reports = {
                "rule_report.json": {"rules": {"VanishingGradient": judged, "LossNotDecreasing": judged}},
                "profiler_report.json": {"rules": {"ProfilerReport": judged}},
                "evaluation.json": {"test_images": 836, "challenger": {"accuracy": 0.83, "served_as": "int8"}},
            }
            _put_output(state["training"]["output_uri"], state["training"]["job_name"], reports)

    # WHEN the states run in the ASL's order, each result written to its ResultPath
    visited = []
    name = "StartTuning"
    while name != "RecordRun":  # the run record and lease release are not SageMaker states
        definition = ASL["States"][name]
        if definition["Type"] == "Wait":
            name = definition["Next"]
            continue
        if definition["Type"] == "Choice":
            choice = definition["Choices"][0]
            expected = choice["BooleanEquals"] if "BooleanEquals" in choice else choice["StringEquals"]
            name = choice["Next"] if _read(state, choice["Variable"]) == expected else definition["Default"]
            continue
        before(name)
        result = HANDLERS[name](_parameters(definition["Parameters"], state), lambda_context)
        _write(state, definition["ResultPath"], json.loads(json.dumps(result)))
        visited.append(name)
        name = definition["Next"]

    # THEN every state ran once and the endpoint serves this run's config
    assert visited == list(HANDLERS)
    assert state["deployment"]["status"]["serving_config"] == state["deployment"]["endpoint_config"]
    assert state["rules"]["passed"] is True
    assert state["best"]["hyperparameters"] == {"batch_size": 128, "learning_rate": 0.02}
    assert (state["gate"]["passed"], state["gate"]["challenger_accuracy"]) == (True, 0.83)
    assert state["approval"] == {
        "model_package_arn": state["gate"]["model_package_arn"],
        "status": "Approved",
        "endpoint": state["deployment"]["endpoint"],
        "endpoint_config": state["deployment"]["endpoint_config"],
    }


def _trial(tuning_job: str) -> dict[str, Any]:
    return {
        "TrainingJobName": f"{tuning_job}-001-abcd1234",
        "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/t-1",
        "CreationTime": "2025-11-25T02:00:00Z",
        "TrainingJobStatus": "Completed",
        "TunedHyperParameters": {"batch_size": '"128"', "learning_rate": "0.02"},
        "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "validation:accuracy", "Value": 0.8},
    }


def _put_output(output_uri: str, job_name: str, reports: dict[str, dict[str, Any]]) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, report in reports.items():
            data = json.dumps(report).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    bucket, prefix = output_uri.removeprefix("s3://").split("/", 1)
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=bucket, Key=f"{prefix}{job_name}/output/output.tar.gz", Body=buffer.getvalue()
    )
