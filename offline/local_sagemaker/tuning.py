"""A hyperparameter tuning job run locally: trials one after another, ranges sampled at random.

Differences from SageMaker, reported as notes when the job starts: the strategy (Bayesian, Hyperband...) is
replaced by seeded random sampling; trials run one at a time whatever ``MaxParallelTrainingJobs`` says; early
stopping and warm start are not applied. Everything the pipeline reads is real: each trial is a training job
(``<tuning job>-NNN-xxxxxxxx``) with the static plus sampled hyperparameters, the summaries that
ListTrainingJobsForHyperParameterTuningJob returns, the status counters and ``BestTrainingJob``.
"""

from __future__ import annotations

import copy
import math
import random
import threading
from collections.abc import Callable, Mapping
from typing import Any

from moto.core.utils import utcnow
from moto.sagemaker.models import HyperParameterTuningJob, SageMakerModelBackend

from offline.local_sagemaker.container import decode_hyperparameters
from offline.local_sagemaker.progress import ProgressEvent
from offline.local_sagemaker.training import JobServices, TrainingRun


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def sample_hyperparameters(ranges: Mapping[str, Any], rng: random.Random) -> dict[str, str]:
    """One random point of the ParameterRanges, formatted as SageMaker passes tuned values (strings)."""
    sampled: dict[str, str] = {}
    for parameter in ranges.get("CategoricalParameterRanges") or []:
        sampled[parameter["Name"]] = rng.choice(list(parameter["Values"]))
    for parameter in ranges.get("IntegerParameterRanges") or []:
        low, high = int(parameter["MinValue"]), int(parameter["MaxValue"])
        if parameter.get("ScalingType") == "Logarithmic":
            value = round(_log_uniform(rng, low, high))
        else:
            value = rng.randint(low, high)
        sampled[parameter["Name"]] = str(min(max(value, low), high))
    for parameter in ranges.get("ContinuousParameterRanges") or []:
        low, high = float(parameter["MinValue"]), float(parameter["MaxValue"])
        scaling = parameter.get("ScalingType")
        if scaling == "Logarithmic":
            number = _log_uniform(rng, low, high)
        elif scaling == "ReverseLogarithmic":
            number = 1.0 - _log_uniform(rng, 1.0 - high, 1.0 - low)
        else:
            number = rng.uniform(low, high)
        sampled[parameter["Name"]] = repr(min(max(number, low), high))
    return sampled


def _trial_request(definition: Mapping[str, Any], name: str, hyperparameters: dict[str, str]) -> dict[str, Any]:
    request = {
        "TrainingJobName": name,
        "HyperParameters": hyperparameters,
        "AlgorithmSpecification": copy.deepcopy(definition["AlgorithmSpecification"]),
        "RoleArn": definition.get("RoleArn"),
        "InputDataConfig": copy.deepcopy(definition.get("InputDataConfig") or []),
        "OutputDataConfig": copy.deepcopy(definition["OutputDataConfig"]),
        "ResourceConfig": copy.deepcopy(definition.get("ResourceConfig") or {}),
        "StoppingCondition": copy.deepcopy(definition.get("StoppingCondition") or {}),
    }
    for optional in (
        "CheckpointConfig",
        "Environment",
        "VpcConfig",
        "EnableManagedSpotTraining",
        "EnableNetworkIsolation",
        "EnableInterContainerTrafficEncryption",
    ):
        if optional in definition:
            request[optional] = copy.deepcopy(definition[optional])
    if request.get("CheckpointConfig", {}).get("S3Uri"):
        # Each trial checkpoints under its own name: a trial must never resume another trial's weights.
        request["CheckpointConfig"]["S3Uri"] = request["CheckpointConfig"]["S3Uri"].rstrip("/") + f"/{name}"
    return request


def _objective_value(run: TrainingRun, metric_name: str) -> float | None:
    for metric in run.job.final_metric_data_list or []:
        if metric["MetricName"] == metric_name:
            return float(metric["Value"])
    return None


class TuningRun:
    """Runs the trials of one tuning job and keeps moto's ``HyperParameterTuningJob`` up to date."""

    def __init__(
        self,
        backend: SageMakerModelBackend,
        tuning_job: HyperParameterTuningJob,
        request: Mapping[str, Any],
        services: JobServices,
        *,
        seed: int,
        start_trial: Callable[[SageMakerModelBackend, dict[str, Any], dict[str, Any]], TrainingRun],
    ) -> None:
        self.backend = backend
        self.tuning_job = tuning_job
        self.request = copy.deepcopy(dict(request))
        self.services = services
        self.rng = random.Random(f"{seed}:{tuning_job.hyper_parameter_tuning_job_name}")
        self._start_trial = start_trial
        self._stop_requested = threading.Event()
        self._current: TrainingRun | None = None
        self.summaries: list[dict[str, Any]] = []
        config = self.request["HyperParameterTuningJobConfig"]
        self.objective = config.get("HyperParameterTuningJobObjective") or {}
        self.max_trials = int(config["ResourceLimits"]["MaxNumberOfTrainingJobs"])

    @property
    def name(self) -> str:
        return str(self.tuning_job.hyper_parameter_tuning_job_name)

    def _note(self, message: str) -> None:
        self.services.log(self.name, message)
        self.services.report(ProgressEvent("note", self.name, message, tuning_job=self.name, trials=self.max_trials))

    def accept(self) -> None:
        job = self.tuning_job
        job.hyper_parameter_tuning_job_status = "InProgress"
        job.hyper_parameter_tuning_end_time = None
        job.best_training_job = None
        job.OverallBestTrainingJob = None
        job.failure_reason = None
        job.tuning_job_completion_details = None
        job.consumed_resources = {"RuntimeInSeconds": 0}
        job.training_job_summaries = []
        self._publish()

    def stop(self) -> None:
        self._stop_requested.set()
        if self._current is not None:
            self._current.stop()

    def run(self) -> None:
        try:
            self._run_trials()
        except Exception as error:  # never leave the tuning job InProgress for a poll loop to wait on forever
            self._finish("Failed", f"InternalServerError: local tuner: {type(error).__name__}: {error}"[:1024])
            raise

    def _run_trials(self) -> None:
        config = self.request["HyperParameterTuningJobConfig"]
        definition = self.request.get("TrainingJobDefinition")
        if definition is None:
            self._finish("Failed", "The local tuner supports one TrainingJobDefinition, not TrainingJobDefinitions.")
            return
        parallel = config["ResourceLimits"].get("MaxParallelTrainingJobs", 1)
        self._note(
            f"Local tuner: samples the ranges at random (seeded) instead of the {config.get('Strategy', 'Bayesian')} "
            f"strategy, and runs the {self.max_trials} trials one at a time (MaxParallelTrainingJobs={parallel} "
            "is serialised on this machine)."
        )
        if config.get("TrainingJobEarlyStoppingType", "Off") != "Off" or self.request.get("WarmStartConfig"):
            self._note("Local tuner: early stopping and warm start are not applied.")
        static = dict(definition.get("StaticHyperParameters") or {})
        ranges = config.get("ParameterRanges") or {}
        started = utcnow()
        for trial in range(1, self.max_trials + 1):
            if self._stop_requested.is_set():
                break
            tuned = sample_hyperparameters(ranges, self.rng)
            name = f"{self.name}-{trial:03d}-{self.rng.getrandbits(32):08x}"
            self.services.report(
                ProgressEvent(
                    "trial",
                    name,
                    f"trial {trial} of {self.max_trials}: {decode_hyperparameters(tuned)}",
                    tuning_job=self.name,
                    trial=trial,
                    trials=self.max_trials,
                )
            )
            request = _trial_request(definition, name, {**static, **tuned})
            run = self._start_trial(
                self.backend, request, {"tuning_job": self.name, "trial": trial, "trials": self.max_trials}
            )
            self._current = run
            self.summaries.append(self._summary(run, tuned))
            self._publish()
            run.run()
            self.summaries[-1] = self._summary(run, tuned)
            self._current = None
            self.tuning_job.consumed_resources = {"RuntimeInSeconds": int((utcnow() - started).total_seconds())}
            self._publish()
        self._conclude()

    def _summary(self, run: TrainingRun, tuned: dict[str, str]) -> dict[str, Any]:
        job = run.job
        summary: dict[str, Any] = {
            "TrainingJobName": job.training_job_name,
            "TrainingJobArn": job.arn,
            "TuningJobName": self.name,
            "CreationTime": job.creation_time,
            "TrainingJobStatus": job.training_job_status,
            "TunedHyperParameters": dict(tuned),
        }
        if job.training_start_time:
            summary["TrainingStartTime"] = job.training_start_time
        if job.training_end_time:
            summary["TrainingEndTime"] = job.training_end_time
        if job.failure_reason:
            summary["FailureReason"] = job.failure_reason
        value = _objective_value(run, self.objective.get("MetricName", ""))
        if job.training_job_status == "InProgress":
            summary["ObjectiveStatus"] = "Pending"
        elif job.training_job_status == "Completed" and value is not None:
            summary["ObjectiveStatus"] = "Succeeded"
        else:
            summary["ObjectiveStatus"] = "Failed"
        if value is not None and job.training_job_status != "InProgress":
            summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "Type": self.objective.get("Type", "Maximize"),
                "MetricName": self.objective["MetricName"],
                "Value": value,
            }
        return summary

    def best(self) -> dict[str, Any] | None:
        scored = [
            s
            for s in self.summaries
            if s["ObjectiveStatus"] == "Succeeded" and "FinalHyperParameterTuningJobObjectiveMetric" in s
        ]
        if not scored:
            return None
        minimize = self.objective.get("Type") == "Minimize"
        key = lambda s: s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]  # noqa: E731
        return min(scored, key=key) if minimize else max(scored, key=key)

    def _publish(self) -> None:
        job = self.tuning_job
        statuses = [s["TrainingJobStatus"] for s in self.summaries]
        objectives = [s["ObjectiveStatus"] for s in self.summaries]
        job.training_job_status_counters = {
            "Completed": statuses.count("Completed"),
            "InProgress": statuses.count("InProgress"),
            "RetryableError": 0,
            "NonRetryableError": statuses.count("Failed"),
            "Stopped": statuses.count("Stopped"),
        }
        job.objective_status_counters = {
            "Succeeded": objectives.count("Succeeded"),
            "Pending": objectives.count("Pending"),
            "Failed": objectives.count("Failed"),
        }
        job.training_job_summaries = [dict(s) for s in self.summaries]
        best = self.best()
        job.best_training_job = best
        job.OverallBestTrainingJob = best
        job.last_modified_time = utcnow()

    def _conclude(self) -> None:
        if self._stop_requested.is_set():
            self._finish("Stopped", None)
        elif any(s["TrainingJobStatus"] == "Completed" for s in self.summaries):
            self._finish("Completed", None)
        else:
            reasons = [s.get("FailureReason", s["TrainingJobStatus"]) for s in self.summaries]
            first = reasons[0] if reasons else "no training job ran"
            self._finish("Failed", f"All training jobs failed. First failure: {first}"[:1024])

    def _finish(self, status: str, reason: str | None) -> None:
        self._publish()
        self.tuning_job.failure_reason = reason
        self.tuning_job.hyper_parameter_tuning_end_time = utcnow()
        self.tuning_job.hyper_parameter_tuning_job_status = status
        best = self.best()
        outcome = (
            f"best {best['TrainingJobName']} = {best['FinalHyperParameterTuningJobObjectiveMetric']['Value']}"
            if best
            else "no best job"
        )
        self.services.report(
            ProgressEvent(
                "status",
                self.name,
                f"{self.name}: {status} ({reason or outcome})",
                status=status,
                tuning_job=self.name,
                trials=self.max_trials,
            )
        )
