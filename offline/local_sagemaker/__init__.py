"""A local SageMaker for the offline run: training and tuning jobs as subprocesses under the container contract,
Debugger rules evaluated after training, endpoints served from local processes with blue/green updates."""

from offline.local_sagemaker.endpoints import InvocationResult
from offline.local_sagemaker.executor import EndpointInvocationError, LocalSageMaker
from offline.local_sagemaker.progress import LogCallback, ProgressCallback, ProgressEvent
from offline.local_sagemaker.training import PROFILER_REPORT_NOTE, RuleEvaluator
from offline.local_sagemaker.tuning import sample_hyperparameters

__all__ = [
    "PROFILER_REPORT_NOTE",
    "EndpointInvocationError",
    "InvocationResult",
    "LocalSageMaker",
    "LogCallback",
    "ProgressCallback",
    "ProgressEvent",
    "RuleEvaluator",
    "sample_hyperparameters",
]
