"""The real training code on the local executor, disturbed: a managed-spot job interrupted mid-run resumes from the
checkpoint synced to CheckpointConfig.S3Uri and finishes the same epochs as an uninterrupted job, on one instance
and on two (both ranks resume); a rank killed mid-run fails its two-instance job, naming it.

Slow (torch on the CPU, short training processes) but offline.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import tarfile
import threading
from pathlib import Path
from typing import Any

import boto3
import psutil
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
# Tiny and deterministic: random weights, 32 px, one thread (the cores are shared); no int8 check (nothing here
# serves the model; quantising and scoring it twice a job took 9 s of the module's 33).
FAST = {
    "weights": "random",
    "image_size": "32",
    "num_threads": "1",
    "debug_hook": "false",
    "int8_check": "false",
    "seed": "0",
}


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


def _shard_digests(log: str) -> dict[str, str]:
    """Each host's train shard digest, from the training code's ``shard rank=R split=train ...`` lines."""
    found = re.findall(r"\[(algo-\d)\] .*shard rank=\d split=train images=\d+ paths_sha256=(\w+)", log)
    return dict(found)


def test_two_instance_spot_job_resumes_both_ranks_from_rank_0s_checkpoint(tmp_path: Path, settings: Settings) -> None:
    # GIVEN the final job on 2 instances of managed spot, which loses its capacity after the first checkpoint
    dataset = _dataset(tmp_path)
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=build_bundle(TRAINING_CODE).archive
    )
    two_instances = dataclasses.replace(settings, training_instance_count=2)
    with LocalSageMaker(tmp_path / "work", spot_interruptions=lambda name: True) as local:
        job = _train(two_instances, dataset, "train-2-spot", local)
        run = local.training_runs["train-2-spot"]
        log = run.log_file.read_text()

    # THEN the request asked the container for torchrun on both instances
    assert job["ResourceConfig"]["InstanceCount"] == 2
    assert job["HyperParameters"]["sagemaker_torch_distributed_enabled"] == "true"
    # AND the job was interrupted once and completed
    assert run.interruptions == 1
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    # AND after the restart both hosts were given the checkpoint and both ranks resumed after the same epoch
    before, after = log.split("spot interruption 1", 1)
    resumed = dict(re.findall(r"\[(algo-\d)\] .*resuming from .* after epoch (\d+)", after))
    assert set(resumed) == {"algo-1", "algo-2"} and len(set(resumed.values())) == 1
    assert all(f"[{host}] restored" in after for host in ("algo-1", "algo-2"))
    # AND the ranks trained on different shards, before and after the restart alike
    assert len(set(_shard_digests(before).values())) == 2
    assert _shard_digests(after) == _shard_digests(before)
    # AND the artifact is rank 0's, recording a 2-rank job that trained exactly the configured epochs
    metrics = _metrics_json(job["ModelArtifacts"]["S3ModelArtifacts"])
    assert metrics["distributed"]["world_size"] == 2 and metrics["distributed"]["backend"] == "gloo"
    assert [e["epoch"] for e in metrics["epochs"]] == list(range(1, EPOCHS + 1))
    assert not any((run.layouts["algo-2"].model_dir).iterdir())


def test_a_rank_killed_mid_run_fails_its_two_instance_job_naming_the_host(tmp_path: Path, settings: Settings) -> None:
    # GIVEN a long 2-instance on-demand job whose second rank the kernel kills (as the OOM killer would) after epoch 1
    dataset = _dataset(tmp_path)
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=build_bundle(TRAINING_CODE).archive
    )
    long_job = dataclasses.replace(settings, training_instance_count=2, spot_training=False, training_epochs=40)
    killed = threading.Event()
    local: LocalSageMaker

    def kill_rank_1_after_epoch_1(job: str, line: str) -> None:
        if killed.is_set() or not line.startswith("[algo-1] epoch=1 "):
            return
        torchrun = psutil.Process(local.training_runs[job]._processes["algo-2"].pid)
        for rank in torchrun.children():
            rank.kill()
        killed.set()

    with LocalSageMaker(tmp_path / "work", log=kill_rank_1_after_epoch_1) as local:
        job = _train(long_job, dataset, "train-2-killed", local)
        log = local.training_runs["train-2-killed"].log_file.read_text()

    # THEN the job failed well before its 40 epochs, and the reason names the killed rank's host and the signal
    assert killed.is_set()
    assert job["TrainingJobStatus"] == "Failed"
    assert "epoch=40 " not in log
    reason = job["FailureReason"]
    assert reason.startswith("AlgorithmError: [algo-2] ExecuteUserScriptError:"), reason
    assert "Signal 9 (SIGKILL) received by PID" in reason
    # AND rank 0, which lost its peer, failed after it and is named too
    assert "\nthen [algo-1] exited " in reason
    # AND nothing was uploaded as a model
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET, Prefix="jobs/")
    assert "train-2-killed/output/model.tar.gz" not in str(listed)
