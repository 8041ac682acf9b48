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

from offline.local_sagemaker.endpoints import InvocationResult
from offline.local_sagemaker.executor import EndpointInvocationError, LocalSageMaker
from offline.local_sagemaker.progress import LogCallback, ProgressCallback, ProgressEvent
from offline.local_sagemaker.training import RuleEvaluator
from offline.local_sagemaker.tuning import sample_hyperparameters

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
