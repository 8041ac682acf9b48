"""What the local executor reports while jobs run, for a progress display."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

EPOCH_PATTERN = re.compile(r"\bepoch[=: ]\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a job or endpoint.

    ``kind`` is ``status`` (a job or endpoint changed status), ``metrics`` (a log line carried metric values),
    ``trial`` (a tuning trial starts), ``rule`` (a rule evaluation changed status) or ``note`` (something a person
    should know, such as what the local stand-in does differently from SageMaker).
    """

    kind: str
    resource: str
    message: str
    status: str | None = None
    tuning_job: str | None = None
    trial: int | None = None
    trials: int | None = None
    epoch: int | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)


ProgressCallback = Callable[[ProgressEvent], None]
LogCallback = Callable[[str, str], None]


def epoch_in(line: str) -> int | None:
    match = EPOCH_PATTERN.search(line)
    return int(match.group(1)) if match else None
