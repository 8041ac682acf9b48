"""Names of runs, jobs and resources, all derived from one run id.

SageMaker limits: tuning job names are at most 32 characters, training jobs, models and endpoint configs at
most 63, all matching ``^[a-zA-Z0-9](-*[a-zA-Z0-9])*``. A run id is ``yymmdd-HHMMSS-<dataset id prefix>``
(20 characters), so ``hpo-<run id>`` is 24.
"""

from __future__ import annotations

import re
from datetime import datetime

SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
TUNING_JOB_MAX = 32
RESOURCE_MAX = 63


def run_id(start_time: datetime, dataset_id: str) -> str:
    return f"{start_time:%y%m%d-%H%M%S}-{dataset_id[:6]}"


def _checked(name: str, limit: int) -> str:
    if len(name) > limit or not SAGEMAKER_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid SageMaker name (<= {limit} characters, {SAGEMAKER_NAME.pattern})")
    return name


def tuning_job_name(run: str) -> str:
    return _checked(f"hpo-{run}", TUNING_JOB_MAX)


def training_job_name(run: str) -> str:
    return _checked(f"train-{run}", RESOURCE_MAX)


def model_name(run: str) -> str:
    return _checked(f"dogs-{run}", RESOURCE_MAX)


def endpoint_config_name(run: str) -> str:
    return _checked(f"dogs-{run}", RESOURCE_MAX)
