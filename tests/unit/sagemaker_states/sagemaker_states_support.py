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
EVENTS = Path(__file__).resolve().parents[2] / "events"


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return event
