"""A local SageMaker for the offline run: training and tuning jobs as subprocesses under the container contract,
Debugger rules evaluated after training, endpoints served from local processes with blue/green updates.

Typical use, inside moto::

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        with offline_aws_patches(include_sagemaker_actions=False), LocalSageMaker(work_dir, progress=show) as sm:
            ...  # boto3 calls, state machine executions
            sm.wait_idle()
            answer = sm.invoke_endpoint("dog-breed-classifier", jpeg_bytes, "image/jpeg")

``offline_aws_patches`` comes from ``offline.moto_shims``; ``LocalSageMaker`` brings the SageMaker actions moto
lacks itself, with real lifecycles.
"""

from __future__ import annotations

import importlib
from typing import Any

# Each name is imported from its module on first use, not with the package: the training tests on the container's
# package versions (no moto, no boto3) import warm_interpreter, and the executor's modules import moto.
_MODULE_OF = {
    "EndpointInvocationError": "executor",
    "InvocationResult": "endpoints",
    "LocalSageMaker": "executor",
    "LogCallback": "progress",
    "ProgressCallback": "progress",
    "ProgressEvent": "progress",
    "RuleEvaluator": "training",
    "sample_hyperparameters": "tuning",
}

__all__ = [
    "EndpointInvocationError",
    "InvocationResult",
    "LocalSageMaker",
    "LogCallback",
    "ProgressCallback",
    "ProgressEvent",
    "RuleEvaluator",
    "sample_hyperparameters",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
