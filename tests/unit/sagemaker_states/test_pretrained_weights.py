"""The pinned pretrained weights: every trial and the training job get them as the pretrained channel, and StartTuning
starts nothing when they are not staged (or are not the file their name pins)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import boto3
import pytest
from sagemaker_states_support import BUCKET, PRETRAINED_CHANNEL_ON_THE_WIRE, REGION, WEIGHTS_KEY, load_event

from pipeline import start_tuning
from pipeline.common import pretrained_weights
from pipeline.common.config import Settings, load_settings
from pipeline.common.errors import PretrainedWeightsMissing
from pipeline.common.sagemaker_requests import training_job_request, tuning_job_request, uses_pretrained_weights
from pipeline.common.state_models import BestJob, Dataset

BEST = BestJob.model_validate(
    {
        "training_job_name": "hpo-1-001",
        "objective": {"name": "validation:accuracy", "value": 0.81},
        "hyperparameters": {"batch_size": '"64"', "learning_rate": "0.01"},
    }
)


def _channels(request: dict[str, Any]) -> list[dict[str, Any]]:
    return list(request.get("InputDataConfig") or request["TrainingJobDefinition"]["InputDataConfig"])


def test_every_trial_and_the_training_job_get_the_exact_staged_object(settings: Settings, dataset: Dataset) -> None:
    tuning = tuning_job_request(settings, dataset, "hpo-1", "s3://dog-data/code/x.tar.gz", REGION)
    training = training_job_request(settings, dataset, BEST, "train-1", "s3://dog-data/code/x.tar.gz", REGION)

    assert uses_pretrained_weights(settings)  # the default: the weights hyperparameter is pretrained
    for request in (tuning, training):
        assert [c["ChannelName"] for c in _channels(request)] == ["training", "pretrained"]
        assert _channels(request)[1] == PRETRAINED_CHANNEL_ON_THE_WIRE


@pytest.mark.parametrize("weights", ["pretrained", "imagenet", '"pretrained"'])
def test_pretrained_by_any_of_its_names_gets_the_channel(settings: Settings, dataset: Dataset, weights: str) -> None:
    settings = dataclasses.replace(settings, extra_hyperparameters={"weights": weights})
    request = training_job_request(settings, dataset, BEST, "train-1", "s3://dog-data/code/x.tar.gz", REGION)
    assert "pretrained" in [c["ChannelName"] for c in _channels(request)]


@pytest.mark.parametrize("weights", ["random", "stand-in", "/opt/ml/code/initial.pth"])
def test_jobs_that_need_no_staged_weights_get_no_channel_and_no_check(
    aws: None, monkeypatch: pytest.MonkeyPatch, pipeline_env: Path, lambda_context: Any, weights: str
) -> None:
    # GIVEN jobs told to start from random init (or weights of their own) and no staged weights at all
    monkeypatch.setenv("EXTRA_HYPERPARAMETERS", f'{{"weights": "{weights}"}}')
    boto3.client("s3", region_name=REGION).delete_object(Bucket=BUCKET, Key=WEIGHTS_KEY)

    # WHEN the tuning starts THEN it does, without the channel
    result = start_tuning.lambda_handler(load_event("start_tuning_validated_dataset"), lambda_context)
    job = boto3.client("sagemaker", region_name=REGION).describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=result["job_name"]
    )
    assert [c["ChannelName"] for c in job["TrainingJobDefinition"]["InputDataConfig"]] == ["training"]


def test_a_custom_key_is_the_channel(monkeypatch: pytest.MonkeyPatch, pipeline_env: Path, dataset: Dataset) -> None:
    monkeypatch.setenv("PRETRAINED_WEIGHTS_KEY", "models/resnet18-standin-6a8c9f61.pth")
    request = tuning_job_request(load_settings(), dataset, "hpo-1", "s3://dog-data/code/x.tar.gz", REGION)
    uri = _channels(request)[1]["DataSource"]["S3DataSource"]["S3Uri"]
    assert uri == "s3://dog-data/models/resnet18-standin-6a8c9f61.pth"


def _nothing_was_started() -> None:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    assert sagemaker.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"] == []
    assert boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET, Prefix="code/")["KeyCount"] == 0


def test_weights_not_staged_fail_the_run_naming_the_object_and_the_command_and_start_nothing(
    aws: None, pipeline_env: Path, lambda_context: Any
) -> None:
    # GIVEN a fresh deployment whose weights were never staged
    boto3.client("s3", region_name=REGION).delete_object(Bucket=BUCKET, Key=WEIGHTS_KEY)

    # WHEN StartTuning runs THEN the run fails with what is missing and the one command that stages it
    with pytest.raises(PretrainedWeightsMissing) as failure:
        start_tuning.lambda_handler(load_event("start_tuning_validated_dataset"), lambda_context)
    message = str(failure.value)
    assert message.startswith(f"s3://{BUCKET}/{WEIGHTS_KEY} does not exist")
    assert "`make stage-weights STACK=<stack name>`" in message and "nothing was started" in message
    # AND no tuning job was created, no code uploaded
    _nothing_was_started()


def _stage_with_checksum(body: bytes) -> None:
    checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=BUCKET, Key=WEIGHTS_KEY, Body=body, ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum
    )


def test_a_staged_object_that_is_not_the_pinned_file_fails_before_anything_starts(
    aws: None, settings: Settings, dataset: Dataset
) -> None:
    # GIVEN an object under torchvision's name whose recorded SHA-256 is not the f37072fd... the name pins
    _stage_with_checksum(b"some other file")

    with pytest.raises(PretrainedWeightsMissing, match=r"has SHA-256 [0-9a-f]{64}, not the f37072fd\.\.\."):
        pretrained_weights.check_pretrained_weights(settings, boto3.client("s3", region_name=REGION))


def test_a_staged_object_whose_checksum_matches_its_name_passes(
    aws: None, monkeypatch: pytest.MonkeyPatch, pipeline_env: Path
) -> None:
    body = b"the pinned weights"
    key = f"weights/resnet18-{hashlib.sha256(body).hexdigest()[:8]}.pth"
    monkeypatch.setenv("PRETRAINED_WEIGHTS_KEY", key)
    checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=BUCKET, Key=key, Body=body, ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum)

    pretrained_weights.check_pretrained_weights(load_settings(), s3)


def test_a_key_that_pins_nothing_is_refused(aws: None, monkeypatch: pytest.MonkeyPatch, pipeline_env: Path) -> None:
    monkeypatch.setenv("PRETRAINED_WEIGHTS_KEY", "weights/resnet18.pth")
    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key="weights/resnet18.pth", Body=b"w")

    with pytest.raises(PretrainedWeightsMissing, match="does not pin the weights"):
        pretrained_weights.check_pretrained_weights(load_settings(), boto3.client("s3", region_name=REGION))


def test_the_pipeline_the_staging_command_and_the_training_code_agree_on_names() -> None:
    import dog_model  # training_code/ (torch)

    from offline import stage_weights
    from pipeline.common import sagemaker_requests

    assert sagemaker_requests.PRETRAINED_CHANNEL == dog_model.PRETRAINED_CHANNEL
    assert sagemaker_requests.PRETRAINED_WEIGHTS == dog_model.PRETRAINED_WEIGHTS
    assert pretrained_weights.PINNED_WEIGHTS_NAME.pattern == dog_model.PINNED_WEIGHTS_NAME.pattern
    assert stage_weights.PINNED_WEIGHTS_NAME is pretrained_weights.PINNED_WEIGHTS_NAME
    assert pretrained_weights.STAGE_COMMAND == dog_model.STAGE_COMMAND
    assert stage_weights.DEFAULT_KEY == WEIGHTS_KEY == f"weights/{dog_model.IMAGENET_RESNET18_FILE}"
