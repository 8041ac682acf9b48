"""The run record: one JSON document per execution, built from the final state and the jobs' descriptions.

Pure functions over plain dicts (the state, DescribeTrainingJob / DescribeHyperParameterTuningJob responses), so
tests build records without AWS. ``record_run`` (the handler) fetches the descriptions and writes the document.

Cost estimate: every SageMaker training job (each tuning trial and the final job) costs
``billable seconds x instance count x price per instance-hour / 3600``. BillableTimeInSeconds is what SageMaker
bills (for managed spot it is smaller than TrainingTimeInSeconds; the difference priced at the on-demand rate is the
spot saving); without it the training time is used. Prices come from the InstancePrices parameter; a type without a
price leaves the total unknown and says which type to add. Endpoint hours are not in the run's cost (the endpoint
serves between runs); its hourly rate is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

SUCCEEDED, FAILED, REJECTED, ALREADY_TRAINED, QUEUED = "succeeded", "failed", "rejected", "already_trained", "queued"
APPROVAL_TIMED_OUT = "approval_timed_out"
# The outcomes after which the dataset counts as trained (see check_already_trained).
TRAINED_OUTCOMES = frozenset({SUCCEEDED, REJECTED})
TEST_ACCURACY_METRIC = "test:accuracy"


def outcome_of(state: dict[str, Any]) -> str:
    """The same order as the state machine's HowDidItEnd choice."""
    if "error" in state:
        return FAILED
    if isinstance(state.get("lease"), dict) and state["lease"].get("acquired") is False:
        return QUEUED
    if isinstance(state.get("dedupe"), dict) and state["dedupe"].get("train") is False:
        return ALREADY_TRAINED
    if "approval_timeout" in state:
        return APPROVAL_TIMED_OUT
    if isinstance(state.get("approval_decision"), dict) and state["approval_decision"].get("status") == "Rejected":
        return REJECTED
    if isinstance(state.get("gate"), dict) and state["gate"].get("passed") is False:
        return REJECTED
    return SUCCEEDED


def final_metrics(description: dict[str, Any] | None) -> dict[str, float]:
    if not description:
        return {}
    return {str(m["MetricName"]): float(m["Value"]) for m in description.get("FinalMetricDataList") or []}


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


@dataclass(frozen=True)
class JobCost:
    job: str
    instance_type: str
    instance_count: int
    training_seconds: float
    billable_seconds: float
    spot: bool
    price_per_hour: float | None

    @property
    def usd(self) -> float | None:
        if self.price_per_hour is None:
            return None
        return self.billable_seconds * self.instance_count * self.price_per_hour / 3600

    @property
    def on_demand_usd(self) -> float | None:
        if self.price_per_hour is None:
            return None
        return self.training_seconds * self.instance_count * self.price_per_hour / 3600

    def as_dict(self) -> dict[str, Any]:
        usd = self.usd
        return {
            "job": self.job,
            "instance_type": self.instance_type,
            "instance_count": self.instance_count,
            "training_seconds": self.training_seconds,
            "billable_seconds": self.billable_seconds,
            "spot": self.spot,
            "usd_per_instance_hour": self.price_per_hour,
            "usd": round(usd, 4) if usd is not None else None,
        }


def job_cost(description: dict[str, Any], prices: dict[str, float]) -> JobCost:
    resources = description.get("ResourceConfig") or {}
    instance_type = str(resources.get("InstanceType", "unknown"))
    training = description.get("TrainingTimeInSeconds")
    if training is None:
        training = _seconds(description.get("TrainingStartTime"), description.get("TrainingEndTime")) or 0
    billable = description.get("BillableTimeInSeconds")
    return JobCost(
        job=str(description.get("TrainingJobName")),
        instance_type=instance_type,
        instance_count=int(resources.get("InstanceCount", 1)),
        training_seconds=float(training),
        billable_seconds=float(billable if billable is not None else training),
        spot=bool(description.get("EnableManagedSpotTraining", False)),
        price_per_hour=prices.get(instance_type),
    )


def cost_estimate(
    jobs: list[dict[str, Any]], prices: dict[str, float], endpoint_type: str, endpoint_count: int
) -> dict[str, Any]:
    costs = [job_cost(job, prices) for job in jobs]
    unpriced = sorted({c.instance_type for c in costs if c.price_per_hour is None})
    total = None if unpriced else round(sum(c.usd or 0.0 for c in costs), 4)
    on_demand = None if unpriced else round(sum(c.on_demand_usd or 0.0 for c in costs), 4)
    endpoint_price = prices.get(endpoint_type)
    return {
        "total_usd": total,
        "on_demand_usd": on_demand,
        "spot_savings_usd": round(on_demand - total, 4) if total is not None and on_demand is not None else None,
        "jobs": [c.as_dict() for c in costs],
        "missing_prices": unpriced,
        "endpoint_usd_per_hour": round(endpoint_price * endpoint_count, 4) if endpoint_price is not None else None,
        "basis": "billable seconds x instance count x InstancePrices (USD per instance-hour)",
    }


def timings(
    execution_start: datetime,
    now: datetime,
    tuning: dict[str, Any] | None,
    training: dict[str, Any] | None,
) -> dict[str, Any]:
    """Durations of the run's phases, from the jobs' own times where the states carry none."""
    result: dict[str, Any] = {"total_seconds": _seconds(execution_start, now), "started_at": _iso(execution_start)}
    if tuning:
        created, ended = tuning.get("CreationTime"), tuning.get("HyperParameterTuningEndTime")
        result["before_tuning_seconds"] = _seconds(execution_start, created)
        result["tuning_seconds"] = _seconds(created, ended)
    if training:
        created, ended = training.get("CreationTime"), training.get("TrainingEndTime")
        rules = [
            status["LastModifiedTime"]
            for key in ("DebugRuleEvaluationStatuses", "ProfilerRuleEvaluationStatuses")
            for status in training.get(key) or []
            if status.get("LastModifiedTime")
        ]
        rules_done = max([ended, *rules]) if ended and rules else ended
        result["training_seconds"] = _seconds(created, ended)
        result["training_and_rules_seconds"] = _seconds(created, rules_done)
        result["after_training_seconds"] = _seconds(rules_done, now)  # gate, deployment, registry, this record
    return result


def _pick(part: Any, *keys: str) -> dict[str, Any] | None:
    if not isinstance(part, dict):
        return None
    return {key: part[key] for key in keys if key in part}


def build_record(
    state: dict[str, Any],
    execution_name: str,
    execution_id: str,
    execution_start: datetime,
    now: datetime,
    tuning_description: dict[str, Any] | None,
    training_description: dict[str, Any] | None,
    trial_descriptions: list[dict[str, Any]],
    prices: dict[str, float],
    endpoint: tuple[str, int],
) -> dict[str, Any]:
    outcome = outcome_of(state)
    trigger = {key: value for key, value in state.items() if key in ("source", "detail-type", "time", "trigger")}
    dataset = state.get("dataset") if isinstance(state.get("dataset"), dict) else None
    jobs = [*trial_descriptions, *([training_description] if training_description else [])]
    metrics = final_metrics(training_description)
    return {
        "execution": {"name": execution_name, "arn": execution_id},
        "outcome": outcome,
        "trigger": trigger or {"input": sorted(state)},
        "forced": state.get("force") is True,
        "lease": state.get("lease"),
        "dedupe": state.get("dedupe"),
        "dataset": _pick(
            dataset,
            "bucket",
            "key",
            "version_id",
            "etag",
            "size",
            "dataset_id",
            "run_id",
            "trigger",
            "validated_uri",
            "class_count",
            "counts",
            "ignored",
        ),
        "jobs": {
            "tuning": (state.get("tuning") or {}).get("job_name") if isinstance(state.get("tuning"), dict) else None,
            "trials": [d.get("TrainingJobName") for d in trial_descriptions],
            "best_trial": _pick(state.get("best"), "training_job_name", "objective"),
            "training": (state.get("training") or {}).get("job_name")
            if isinstance(state.get("training"), dict)
            else None,
        },
        "hyperparameters": (state.get("best") or {}).get("hyperparameters")
        if isinstance(state.get("best"), dict)
        else None,
        "rules": _pick(
            state.get("rules"), "passed", "rules", "details", "sagemaker_rules", "warnings", "reports_uri", "evidence"
        ),
        "metrics": metrics,
        "test_accuracy": metrics.get(TEST_ACCURACY_METRIC),
        "gate": state.get("gate"),
        "approval_decision": state.get("approval_decision"),
        "deployment": state.get("deployment"),
        "timings": timings(execution_start, now, tuning_description, training_description),
        "cost": cost_estimate(jobs, prices, *endpoint) if jobs else None,
        "error": state.get("error"),
        "recorded_at": now.isoformat(),
    }
