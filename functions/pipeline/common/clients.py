"""Cached boto3 clients sharing one botocore Config (standard retries); reset between tests."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, user_agent_extra="dog-breed-retraining")


@cache
def get_client(service: str) -> Any:
    return boto3.client(service, config=_CONFIG)  # type: ignore[call-overload]


def reset_clients() -> None:
    get_client.cache_clear()
