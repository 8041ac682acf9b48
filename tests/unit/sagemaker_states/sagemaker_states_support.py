"""Names and values the SageMaker state tests share (a module of its own: ``conftest`` is not importable by
name once several test folders have one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID

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
