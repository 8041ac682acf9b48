"""Which earlier tuning job a new one may warm-start from (``TransferLearning``), or why none.

The parent is the newest Completed tuning job of this pipeline (the ``hpo-`` names of ``names.tuning_job_name``).
SageMaker refuses a warm start whose parent differs in the objective metric, in the set of hyperparameter names
(static plus tuned) or in any hyperparameter's type, so the request is compared with the parent's description
first: an incompatible parent means a cold start with the reason on the state, never a failed run. Only the newest
one is considered: an older job would carry knowledge about an older search, and the reason is more useful than a
silent reach further back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.common.sagemaker_gateway import SageMakerGateway

TUNING_JOB_PREFIX = "hpo-"
RANGE_KINDS = ("CategoricalParameterRanges", "ContinuousParameterRanges", "IntegerParameterRanges")
CANDIDATES = 10


@dataclass(frozen=True)
class WarmStartChoice:
    parent: str | None
    skipped: str | None


def _range_kinds(config: dict[str, Any]) -> dict[str, str]:
    ranges = config.get("ParameterRanges") or {}
    return {item["Name"]: kind for kind in RANGE_KINDS for item in ranges.get(kind) or []}


def incompatibility(request: dict[str, Any], parent: dict[str, Any]) -> str | None:
    """Why ``parent`` (a DescribeHyperParameterTuningJob answer) cannot warm-start ``request``; None if it can."""
    name = parent["HyperParameterTuningJobName"]
    if parent.get("HyperParameterTuningJobStatus") not in ("Completed", "Stopped"):
        return f"{name} is {parent.get('HyperParameterTuningJobStatus')}, not terminal"
    ours_config, theirs_config = request["HyperParameterTuningJobConfig"], parent["HyperParameterTuningJobConfig"]
    ours_objective = ours_config["HyperParameterTuningJobObjective"]
    theirs_objective = theirs_config.get("HyperParameterTuningJobObjective") or {}
    if (ours_objective["MetricName"], ours_objective["Type"]) != (
        theirs_objective.get("MetricName"),
        theirs_objective.get("Type"),
    ):
        return (
            f"{name} tuned {theirs_objective.get('Type')} {theirs_objective.get('MetricName')}, this job "
            f"{ours_objective['Type']} {ours_objective['MetricName']}"
        )
    ours_ranges, theirs_ranges = _range_kinds(ours_config), _range_kinds(theirs_config)
    if ours_ranges != theirs_ranges:
        return f"{name} tuned {sorted(theirs_ranges.items())}, this job tunes {sorted(ours_ranges.items())}"
    ours_static = set(request["TrainingJobDefinition"].get("StaticHyperParameters") or {})
    theirs_static = set((parent.get("TrainingJobDefinition") or {}).get("StaticHyperParameters") or {})
    if ours_static != theirs_static:
        added, removed = sorted(ours_static - theirs_static), sorted(theirs_static - ours_static)
        return f"static hyperparameters differ from {name}'s (added {added}, removed {removed})"
    return None


def newest_completed(sagemaker: SageMakerGateway, exclude: str) -> str | None:
    page = sagemaker.call(
        "list_hyper_parameter_tuning_jobs",
        NameContains=TUNING_JOB_PREFIX,
        StatusEquals="Completed",
        SortBy="CreationTime",
        SortOrder="Descending",
        MaxResults=CANDIDATES,
    )
    summaries = sorted(page.get("HyperParameterTuningJobSummaries", []), key=lambda s: s["CreationTime"], reverse=True)
    for summary in summaries:
        name = str(summary["HyperParameterTuningJobName"])
        if (
            name.startswith(TUNING_JOB_PREFIX)
            and name != exclude
            and summary["HyperParameterTuningJobStatus"] == "Completed"
        ):
            return name
    return None


def choose_parent(sagemaker: SageMakerGateway, request: dict[str, Any]) -> WarmStartChoice:
    job_name = request["HyperParameterTuningJobName"]
    parent = newest_completed(sagemaker, exclude=job_name)
    if parent is None:
        return WarmStartChoice(None, "no completed tuning job of this pipeline yet (first run): cold start")
    described = sagemaker.call("describe_hyper_parameter_tuning_job", HyperParameterTuningJobName=parent)
    problem = incompatibility(request, described)
    if problem is not None:
        return WarmStartChoice(None, f"newest completed tuning job {parent} is not compatible: {problem}; cold start")
    return WarmStartChoice(parent, None)
