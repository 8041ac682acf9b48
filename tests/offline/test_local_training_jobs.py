"""The local SageMaker executor's training and tuning jobs, driven through boto3 with tiny fake scripts.

The scripts are written by the tests (not the project's training code) so that each run takes a fraction of
a second and the outcome is known in advance.
"""

from __future__ import annotations

import json
import random
import re
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from offline_moto_builders import (
    REGION,
    create_function,
    create_state_machine,
    finished_execution,
    read_tarball,
    tarball,
)

from offline.local_sagemaker import LocalSageMaker, ProgressEvent, sample_hyperparameters
from offline.moto_shims import offline_aws_patches

pytestmark = pytest.mark.usefixtures("aws")

BUCKET = "data"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
METRICS = [
    {"Name": "train:loss", "Regex": r"\btrain_loss=([0-9.eE+-]+)"},
    {"Name": "validation:accuracy", "Regex": r"\bvalid_accuracy=([0-9.eE+-]+)"},
]

SUCCEEDING_SCRIPT = """
    import argparse, json, os, pathlib, sys

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--learning_rate", type=float, default=0.01)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--arch", default="resnet18")
    args = parser.parse_args()
    dataset = pathlib.Path(os.environ["SM_CHANNEL_TRAINING"]) / "dogs.zip"
    assert dataset.read_bytes() == b"zip-bytes", "the channel holds the dataset zip"
    for epoch in range(1, args.epochs + 1):
        print(f"epoch={epoch} train_loss={1.0 / epoch:.4f} valid_accuracy={args.learning_rate * epoch:.6f}")
    record = {"argv": sys.argv[1:], "hps": json.loads(os.environ["SM_HPS"]), "channels": os.environ["SM_CHANNELS"]}
    pathlib.Path(os.environ["SM_MODEL_DIR"], "model.json").write_text(json.dumps(record))
    pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"], "report.txt").write_text("done")
    hook_config = os.environ.get("SMDEBUG_CONFIG_FILE_PATH")
    if hook_config:
        tensors = pathlib.Path(json.loads(pathlib.Path(hook_config).read_text())["LocalPath"])
        tensors.mkdir(parents=True, exist_ok=True)
        (tensors / "collections.json").write_text(pathlib.Path(hook_config).read_text())
"""

FAILING_SCRIPT = """
    import sys
    print("epoch=1 train_loss=2.5")
    print("Traceback (most recent call last):", file=sys.stderr)
    print("ValueError: train/ holds no images for class 003.Airedale", file=sys.stderr)
    sys.exit(3)
"""

FAILURE_FILE_SCRIPT = """
    import os, pathlib, sys
    pathlib.Path(os.environ["SM_OUTPUT_DIR"], "failure").write_text("DatasetError: valid/ split is missing")
    sys.exit(1)
"""


def _upload(key: str, body: bytes) -> str:
    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key=key, Body=body)
    return f"s3://{BUCKET}/{key}"


def _source_dir(script: str, **modules: str) -> str:
    files = {"train.py": textwrap.dedent(script)} | {
        f"{name}.py": textwrap.dedent(text) for name, text in modules.items()
    }
    return _upload("code/sourcedir.tar.gz", tarball(files))


def _encoded(values: dict[str, Any]) -> dict[str, str]:
    return {name: json.dumps(value) for name, value in values.items()}


def _job_definition(code_uri: str) -> dict[str, Any]:
    return {
        "AlgorithmSpecification": {
            "TrainingImage": "pytorch",
            "TrainingInputMode": "File",
            "MetricDefinitions": METRICS,
        },
        "RoleArn": ROLE,
        "InputDataConfig": [
            {
                "ChannelName": "training",
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/validated/dogs.zip"}
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/jobs/run-1"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 120},
    }


def _create_training_job(
    name: str, script: str, hyperparameters: dict[str, Any], modules: dict[str, str] | None = None, **extra: Any
) -> None:
    code_uri = _source_dir(script, **(modules or {}))
    static = _encoded({"sagemaker_program": "train.py", "sagemaker_submit_directory": code_uri})
    boto3.client("sagemaker", region_name=REGION).create_training_job(
        TrainingJobName=name,
        HyperParameters=static | _encoded(hyperparameters),
        **(_job_definition(code_uri) | extra),
    )


class FakeRuleEvaluator:
    """Stands in for debug_rules.evaluate_rules; holds its answer until released, to observe InProgress."""

    def __init__(self, issues: set[str]) -> None:
        self.issues = issues
        self.release = threading.Event()
        self.entered = threading.Event()
        self.calls: list[tuple[Path, list[str]]] = []

    def __call__(self, trial_dir: Path, rule_names: list[str]) -> dict[str, dict[str, str]]:
        self.calls.append((trial_dir, list(rule_names)))
        self.entered.set()
        assert self.release.wait(30), "the test never released the rule evaluation"
        return {
            name: {"status": "IssuesFound", "details": f"{name}: loss flat for 3 steps"}
            if name in self.issues
            else {"status": "NoIssuesFound", "details": ""}
            for name in rule_names
        }


@pytest.fixture
def rule_evaluator() -> FakeRuleEvaluator:
    return FakeRuleEvaluator(issues={"LossNotDecreasing"})


@pytest.fixture
def events() -> list[ProgressEvent]:
    return []


@pytest.fixture
def executor(
    tmp_path: Path, rule_evaluator: FakeRuleEvaluator, events: list[ProgressEvent]
) -> Iterator[LocalSageMaker]:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    _upload("validated/dogs.zip", b"zip-bytes")
    local = LocalSageMaker(tmp_path / "work", rule_evaluator=rule_evaluator, progress=events.append, seed=7)
    with local:
        yield local
        rule_evaluator.release.set()
    assert local.errors == []


def _describe(name: str) -> dict[str, Any]:
    return boto3.client("sagemaker", region_name=REGION).describe_training_job(TrainingJobName=name)


def _object(key: str) -> bytes:
    return boto3.client("s3", region_name=REGION).get_object(Bucket=BUCKET, Key=key)["Body"].read()


def test_succeeding_script_completes_with_final_metrics_and_artifacts(executor: LocalSageMaker) -> None:
    # GIVEN a script that prints metric lines and writes a model
    _create_training_job("train-ok", SUCCEEDING_SCRIPT, {"epochs": 3, "learning_rate": 0.1, "arch": "resnet18"})
    # WHEN the job is described right away THEN it is running, and shows the requested MetricDefinitions
    running = _describe("train-ok")
    assert running["TrainingJobStatus"] == "InProgress"
    assert running["AlgorithmSpecification"]["MetricDefinitions"] == METRICS
    # WHEN it finishes
    executor.wait_idle(60)
    done = _describe("train-ok")
    # THEN it completed, with the last value of each metric
    assert done["TrainingJobStatus"] == "Completed", done.get("FailureReason")
    assert {m["MetricName"]: m["Value"] for m in done["FinalMetricDataList"]} == {
        "train:loss": pytest.approx(1 / 3, abs=1e-4),
        "validation:accuracy": pytest.approx(0.3),
    }
    assert [t["Status"] for t in done["SecondaryStatusTransitions"]] == [
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    # AND model.tar.gz holds what the script wrote, with the hyperparameters decoded as the toolkit does
    artifact = done["ModelArtifacts"]["S3ModelArtifacts"]
    assert artifact == f"s3://{BUCKET}/jobs/run-1/train-ok/output/model.tar.gz"
    record = json.loads(read_tarball(_object("jobs/run-1/train-ok/output/model.tar.gz"))["model.json"])
    assert record["argv"] == ["--arch", "resnet18", "--epochs", "3", "--learning_rate", "0.1"]
    assert record["hps"] == {"arch": "resnet18", "epochs": 3, "learning_rate": 0.1}
    assert json.loads(record["channels"]) == ["training"]
    assert read_tarball(_object("jobs/run-1/train-ok/output/output.tar.gz")) == {"report.txt": "done"}


def test_metric_lines_reach_the_progress_callback_with_epoch(
    executor: LocalSageMaker, events: list[ProgressEvent]
) -> None:
    _create_training_job("train-progress", SUCCEEDING_SCRIPT, {"epochs": 2})
    executor.wait_idle(60)
    metric_events = [e for e in events if e.kind == "metrics"]
    assert [(e.epoch, dict(e.metrics)["train:loss"]) for e in metric_events] == [(1, 1.0), (2, 0.5)]
    assert [e.status for e in events if e.kind == "status"] == ["InProgress", "Completed"]
    assert "epoch=2 train_loss=0.5000" in (executor.training_runs["train-progress"].log_file.read_text())
    logs = boto3.client("logs", region_name=REGION)
    (stream,) = logs.describe_log_streams(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix="train-progress/"
    )["logStreams"]
    messages = [
        e["message"]
        for e in logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream["logStreamName"])[
            "events"
        ]
    ]
    assert "epoch=2 train_loss=0.5000 valid_accuracy=0.020000" in messages


def test_failing_script_fails_with_the_end_of_stderr_as_reason(executor: LocalSageMaker) -> None:
    _create_training_job("train-bad", FAILING_SCRIPT, {"epochs": 1})
    executor.wait_idle(60)
    failed = _describe("train-bad")
    assert failed["TrainingJobStatus"] == "Failed"
    reason = failed["FailureReason"]
    assert reason.startswith("AlgorithmError: ExecuteUserScriptError:")
    assert "ExitCode 3" in reason
    assert "ValueError: train/ holds no images for class 003.Airedale" in reason
    assert "model.tar.gz" not in str(
        boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET, Prefix="jobs/run-1/train-bad/")
    )


def test_failure_file_written_by_the_script_becomes_the_reason(executor: LocalSageMaker) -> None:
    _create_training_job("train-failure-file", FAILURE_FILE_SCRIPT, {})
    executor.wait_idle(60)
    assert _describe("train-failure-file")["FailureReason"] == "AlgorithmError: DatasetError: valid/ split is missing"


def test_missing_channel_data_fails_the_job_before_training(executor: LocalSageMaker) -> None:
    code_uri = _source_dir(SUCCEEDING_SCRIPT)
    definition = _job_definition(code_uri)
    definition["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = f"s3://{BUCKET}/validated/missing.zip"
    boto3.client("sagemaker", region_name=REGION).create_training_job(
        TrainingJobName="train-no-data",
        HyperParameters=_encoded({"sagemaker_program": "train.py", "sagemaker_submit_directory": code_uri}),
        **definition,
    )
    executor.wait_idle(60)
    failed = _describe("train-no-data")
    assert failed["TrainingJobStatus"] == "Failed"
    assert failed["FailureReason"].startswith("ClientError: No S3 objects found under S3 URL")


DEBUG_RULES = [
    {
        "RuleConfigurationName": name,
        "RuleEvaluatorImage": "rules-image",
        "RuleParameters": {"rule_to_invoke": name},
    }
    for name in ("LossNotDecreasing", "VanishingGradient")
]


def test_rules_run_after_training_and_report_issues(
    executor: LocalSageMaker, rule_evaluator: FakeRuleEvaluator
) -> None:
    # GIVEN a job with a DebugHookConfig, two Debugger rules and the ProfilerReport rule
    _create_training_job(
        "train-rules",
        SUCCEEDING_SCRIPT,
        {"epochs": 1},
        DebugHookConfig={
            "S3OutputPath": f"s3://{BUCKET}/jobs/run-1",
            "HookParameters": {"train.save_interval": "100"},
            "CollectionConfigurations": [{"CollectionName": "losses"}],
        },
        DebugRuleConfigurations=DEBUG_RULES,
        ProfilerConfig={"S3OutputPath": f"s3://{BUCKET}/jobs/run-1", "DisableProfiler": False},
        ProfilerRuleConfigurations=[{"RuleConfigurationName": "ProfilerReport", "RuleEvaluatorImage": "rules-image"}],
    )
    sm = boto3.client("sagemaker", region_name=REGION)
    # WHEN the training process has finished and the rule evaluation has started but not answered
    assert rule_evaluator.entered.wait(60)
    during = _describe("train-rules")
    # THEN the job is Completed while its Debugger rules are still InProgress (as SageMaker's rule jobs)
    assert during["TrainingJobStatus"] == "Completed"
    assert {s["RuleEvaluationStatus"] for s in during["DebugRuleEvaluationStatuses"]} == {"InProgress"}
    # WHEN the evaluation finishes
    rule_evaluator.release.set()
    executor.wait_idle(60)
    after = sm.describe_training_job(TrainingJobName="train-rules")
    statuses = {s["RuleConfigurationName"]: s for s in after["DebugRuleEvaluationStatuses"]}
    # THEN the rule that found issues says so, with its details; the other found none
    assert statuses["LossNotDecreasing"]["RuleEvaluationStatus"] == "IssuesFound"
    assert statuses["LossNotDecreasing"]["StatusDetails"] == "LossNotDecreasing: loss flat for 3 steps"
    assert statuses["VanishingGradient"]["RuleEvaluationStatus"] == "NoIssuesFound"
    # AND the rules read the tensors SageMaker's layout puts under <S3OutputPath>/<job>/debug-output
    trial_dir, names = rule_evaluator.calls[0]
    assert names == ["LossNotDecreasing", "VanishingGradient"]
    hook_config = json.loads((trial_dir / "collections.json").read_text())
    assert hook_config["CollectionConfigurations"] == [{"CollectionName": "losses"}]
    assert _object("jobs/run-1/train-rules/debug-output/collections.json")
    # AND ProfilerReport, with no profiler samples to judge (this script records none), is an Error, not a pass
    (profiler,) = after["ProfilerRuleEvaluationStatuses"]
    assert profiler["RuleEvaluationStatus"] == "Error"
    assert "No profiler data" in profiler["StatusDetails"]
    assert after["ProfilerConfig"]["DisableProfiler"] is False


def test_rules_without_tensors_end_in_error(executor: LocalSageMaker, rule_evaluator: FakeRuleEvaluator) -> None:
    rule_evaluator.release.set()
    _create_training_job(
        "train-no-tensors",
        FAILURE_FILE_SCRIPT.replace("sys.exit(1)", "sys.exit(0)").replace('"failure"', '"unused"'),
        {},
        DebugHookConfig={"S3OutputPath": f"s3://{BUCKET}/jobs/run-1"},
        DebugRuleConfigurations=DEBUG_RULES[:1],
    )
    executor.wait_idle(60)
    (status,) = _describe("train-no-tensors")["DebugRuleEvaluationStatuses"]
    assert status["RuleEvaluationStatus"] == "Error"
    assert "No Debugger tensors" in status["StatusDetails"]
    assert rule_evaluator.calls == []


DEBUG_RULES_MODULE = """
    import json, pathlib

    def evaluate_rules(trial_dir, rule_names):
        hook = json.loads((pathlib.Path(trial_dir) / "collections.json").read_text())
        return {
            name: {"status": "IssuesFound", "details": f"saw {hook['HookParameters']['train.save_interval']}"}
            for name in rule_names
        }
"""


def test_without_injected_evaluator_the_jobs_debug_rules_run_in_a_subprocess(tmp_path: Path) -> None:
    # GIVEN an executor with no rule evaluator and a job whose source folder has its own debug_rules.py
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    _upload("validated/dogs.zip", b"zip-bytes")
    with LocalSageMaker(tmp_path / "work", training_code_dir=None) as local:
        _create_training_job(
            "train-subprocess-rules",
            SUCCEEDING_SCRIPT,
            {"epochs": 1},
            modules={"debug_rules": DEBUG_RULES_MODULE},
            DebugHookConfig={
                "S3OutputPath": f"s3://{BUCKET}/jobs/run-1",
                "HookParameters": {"train.save_interval": "7"},
            },
            DebugRuleConfigurations=DEBUG_RULES[:1],
        )
        local.wait_idle(60)
    # THEN that module's evaluate_rules judged the trial downloaded from S3
    (status,) = _describe("train-subprocess-rules")["DebugRuleEvaluationStatuses"]
    assert status["RuleEvaluationStatus"] == "IssuesFound"
    assert status["StatusDetails"] == "saw 7"
    report = json.loads(
        _object("jobs/run-1/train-subprocess-rules/rule-output/LossNotDecreasing/local-evaluation.json")
    )
    assert report["status"] == "IssuesFound"


WAITING_SCRIPT = """
    import time
    print("waiting to be stopped", flush=True)
    while True:
        time.sleep(0.1)
"""


def test_stop_training_job_ends_the_running_script(tmp_path: Path) -> None:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    _upload("validated/dogs.zip", b"zip-bytes")
    started = threading.Event()

    def watch(job: str, line: str) -> None:
        if line == "waiting to be stopped":
            started.set()

    with LocalSageMaker(tmp_path / "work", log=watch) as local:
        _create_training_job("train-forever", WAITING_SCRIPT, {})
        assert started.wait(60)
        boto3.client("sagemaker", region_name=REGION).stop_training_job(TrainingJobName="train-forever")
        local.wait_idle(60)
    stopped = _describe("train-forever")
    assert stopped["TrainingJobStatus"] == "Stopped"
    assert stopped["SecondaryStatus"] == "Stopped"


TALKING_THEN_SILENT_SCRIPT = """
    import sys, time
    for step in range(6):
        print(f"progress: train epoch 1 step {step}/6", flush=True)
        time.sleep(0.5)
    print("about to hang", flush=True)
    time.sleep(600)
"""


def test_a_job_that_stops_printing_fails_as_stuck_with_its_last_line(tmp_path: Path) -> None:
    # GIVEN an executor with a 2-second stall timeout and a job that prints every 0.5 s for 3 s, then hangs
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    _upload("validated/dogs.zip", b"zip-bytes")
    events: list[ProgressEvent] = []
    with LocalSageMaker(tmp_path / "work", stall_timeout_seconds=2, progress=events.append) as local:
        _create_training_job("train-hangs", TALKING_THEN_SILENT_SCRIPT, {})
        local.wait_idle(60)
    failed = _describe("train-hangs")
    # THEN the 3 s of progress (longer than the timeout) did not stop it; the silence did, saying so
    log = local.training_runs["train-hangs"].log_file.read_text()
    assert "progress: train epoch 1 step 5/6" in log
    # (each progress line was reported as a progress event, for the console)
    progress = [(e.resource, e.message) for e in events if e.kind == "progress"]
    assert progress == [("train-hangs", f"train epoch 1 step {step}/6") for step in range(6)]
    assert failed["TrainingJobStatus"] == "Failed"
    assert (
        "printed nothing for 2 s and was stopped as stuck (its last line: 'about to hang')" in (failed["FailureReason"])
    )
    assert "--stall-timeout" in failed["FailureReason"]


def test_a_job_over_its_max_runtime_is_stopped_as_sagemaker_does(tmp_path: Path) -> None:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    _upload("validated/dogs.zip", b"zip-bytes")
    with LocalSageMaker(tmp_path / "work", stall_timeout_seconds=None) as local:
        _create_training_job(
            "train-too-long", TALKING_THEN_SILENT_SCRIPT, {}, StoppingCondition={"MaxRuntimeInSeconds": 2}
        )
        local.wait_idle(60)
    stopped = _describe("train-too-long")
    assert (stopped["TrainingJobStatus"], stopped["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")


# --- tuning --------------------------------------------------------------------------------------------------

RANGES = {
    "CategoricalParameterRanges": [{"Name": "batch_size", "Values": ["32", "64", "128"]}],
    "ContinuousParameterRanges": [
        {"Name": "learning_rate", "MinValue": "0.001", "MaxValue": "0.1", "ScalingType": "Logarithmic"}
    ],
    "IntegerParameterRanges": [],
}


def _create_tuning_job(name: str, script: str, max_jobs: int) -> None:
    code_uri = _source_dir(script)
    definition = _job_definition(code_uri)
    definition["StaticHyperParameters"] = _encoded(
        {"sagemaker_program": "train.py", "sagemaker_submit_directory": code_uri, "epochs": 2}
    )
    boto3.client("sagemaker", region_name=REGION).create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name,
        HyperParameterTuningJobConfig={
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "validation:accuracy"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": max_jobs, "MaxParallelTrainingJobs": 2},
            "ParameterRanges": RANGES,
            "TrainingJobEarlyStoppingType": "Auto",
        },
        TrainingJobDefinition=definition,
    )


def test_tuning_job_runs_each_trial_and_names_the_best(executor: LocalSageMaker, events: list[ProgressEvent]) -> None:
    # GIVEN a tuning job of 3 trials whose script reports accuracy = learning rate x epochs
    _create_tuning_job("hpo-1", SUCCEEDING_SCRIPT, max_jobs=3)
    sm = boto3.client("sagemaker", region_name=REGION)
    assert (
        sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="hpo-1")["HyperParameterTuningJobStatus"]
        == "InProgress"
    )
    # WHEN it finishes
    executor.wait_idle(120)
    tuning = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="hpo-1")
    ranked = sm.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="hpo-1", SortBy="FinalObjectiveMetricValue", SortOrder="Descending"
    )["TrainingJobSummaries"]
    # THEN three trials ran, named as SageMaker names them, each with its sampled hyperparameters
    assert tuning["HyperParameterTuningJobStatus"] == "Completed"
    assert tuning["TrainingJobStatusCounters"]["Completed"] == 3
    assert tuning["ObjectiveStatusCounters"]["Succeeded"] == 3
    assert len(ranked) == 3
    assert all(re.fullmatch(r"hpo-1-00[1-3]-[0-9a-f]{8}", s["TrainingJobName"]) for s in ranked)
    values = [s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for s in ranked]
    assert values == sorted(values, reverse=True)
    for summary in ranked:
        learning_rate = float(summary["TunedHyperParameters"]["learning_rate"])
        assert 0.001 <= learning_rate <= 0.1
        assert summary["TunedHyperParameters"]["batch_size"] in {"32", "64", "128"}
        assert summary["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == pytest.approx(
            learning_rate * 2, abs=1e-5
        )
    # AND the best job is the top of that ranking, and it exists as a training job with static + tuned values
    assert tuning["BestTrainingJob"]["TrainingJobName"] == ranked[0]["TrainingJobName"]
    best = _describe(ranked[0]["TrainingJobName"])
    assert best["HyperParameters"]["epochs"] == "2"
    assert best["HyperParameters"]["learning_rate"] == ranked[0]["TunedHyperParameters"]["learning_rate"]
    # AND the display was told the trials and that sampling is random, not Bayesian
    assert [(e.trial, e.trials) for e in events if e.kind == "trial"] == [(1, 3), (2, 3), (3, 3)]
    assert any("at random" in e.message and "Bayesian" in e.message for e in events if e.kind == "note")


def test_tuning_job_fails_when_every_trial_fails(executor: LocalSageMaker) -> None:
    _create_tuning_job("hpo-bad", FAILING_SCRIPT, max_jobs=2)
    executor.wait_idle(120)
    sm = boto3.client("sagemaker", region_name=REGION)
    tuning = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="hpo-bad")
    assert tuning["HyperParameterTuningJobStatus"] == "Failed"
    assert tuning["FailureReason"].startswith("All training jobs failed.")
    assert "ValueError: train/ holds no images" in tuning["FailureReason"]
    assert tuning["TrainingJobStatusCounters"]["NonRetryableError"] == 2
    assert "BestTrainingJob" not in tuning
    listed = sm.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="hpo-bad", SortBy="FinalObjectiveMetricValue"
    )
    assert listed["TrainingJobSummaries"] == []


def test_sampling_is_seeded_and_stays_in_range() -> None:
    draws = [sample_hyperparameters(RANGES, random.Random(3)) for _ in range(2)]
    assert draws[0] == draws[1]
    integer = {
        "IntegerParameterRanges": [{"Name": "layers", "MinValue": "2", "MaxValue": "4", "ScalingType": "Linear"}]
    }
    assert {sample_hyperparameters(integer, random.Random(i))["layers"] for i in range(50)} == {"2", "3", "4"}


def test_a_state_machine_poll_loop_sees_the_job_run_and_complete(executor: LocalSageMaker) -> None:
    # GIVEN a state machine that starts a job, then polls it through a Lambda until it is terminal
    seen: list[str] = []

    def start(event: dict[str, Any], context: object) -> dict[str, str]:
        _create_training_job("train-polled", SUCCEEDING_SCRIPT, {"epochs": 2})
        return {"job": "train-polled"}

    def poll(event: dict[str, Any], context: object) -> dict[str, str]:
        status = str(_describe(event["job"])["TrainingJobStatus"])
        seen.append(status)
        return {"job": event["job"], "status": status}

    start_arn = create_function("start", "unused.handler")
    poll_arn = create_function("poll", "unused.handler")
    machine_arn = create_state_machine(
        {
            "StartAt": "Start",
            "States": {
                "Start": {"Type": "Task", "Resource": start_arn, "Next": "Poll"},
                "Poll": {"Type": "Task", "Resource": poll_arn, "Next": "Done?"},
                "Done?": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.status", "StringEquals": "InProgress", "Next": "Wait"}],
                    "Default": "End",
                },
                "Wait": {"Type": "Wait", "Seconds": 60, "Next": "Poll"},
                "End": {"Type": "Succeed"},
            },
        }
    )
    with offline_aws_patches(lambda_overrides={"start": start, "poll": poll}, include_sagemaker_actions=False):
        execution = boto3.client("stepfunctions", region_name=REGION).start_execution(
            stateMachineArn=machine_arn, input="{}"
        )
        result = finished_execution(execution["executionArn"], deadline_seconds=120)
    # THEN the loop saw the job InProgress first and Completed last
    assert result["status"] == "SUCCEEDED"
    assert seen[0] == "InProgress"
    assert seen[-1] == "Completed"


def test_spot_trials_checkpoint_each_under_their_own_name() -> None:
    from offline.local_sagemaker.tuning import _trial_request

    # GIVEN a tuning job definition on managed spot with one CheckpointConfig for all its trials
    definition = {
        "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "File"},
        "OutputDataConfig": {"S3OutputPath": "s3://b/jobs/run/"},
        "EnableManagedSpotTraining": True,
        "CheckpointConfig": {"S3Uri": "s3://b/jobs/run/checkpoints/hpo-run", "LocalPath": "/opt/ml/checkpoints"},
    }

    # WHEN two trials are started from it
    first, second = (_trial_request(definition, name, {}) for name in ("hpo-run-001-aa", "hpo-run-002-bb"))

    # THEN each resumes only its own checkpoints, and the definition itself is untouched
    assert first["CheckpointConfig"]["S3Uri"] == "s3://b/jobs/run/checkpoints/hpo-run/hpo-run-001-aa"
    assert second["CheckpointConfig"]["S3Uri"] == "s3://b/jobs/run/checkpoints/hpo-run/hpo-run-002-bb"
    assert first["EnableManagedSpotTraining"] is True
    assert definition["CheckpointConfig"]["S3Uri"] == "s3://b/jobs/run/checkpoints/hpo-run"
