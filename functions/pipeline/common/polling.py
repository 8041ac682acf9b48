"""The bound on every Wait → status → Choice loop."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from pipeline.common.errors import PollLimitExceeded
from pipeline.common.observability import logger
from pipeline.common.sagemaker_gateway import SageMakerGateway


def poll_limit_error(what: str, max_polls: int, what_was_done: str) -> PollLimitExceeded:
    return PollLimitExceeded(
        f"{what} was still running after {max_polls} status polls; {what_was_done} Raise MAX_POLLS or the poll "
        "interval if jobs of this size legitimately take longer."
    )


def stop_job(sagemaker: SageMakerGateway, action: str, **request: Any) -> str:
    """Ask SageMaker to stop a job that outlived the poll bound; says what happened, for the error message."""
    try:
        sagemaker.call(action, **request)
    except ClientError as error:
        logger.warning("could not stop the job", extra={"action": action, **request, "error": str(error)})
        return f"stopping it failed ({error.response['Error'].get('Code')}), stop it by hand."
    return "it was asked to stop."
