"""Builders for moto resources used by the offline stand-in tests (Lambda functions, state machines)."""

from __future__ import annotations

import io
import json
import tarfile
import time
import zipfile
from typing import Any

import boto3

REGION = "us-east-1"


def lambda_role_arn() -> str:
    iam = boto3.client("iam", region_name=REGION)
    try:
        return iam.get_role(RoleName="fn-role")["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "*"}]}
        return iam.create_role(RoleName="fn-role", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]


def create_function(name: str, handler: str, environment: dict[str, str] | None = None, timeout: int = 30) -> str:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("placeholder.py", "")
    response = boto3.client("lambda", region_name=REGION).create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=lambda_role_arn(),
        Handler=handler,
        Code={"ZipFile": archive.getvalue()},
        Environment={"Variables": environment or {}},
        Timeout=timeout,
    )
    return str(response["FunctionArn"])


def create_state_machine(definition: dict[str, Any], name: str = "machine") -> str:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    return sfn.create_state_machine(
        name=name, definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/sfn"
    )["stateMachineArn"]


def finished_execution(execution_arn: str, deadline_seconds: float = 30) -> dict[str, Any]:
    """Poll until the execution leaves RUNNING (moto runs it in a thread); the deadline only guards a hang."""
    sfn = boto3.client("stepfunctions", region_name=REGION)
    give_up = time.monotonic() + deadline_seconds
    while time.monotonic() < give_up:
        description = sfn.describe_execution(executionArn=execution_arn)
        if description["status"] != "RUNNING":
            return description
        time.sleep(0.02)
    raise AssertionError(f"execution {execution_arn} still RUNNING after {deadline_seconds} s")


def tarball(files: dict[str, str]) -> bytes:
    """A gzipped tar holding the given text files at its root (a sourcedir.tar.gz or a model.tar.gz)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def read_tarball(data: bytes) -> dict[str, str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {
            member.name: tar.extractfile(member).read().decode()  # type: ignore[union-attr]
            for member in tar.getmembers()
            if member.isfile()
        }
