"""Fixtures for the real ASL on moto's Step Functions engine, with the real handlers and a local SageMaker.

How the handlers find the fake training code: StartTuning and StartTraining bundle ``Settings.training_code_dir``,
read from ``TRAINING_CODE_DIR``. template.yaml does not set that variable (on AWS the default, the
``training_code/`` folder beside the package in the Lambda bundle, is right), and the in-process Lambda lays only
the function's own environment over the process environment. So ``monkeypatch.setenv("TRAINING_CODE_DIR", ...)``
reaches the real handlers while every variable the template sets keeps the template's value. ``lambda_overrides``
would have replaced the code under test, and editing the created functions' environment would have been a second
copy of the template.

Timers: ``offline_aws_patches(fast_timers=True)`` makes Retry back-offs instant; ``ShortWaits`` then gives every
Wait state a tenth of a second, so that a poll loop neither spins while a subprocess job starts nor costs minutes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from state_machine_harness import (
    CLASSES,
    COUNTS,
    DEADLINE_SECONDS,
    REGION,
    TEMPLATE_PARAMETERS,
    FakeTrainingCode,
    Pipeline,
    RuleVerdicts,
    ShortWaits,
)

from offline.local_sagemaker import LocalSageMaker, ProgressEvent
from offline.moto_shims import EventBridgeRouter, InProcessLambda, offline_aws_patches
from offline.stack import Template, deploy_to_moto
from offline.synthetic_dataset import write_dataset_zip


@pytest.fixture(scope="session")
def dataset_zip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A valid dataset for TEMPLATE_PARAMETERS: three classes, 6/3/3 images."""
    path = tmp_path_factory.mktemp("datasets") / "dogImages.zip"
    return write_dataset_zip(path, num_classes=CLASSES, counts=COUNTS, image_size=8).read_bytes()


@pytest.fixture(scope="session")
def two_class_zip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A well-formed dataset zip with one breed too few in every split."""
    path = tmp_path_factory.mktemp("datasets") / "twoBreeds.zip"
    return write_dataset_zip(path, num_classes=CLASSES - 1, counts=COUNTS, image_size=8).read_bytes()


@pytest.fixture
def training_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTrainingCode:
    code = FakeTrainingCode(tmp_path / "training_code").write()
    monkeypatch.setenv("TRAINING_CODE_DIR", str(code.folder))
    return code


@pytest.fixture
def rule_verdicts() -> RuleVerdicts:
    return RuleVerdicts()


@pytest.fixture
def template_parameters(request: pytest.FixtureRequest) -> dict[str, str]:
    """Template parameter overrides; a test changes them with ``@pytest.mark.parametrize(..., indirect=True)``."""
    return dict(getattr(request, "param", TEMPLATE_PARAMETERS))


@pytest.fixture
def weights_staged() -> bool:
    """Whether the pinned pretrained weights are in the bucket, as `make stage-weights` leaves them (a test module
    overrides this fixture to run a fresh deployment without them)."""
    return True


@pytest.fixture
def pipeline(
    tmp_path: Path,
    training_code: FakeTrainingCode,
    rule_verdicts: RuleVerdicts,
    template_parameters: dict[str, str],
    weights_staged: bool,
) -> Iterator[Pipeline]:
    """template.yaml deployed into moto, executing state machines, with SageMaker run by a LocalSageMaker; the
    pretrained weights staged (a stand-in body: the fake training code does not load them)."""
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        template = Template(parameters=template_parameters, region=REGION)
        patches = offline_aws_patches(fast_timers=True, include_sagemaker_actions=False)
        lambdas, router = patches.patches[0], patches.patches[1]
        assert isinstance(lambdas, InProcessLambda)
        assert isinstance(router, EventBridgeRouter)
        progress: list[ProgressEvent] = []
        # The fake training code imports nothing heavy: fresh interpreters start it faster than a warm one starts.
        executor = LocalSageMaker(
            tmp_path / "sagemaker",
            rule_evaluator=rule_verdicts,
            training_code_dir=None,
            progress=progress.append,
            warm_interpreter=False,
        )
        with patches, ShortWaits(), executor:
            stack = deploy_to_moto(template)
            if weights_staged:
                key = template.parameters["PretrainedWeightsKey"]
                boto3.client("s3", region_name=REGION).put_object(Bucket=stack.bucket, Key=key, Body=b"weights")
            yield Pipeline(stack, executor, training_code, rule_verdicts, lambdas, router, progress)
            _wait_for_executions(stack.state_machine_arn)
        assert executor.errors == []


def _wait_for_executions(state_machine_arn: str) -> None:
    # Executions run in daemon threads: none may still be calling handlers when the patches come off.
    sfn = boto3.client("stepfunctions", region_name=REGION)
    give_up = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < give_up and any(
        e["status"] == "RUNNING" for e in sfn.list_executions(stateMachineArn=state_machine_arn)["executions"]
    ):
        time.sleep(0.05)
