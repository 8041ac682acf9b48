"""The bound on every Wait → status → Choice loop."""

from __future__ import annotations

from pipeline.common.errors import PollLimitExceeded


def poll_limit_error(what: str, max_polls: int, what_was_done: str) -> PollLimitExceeded:
    return PollLimitExceeded(
        f"{what} was still running after {max_polls} status polls; {what_was_done} Raise MAX_POLLS or the poll "
        "interval if jobs of this size legitimately take longer."
    )
