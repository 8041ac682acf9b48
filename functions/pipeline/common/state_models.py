"""The parts of the state that the SageMaker states read, parsed from the Step Functions input.

Each model ignores keys it does not need, so a state can grow without breaking the next one.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _StatePart(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Dataset(_StatePart):
    """ValidateDataset's output ($.dataset)."""

    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None
    dataset_id: str
    run_id: str
    validated_uri: str
    class_count: int | None = None
    counts: dict[str, int] = Field(default_factory=dict)


class PollStatus(_StatePart):
    """The previous status written by a poll handler; only the count matters to the next poll."""

    polls: int = 0


class Tuning(_StatePart):
    """StartTuning's output ($.tuning), with the last poll's result once there is one."""

    job_name: str
    code_uri: str
    status: PollStatus | None = None


class Objective(_StatePart):
    name: str
    value: float


class BestJob(_StatePart):
    """PickBestJob's output ($.best)."""

    training_job_name: str
    objective: Objective
    hyperparameters: dict[str, Any]


class Champion(_StatePart):
    """The serving model StartTraining gave the final job to score (pipeline.common.champion)."""

    endpoint_config: str
    model_package_arn: str | None = None
    model_data_url: str | None = None
    problem: str | None = None


class Training(_StatePart):
    """StartTraining's output ($.training)."""

    job_name: str
    rules: list[str] = Field(default_factory=list)
    output_uri: str
    status: PollStatus | None = None
    champion: Champion | None = None


class Deployment(_StatePart):
    """DeployEndpoint's output ($.deployment)."""

    endpoint: str
    endpoint_config: str
    model: str
    action: str
    previous_endpoint_config: str | None = None
    deployment_config: dict[str, Any] = Field(default_factory=dict)
    status: PollStatus | None = None


def next_poll(previous: PollStatus | None) -> int:
    return (previous.polls if previous else 0) + 1


class Gate(_StatePart):
    """EvaluateModel's output ($.gate)."""

    passed: bool
    reason: str
    challenger_accuracy: float
    champion_accuracy: float | None = None  # on the same test images as the challenger's (paired)
    comparison: str | None = None  # "paired", "no champion" or "champion unscored"
    paired: dict[str, Any] | None = None  # pipeline.common.champion_gate.Paired.as_state()
    model_package_arn: str
