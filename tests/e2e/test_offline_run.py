"""The offline run end to end: template.yaml in moto, the real ASL, handlers, training code and endpoint.

One pipeline serves the whole module, as a deployed stack serves successive uploads: a first run creates the
endpoint, a bad dataset fails without touching it, and a second run replaces the model blue/green.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import profiler_rules
import pytest
from offline_pipelines import stand_in_pipeline

from offline.run import OfflinePipeline, RunOptions, RunResult, audit_rows, main, print_audit
from offline.synthetic_dataset import write_dataset_zip

pytestmark = pytest.mark.slow

CLASSES, COUNTS = 3, (96, 12, 12)
# The template's default blocking rules; the others are reported (a model trained for seconds on 96 images may
# well overfit).
BLOCKING = "VanishingGradient,LossNotDecreasing"
OPTIONS = RunOptions(
    classes=CLASSES,
    counts=COUNTS,
    tuning_jobs=1,
    tuning_epochs=1,
    epochs=3,
    image_size=32,
    parameters=(
        # Seconds of training on 96 images score what they score (12 test images: steps of 0.08), so the
        # champion/challenger gate lets every model through here; tests/state_machine covers its decisions.
        ("AccuracyFloor", "0"),
        ("ChampionTolerance", "1"),
    ),
)
TUNED = {"batch_size": json.dumps("32"), "learning_rate": "0.05"}
ENDPOINT = "dog-breed-classifier"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset_zip(
        tmp_path_factory.mktemp("data") / "dogs.zip", num_classes=CLASSES, counts=COUNTS, image_size=48
    )


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfflinePipeline]:
    work = tmp_path_factory.mktemp("offline")
    with stand_in_pipeline(work, OPTIONS, TUNED) as offline:
        yield offline


@pytest.fixture(scope="module")
def first_run(pipeline: OfflinePipeline, dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    output = tmp_path_factory.mktemp("first")
    return pipeline.run(lambda: pipeline.upload(dataset, "incoming/dogs.zip"), output)


def _serving_config() -> str:
    return str(boto3.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"])


def test_upload_runs_every_state_and_the_endpoint_serves(
    pipeline: OfflinePipeline, first_run: RunResult, dataset: Path
) -> None:
    # GIVEN a dataset zip uploaded under incoming/ (the execution started through the template's rule)
    # THEN every state of the flow ran and the run succeeded
    assert first_run.succeeded, (first_run.error, first_run.cause)
    entered = {visit.name for visit in first_run.visits}
    asl = json.loads(Path("state_machine/retrain.asl.json").read_text())
    # (all but the states of the other endings: failure, a queued trigger, an already trained dataset, a rejection)
    other_endings = {"NotifyFailure", "RunFailed", "QueuedBehindRunningRun", "AlreadyTrained", "RejectModel"}
    manual_approval = {"AwaitApproval", "IsApproved", "NotifyApprovalTimeout", "ApprovalTimedOut"}
    assert entered == set(asl["States"]) - other_endings - manual_approval - {"ModelRejected"}
    assert first_run.outcome == "RetrainingSucceeded"
    # the run record RecordRun wrote to the bucket, with its cost estimate, is part of the audit
    pipeline_record = first_run.record["pipeline_record"]
    assert pipeline_record["outcome"] == "succeeded"
    assert {job["job"] for job in pipeline_record["cost"]["jobs"]} >= {first_run.record["training"]["job_name"]}
    # the audit has the chosen hyperparameters, every rule's verdict and the test accuracy
    record = first_run.record
    assert set(record["best"]["hyperparameters"]) == {"batch_size", "learning_rate"}
    verdicts = record["rules"]["rules"]
    assert set(verdicts) == {
        *BLOCKING.split(","),
        "Overfit",
        "Overtraining",
        "PoorWeightInitialization",
        *profiler_rules.RULE_NAMES,
        "ProfilerReport",
    }
    assert {verdicts[rule] for rule in BLOCKING.split(",")} == {"NoIssuesFound"}
    # (each with what it judged; a GPU rule on this CPU says it could not judge, and why)
    assert "the loss came down" in record["rules"]["details"]["LossNotDecreasing"]
    assert verdicts["LowGPUUtilization"] == "NotEvaluated"
    assert "no GPU" in record["rules"]["details"]["LowGPUUtilization"]
    assert 0.0 <= record["metrics"]["test:accuracy"] <= 1.0
    # the production path: the stand-in backbone frozen, only the head trained on cached features
    bucket, key = record["model_artifact"].removeprefix("s3://").split("/", 1)
    artifact = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(artifact)) as archive:
        job_metrics = json.load(archive.extractfile("metrics.json"))  # type: ignore[arg-type]
    assert job_metrics["trainable"] == "fc"
    assert job_metrics["initial_weights"] == record["initial_weights"]["hyperparameter"]
    assert job_metrics["timing"]["feature_cache_seconds"] > 0
    assert record["endpoint"]["serving_config"] == record["deployment"]["endpoint_config"]
    # and the endpoint answers a real prediction on a test image with one of the dataset's breeds
    prediction = pipeline.predict(first_run, dataset)
    assert prediction is not None
    with zipfile.ZipFile(dataset) as archive:
        labels = {name.split("/")[2] for name in archive.namelist() if name.count("/") == 3}
    assert {p["label"] for p in prediction["prediction"]["predictions"]} <= labels
    # the request the audit prints (curl to the local model server) answers the same while the run is alive
    call = prediction["call"]
    request = urllib.request.Request(
        f"http://127.0.0.1:{call['port']}/invocations",
        data=Path(call["file"]).read_bytes(),
        headers={"Content-Type": "image/jpeg", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        replayed = json.loads(answer.read())["predictions"]
    served = prediction["prediction"]["predictions"]
    assert [p["label"] for p in replayed] == [p["label"] for p in served]
    assert [p["probability"] for p in replayed] == pytest.approx([p["probability"] for p in served], abs=1e-6)
    # the run's files are written
    for name in ("execution_history.json", "run_record.json", "state_machine.svg"):
        assert (first_run.output_dir / name).stat().st_size > 0


def test_bad_dataset_fails_in_validation_and_leaves_the_endpoint(
    pipeline: OfflinePipeline, first_run: RunResult, tmp_path: Path
) -> None:
    # GIVEN a serving endpoint and a zip with a class missing from the test split
    serving = _serving_config()
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        for split, count in zip(("train", "valid", "test"), COUNTS, strict=True):
            classes = CLASSES - 1 if split == "test" else CLASSES
            for index in range(count):
                archive.writestr(f"{split}/{index % classes + 1:03d}.Breed_{index % classes}/{index}.jpg", b"jpeg")
    # WHEN it is uploaded
    result = pipeline.run(lambda: pipeline.upload(bad, "incoming/bad.zip"), tmp_path / "out")
    # THEN the run fails in ValidateDataset with the specific reason, and nothing after it ran
    assert result.status == "FAILED"
    assert result.error == "DatasetInvalid"
    assert "test" in (result.cause or "")
    assert [v.name for v in result.visits] == [
        *("LoadRunSettings", "ClaimPipeline", "IsPipelineFree", "ValidateDataset", "NotifyFailure"),
        *("RecordRun", "WriteRunReport", "ReleasePipeline", "HowDidItEnd", "RunFailed"),
    ]
    assert _serving_config() == serving


def test_second_upload_replaces_the_model_blue_green(
    pipeline: OfflinePipeline, first_run: RunResult, dataset: Path, tmp_path: Path
) -> None:
    # GIVEN the first model serving
    before = _serving_config()
    # WHEN a new dataset version is uploaded
    result = pipeline.run(lambda: pipeline.upload(dataset, "incoming/dogs.zip"), tmp_path)
    # THEN the endpoint was updated (not created) with a blue/green deployment config and serves the new config
    assert result.succeeded, (result.error, result.cause)
    assert result.record["deployment"]["action"] == "update"
    endpoint = boto3.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointConfigName"] == result.record["deployment"]["endpoint_config"] != before
    assert "BlueGreenUpdatePolicy" in endpoint["LastDeploymentConfig"]
    rows = {row["name"]: row for row in audit_rows(result.visits)}
    assert rows["GetEndpointStatus"]["outcome"] == "succeeded"


def test_audit_prints_states_and_the_cause_of_a_failure(first_run: RunResult) -> None:
    failed = RunResult(
        status="FAILED",
        execution_arn="arn:aws:states:us-east-1:123456789012:execution:m:e",
        error="RuleIssuesFound",
        cause=json.dumps({"errorMessage": "Overfit IssuesFound", "errorType": "RuleIssuesFound"}),
        visits=first_run.visits,
        final_state={},
        record={"endpoint": {"name": ENDPOINT, "status": "InService", "serving_config": "old"}},
        output_dir=first_run.output_dir,
    )
    lines: list[str] = []
    print_audit(failed, None, out=type("Out", (), {"write": lambda _, s: lines.append(s), "flush": lambda _: None})())
    text = "".join(lines)
    assert "Error: RuleIssuesFound" in text
    assert "Cause: Overfit IssuesFound" in text  # the Lambda error JSON is unwrapped
    assert "keeps serving old" in text
    assert "ValidateDataset" in text


def test_audit_prints_the_prediction_as_calls_a_reader_can_repeat(tmp_path: Path) -> None:
    # GIVEN a run whose prediction the local model server on port 4321 answered
    result = RunResult(
        status="SUCCEEDED",
        execution_arn="arn:aws:states:us-east-1:123456789012:execution:m:e",
        error=None,
        cause=None,
        visits=[],
        final_state={},
        record={},
        output_dir=tmp_path,
    )
    image = tmp_path / "prediction_input.jpg"
    prediction = {
        "image": "test/001.Affenpinscher/a.jpg",
        "prediction": {"predictions": [{"breed": "Affenpinscher", "probability": 0.9}]},
        "call": {"endpoint": ENDPOINT, "file": str(image), "port": 4321},
    }
    lines: list[str] = []
    # WHEN the audit is printed
    print_audit(
        result, prediction, out=type("Out", (), {"write": lambda _, s: lines.append(s), "flush": lambda _: None})()
    )
    text = "".join(lines)
    # THEN it shows the prediction, the HTTP request the model server answered and the aws CLI call on AWS
    assert "Prediction for test/001.Affenpinscher/a.jpg: Affenpinscher 0.90" in text
    assert "the local model server answered (it stopped when the run ended)" in text
    assert (
        "curl -s http://127.0.0.1:4321/invocations -H 'Content-Type: image/jpeg' -H 'Accept: application/json' "
        f"--data-binary @{image}\n"
    ) in text
    assert (
        f"aws sagemaker-runtime invoke-endpoint --endpoint-name {ENDPOINT} --content-type image/jpeg "
        f"--body fileb://{image} out.json\n"
    ) in text


def test_command_line_rejects_a_missing_dataset(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        main(["--dataset", str(tmp_path / "nope.zip"), "--output", str(tmp_path)])


def test_audit_prints_every_rule_with_what_it_found(first_run: RunResult) -> None:
    lines: list[str] = []
    print_audit(
        first_run, None, out=type("Out", (), {"write": lambda _, s: lines.append(s), "flush": lambda _: None})()
    )
    text = "".join(lines)

    assert "Rule and profiler results (rule_report.json, profiler_report.json;" in text
    assert "Initial weights: STAND-IN for ImageNet (asked for): ResNet18 of random weights (seed 0)" in text
    assert "Accuracy figures are not ImageNet figures" in text
    assert re.search(r"\n  LossNotDecreasing +NoIssuesFound +the loss came down: mean of 3 loss\(es\)", text), text
    assert re.search(r"\n  LowGPUUtilization +NotEvaluated +CPU-only job: no GPU utilisation to judge", text), text
