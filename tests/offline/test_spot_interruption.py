"""Managed spot offline: the real training code, interrupted mid-run by the local executor, resumes from the
checkpoint synced to CheckpointConfig.S3Uri and finishes the same epochs as an uninterrupted job.

Slow (torch on the CPU, three short training processes) but offline.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from offline_moto_builders import REGION

from offline.local_sagemaker import LocalSageMaker, ProgressEvent
from offline.synthetic_dataset import write_dataset_zip
from pipeline.common.config import Settings, load_settings
from pipeline.common.sagemaker_requests import training_job_request
from pipeline.common.state_models import BestJob, Dataset
from pipeline.common.training_code_bundle import build_bundle

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("aws")]

TRAINING_CODE = Path(__file__).resolve().parents[2] / "training_code"
BUCKET = "data"
EPOCHS = 3
# Tiny and deterministic: random weights, 32 px, one thread (the cores are shared).
FAST = {"weights": "random", "image_size": "32", "num_threads": "1", "debug_hook": "false", "seed": "0"}


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DATA_BUCKET", BUCKET)
    monkeypatch.setenv("SAGEMAKER_ROLE_ARN", "arn:aws:iam::123456789012:role/sagemaker")
    monkeypatch.setenv("TRAINING_IMAGE_URI", "pytorch-training")
    monkeypatch.setenv("DEBUGGER_RULES_ENABLED", "false")
    monkeypatch.setenv("PROFILER_RULES_ENABLED", "false")
    monkeypatch.setenv("TRAINING_EPOCHS", str(EPOCHS))
    monkeypatch.setenv("MAX_TRAINING_SECONDS", "600")
    monkeypatch.setenv("SPOT_TRAINING", "true")
    monkeypatch.setenv("EXTRA_HYPERPARAMETERS", json.dumps(FAST))
    return load_settings()


def _dataset(tmp_path: Path) -> Dataset:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    archive = write_dataset_zip(tmp_path / "dogs.zip", num_classes=3, counts=(24, 6, 6), image_size=32, seed=2)
    s3.upload_file(str(archive), BUCKET, "validated/abc/dataset.zip")
    return Dataset(
        bucket=BUCKET,
        key="incoming/dogs.zip",
        dataset_id="abc123",
        run_id="251125-030000-abc123",
        validated_uri=f"s3://{BUCKET}/validated/abc/dataset.zip",
    )


def _metrics_json(model_artifact: str) -> dict[str, Any]:
    bucket, key = model_artifact.removeprefix("s3://").split("/", 1)
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        member = archive.extractfile("metrics.json")
        assert member is not None
        return dict(json.loads(member.read()))


def _train(settings: Settings, dataset: Dataset, name: str, local: LocalSageMaker) -> dict[str, Any]:
    best = BestJob.model_validate(
        {"training_job_name": "t", "objective": {"name": "validation:accuracy", "value": 0.5},
         "hyperparameters": {"batch_size": 8, "learning_rate": 0.05}}
    )  # fmt: skip
    request = training_job_request(settings, dataset, best, name, f"s3://{BUCKET}/code/sourcedir.tar.gz", REGION)
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.create_training_job(**request)
    local.wait_idle(600)
    return dict(sm.describe_training_job(TrainingJobName=name))


def test_spot_job_interrupted_mid_run_resumes_from_its_checkpoint_and_finishes_the_same_epochs(
    tmp_path: Path, settings: Settings
) -> None:
    # GIVEN the real training code bundled as StartTraining uploads it, and a final training job on managed spot
    dataset = _dataset(tmp_path)
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=build_bundle(TRAINING_CODE).archive
    )
    progress: list[ProgressEvent] = []
    reclaimed = {"train-interrupted"}
    with LocalSageMaker(
        tmp_path / "work", progress=progress.append, spot_interruptions=reclaimed.__contains__
    ) as local:
        # WHEN one job runs undisturbed and the same job loses its spot capacity after its first checkpoint
        calm = _train(settings, dataset, "train-calm", local)
        interrupted = _train(settings, dataset, "train-interrupted", local)
        run = local.training_runs["train-interrupted"]
        log = run.log_file.read_text()

    # THEN the request was a spot job with checkpoints under the run, waiting at least its runtime
    assert interrupted["EnableManagedSpotTraining"] is True
    checkpoint_uri = f"s3://{BUCKET}/jobs/251125-030000-abc123/checkpoints/train-interrupted"
    assert interrupted["CheckpointConfig"] == {"S3Uri": checkpoint_uri, "LocalPath": "/opt/ml/checkpoints"}
    assert interrupted["StoppingCondition"]["MaxWaitTimeInSeconds"] >= 600
    # AND the job was interrupted once, restarted, and still completed
    assert run.interruptions == 1
    assert interrupted["TrainingJobStatus"] == "Completed", interrupted.get("FailureReason")
    secondary = [t["Status"] for t in interrupted["SecondaryStatusTransitions"]]
    assert secondary[secondary.index("Interrupted") :][:3] == ["Interrupted", "Restarting", "Training"]
    assert any(e.status == "Interrupted" and e.resource == "train-interrupted" for e in progress)
    # AND the restarted process resumed after the checkpointed epoch instead of starting over
    before, after = log.split("spot interruption 1", 1)
    assert "epoch=1 " in before
    # (a kill during a checkpoint write also leaves its temporary file, which is synced and restored with it)
    assert re.search(r"restored [12] checkpoint files from", after)
    assert "epoch=1 " not in after
    assert f"epoch={EPOCHS} " in after
    # AND it trained exactly the configured epochs, ending where the undisturbed job ended
    resumed, uninterrupted = (
        _metrics_json(interrupted["ModelArtifacts"]["S3ModelArtifacts"]),
        _metrics_json(calm["ModelArtifacts"]["S3ModelArtifacts"]),
    )
    assert [e["epoch"] for e in resumed["epochs"]] == list(range(1, EPOCHS + 1))
    assert resumed["epochs"][-1]["train_loss"] == pytest.approx(uninterrupted["epochs"][-1]["train_loss"], rel=1e-4)
    assert resumed["test_accuracy"] == pytest.approx(uninterrupted["test_accuracy"])
    # AND the checkpoint is in S3 where the next restart (or a person) finds it
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(
        Bucket=BUCKET, Prefix="jobs/251125-030000-abc123/checkpoints/train-interrupted/"
    )
    names = {o["Key"].rsplit("/", 1)[-1] for o in listed.get("Contents", [])}
    assert "checkpoint.pth" in names and names <= {"checkpoint.pth", ".checkpoint.pth.tmp"}


def test_on_demand_job_is_never_interrupted_and_writes_no_checkpoints(tmp_path: Path, settings: Settings) -> None:
    dataset = _dataset(tmp_path)
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=build_bundle(TRAINING_CODE).archive
    )
    on_demand = dataclasses.replace(settings, spot_training=False, training_epochs=1)
    with LocalSageMaker(tmp_path / "work", spot_interruptions=lambda name: True) as local:
        job = _train(on_demand, dataset, "train-on-demand", local)
        run = local.training_runs["train-on-demand"]

    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert run.interruptions == 0
    assert "CheckpointConfig" not in job
    assert not any(run.layout.checkpoint_dir.iterdir())
