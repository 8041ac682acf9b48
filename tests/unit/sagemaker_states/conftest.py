"""Fixtures for the SageMaker states: the template's environment, a moto account with the missing SageMaker
actions, a validated dataset in the state, and Stubber-backed gateways that pin request bodies."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sagemaker.models import sagemaker_backends
from sagemaker_states_support import (
    BUCKET,
    INFERENCE_IMAGE,
    REGION,
    ROLE_ARN,
    RULE_IMAGE,
    TRAINING_IMAGE,
    WEIGHTS_KEY,
    load_event,
)

from offline.moto_shims import SageMakerMissingActions
from pipeline.common.config import Settings, load_settings
from pipeline.common.sagemaker_gateway import SageMakerGateway
from pipeline.common.state_models import Dataset

# The SDK 2.x is only the reference the request tests compare against; its v3 migration notice is noise here.
os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")


@pytest.fixture
def pipeline_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The template's environment for the SageMaker states; returns the training code folder it points at."""
    code_dir = tmp_path / "training_code"
    code_dir.mkdir()
    (code_dir / "hpo.py").write_text("print('valid_accuracy=0.5')\n")
    (code_dir / "train_model.py").write_text("print('train_loss=1.0')\n")
    for name, value in {
        "DATA_BUCKET": BUCKET,
        "CODE_PREFIX": "code/",
        "OUTPUT_PREFIX": "jobs/",
        "SAGEMAKER_ROLE_ARN": ROLE_ARN,
        "TRAINING_IMAGE_URI": TRAINING_IMAGE,
        "INFERENCE_IMAGE_URI": INFERENCE_IMAGE,
        "RULE_IMAGE_URI": RULE_IMAGE,
        "TRAINING_INSTANCE_TYPE": "ml.g4dn.xlarge",
        "TUNING_INSTANCE_TYPE": "ml.g4dn.xlarge",
        "MAX_TUNING_JOBS": "5",
        "MAX_PARALLEL_TUNING_JOBS": "2",
        "TUNING_EPOCHS": "4",
        "TRAINING_EPOCHS": "10",
        "ENDPOINT_NAME": "dog-breed-classifier",
        "ENDPOINT_INSTANCE_TYPE": "ml.m5.large",
        "ENDPOINT_INSTANCE_COUNT": "1",
        "DEPLOYMENT_STRATEGY": "AUTO",
        "BAKE_TIME_SECONDS": "600",
        "ROLLBACK_ALARMS": "dog-breed-5xx,dog-breed-latency",
        "MAX_POLLS": "3",
        "TRAINING_CODE_DIR": str(code_dir),
    }.items():
        monkeypatch.setenv(name, value)
    return code_dir


@pytest.fixture
def settings(pipeline_env: Path) -> Settings:
    return load_settings()


@pytest.fixture
def dataset() -> Dataset:
    return Dataset.model_validate(load_event("start_tuning_validated_dataset")["dataset"])


@pytest.fixture
def aws() -> Iterator[None]:
    """A moto account with the bucket and the staged pretrained weights (a stand-in body: the handlers only look for
    the object), plus the SageMaker actions moto 5.2.5 lacks."""
    with mock_aws(), SageMakerMissingActions():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key=WEIGHTS_KEY, Body=b"staged weights")
        yield


@pytest.fixture
def sagemaker_backend(aws: None) -> Any:
    """moto's SageMaker state, for setting what moto never fills in (rule statuses, trial summaries)."""
    return sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION]


@pytest.fixture
def stubbed() -> Iterator[tuple[SageMakerGateway, Stubber]]:
    """A gateway over a stubbed client: every call must be scripted, with its exact parameters."""
    client = boto3.client("sagemaker", region_name=REGION)
    with Stubber(client) as stubber:
        yield SageMakerGateway(client), stubber
        stubber.assert_no_pending_responses()
