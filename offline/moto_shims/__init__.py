"""Pinned, tested patches that make moto 5.2.5 behave like AWS where the offline run needs it.

Each patch is a ``MotoPatch``: ``install()``/``uninstall()`` or a context manager, refusing to install on any
moto but 5.2.5 (``MotoVersionMismatch``). ``offline_aws_patches()`` bundles them for the offline run.
"""

from __future__ import annotations

from collections.abc import Mapping

from offline.moto_shims._base import (
    PINNED_MOTO_VERSION,
    MotoPatch,
    MotoVersionMismatch,
    PatchSet,
    require_pinned_moto,
)
from offline.moto_shims.events import Delivery, EventBridgeRouter, fire_schedule, target_payload
from offline.moto_shims.lambda_inprocess import Handler, InProcessLambda, Invocation, LocalLambdaContext
from offline.moto_shims.sagemaker import (
    ImmediateLifecycle,
    ModelPackageEvents,
    SageMakerLifecycle,
    SageMakerMissingActions,
    select_training_job_summaries,
)
from offline.moto_shims.service_models import SharedServiceModels
from offline.moto_shims.stepfunctions import (
    ExecutionNameFix,
    FastStepFunctionsTimers,
    ParsedDefinitions,
    ReusedTaskClients,
)

__all__ = [
    "PINNED_MOTO_VERSION",
    "Delivery",
    "EventBridgeRouter",
    "ExecutionNameFix",
    "FastStepFunctionsTimers",
    "Handler",
    "ImmediateLifecycle",
    "InProcessLambda",
    "Invocation",
    "LocalLambdaContext",
    "ModelPackageEvents",
    "MotoPatch",
    "MotoVersionMismatch",
    "ParsedDefinitions",
    "PatchSet",
    "ReusedTaskClients",
    "SageMakerLifecycle",
    "SageMakerMissingActions",
    "SharedServiceModels",
    "fire_schedule",
    "offline_aws_patches",
    "require_pinned_moto",
    "select_training_job_summaries",
    "target_payload",
]


def offline_aws_patches(
    *,
    fast_timers: bool = True,
    lambda_overrides: Mapping[str, Handler] | None = None,
    include_sagemaker_actions: bool = True,
) -> PatchSet:
    """The patches for an offline run, not yet installed.

    Leave ``include_sagemaker_actions`` off when an ``offline.local_sagemaker.LocalSageMaker`` is installed: it
    brings the same actions with real lifecycles.
    """
    patches: list[MotoPatch] = [
        InProcessLambda(lambda_overrides),
        EventBridgeRouter(),
        ExecutionNameFix(),
        ReusedTaskClients(),
        ParsedDefinitions(),
        ModelPackageEvents(),
        SharedServiceModels(),
    ]
    if fast_timers:
        patches.append(FastStepFunctionsTimers())
    if include_sagemaker_actions:
        patches.append(SageMakerMissingActions())
    return PatchSet(*patches)
