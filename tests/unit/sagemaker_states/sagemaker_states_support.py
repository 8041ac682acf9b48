"""Names and values the SageMaker state tests share (a module of its own: ``conftest`` is not importable by
name once several test folders have one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
from botocore.validate import validate_parameters
from moto.core import DEFAULT_ACCOUNT_ID
from sagemaker.pytorch import PyTorch
from sagemaker.session import Session

from pipeline.common.config import Settings
from pipeline.common.request_validation import operation_model, request_problems
from pipeline.common.state_models import BestJob

REGION = "us-east-1"
BUCKET = "dog-data"
ROLE_ARN = f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/retraining-sagemaker"
TRAINING_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.3-gpu-py311"
INFERENCE_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3-cpu-py311"
RULE_IMAGE = "503895931360.dkr.ecr.us-east-1.amazonaws.com/sagemaker-debugger-rules:latest"
# The template's default PretrainedWeightsKey: torchvision's ImageNet ResNet18 file, staged once in the bucket.
WEIGHTS_KEY = "weights/resnet18-f37072fd.pth"
# The pretrained channel every trial and the training job get (the weights hyperparameter defaults to pretrained).
PRETRAINED_CHANNEL_ON_THE_WIRE = {
    "ChannelName": "pretrained",
    "DataSource": {
        "S3DataSource": {
            "S3DataType": "S3Prefix",
            "S3Uri": f"s3://{BUCKET}/{WEIGHTS_KEY}",
            "S3DataDistributionType": "FullyReplicated",
        }
    },
    "ContentType": "application/octet-stream",
}
EVENTS = Path(__file__).resolve().parents[2] / "events"
# The inference container's environment every model and model package must carry, as the requests pin it.
INFERENCE_ENVIRONMENT = {
    "SAGEMAKER_PROGRAM": "inference.py",
    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
    "SAGEMAKER_REGION": "us-east-1",
    "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
    "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
    "INFERENCE_PRECISION": "auto",
}
# The training and tuning jobs' MetricDefinitions, as the requests pin them.
METRIC_DEFINITIONS_ON_THE_WIRE = [
    {"Name": "train:loss", "Regex": r"\btrain_loss=([0-9.eE+-]+)"},
    {"Name": "validation:loss", "Regex": r"\bvalid_loss=([0-9.eE+-]+)"},
    {"Name": "validation:accuracy", "Regex": r"\bvalid_accuracy=([0-9.eE+-]+)"},
    {"Name": "train:images_per_second", "Regex": r"\bimages_per_second=([0-9.eE+-]+)"},
    {"Name": "test:accuracy", "Regex": r"\btest_accuracy=([0-9.eE+-]+)"},
    {"Name": "test:int8_accuracy", "Regex": r"\bint8_test_accuracy=([0-9.eE+-]+)"},
    {"Name": "test:served_accuracy", "Regex": r"\bserved_test_accuracy=([0-9.eE+-]+)"},
    {"Name": "test:champion_accuracy", "Regex": r"\bchampion_test_accuracy=([0-9.eE+-]+)"},
    {"Name": "test:paired_difference", "Regex": r"\bpaired_difference=([0-9.eE+-]+)"},
]


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return event


# The final job's inputs in the request tests: the uploaded training code and the tuning job's best trial.
CODE_URI = "s3://dog-data/code/aa6136478d95bdb1/sourcedir.tar.gz"
BEST = BestJob.model_validate(
    {
        "training_job_name": "hpo-251125-015343-3f9a1c-003-1a2b3c4d",
        "objective": {"name": "validation:accuracy", "value": 0.81},
        "hyperparameters": {"batch_size": 64, "learning_rate": 0.0123},
    }
)


def sdk_estimator(
    settings: Settings,
    program: str,
    hyperparameters: dict[str, Any],
    *,
    instance_type: str = "ml.g4dn.xlarge",
    instance_count: int = 1,
    **extra: Any,
) -> PyTorch:
    """The SageMaker Python SDK's estimator for the same job, whose requests ours are compared with."""
    session = Session(
        boto_session=boto3.Session(region_name="us-east-1"),
        sagemaker_client=mock.MagicMock(),
        default_bucket="dog-data",
    )
    return PyTorch(
        entry_point=program,
        source_dir=CODE_URI,
        image_uri=TRAINING_IMAGE,
        role=settings.sagemaker_role_arn,
        instance_type=instance_type,
        instance_count=instance_count,
        hyperparameters=hyperparameters,
        sagemaker_session=session,
        output_path="s3://dog-data/jobs/251125-015343-3f9a1c/",
        **extra,
    )


def assert_valid(operation: str, request: dict[str, Any], *, known_type: bool = True) -> None:
    """The request passes botocore's service model and our enum checks (the latter only for an instance type
    SageMaker knows: the API's enum refuses a made-up one)."""
    validate_parameters(request, operation_model("sagemaker", operation).input_shape)
    if known_type:
        assert request_problems("sagemaker", operation, request) == []
