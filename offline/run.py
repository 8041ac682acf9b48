"""The offline run: the whole retraining pipeline on this machine, with no AWS account and no Docker.

The AWS side is created in-process with moto from template.yaml itself; the dataset zip is uploaded under
``incoming/`` and the execution starts through the template's EventBridge rule (``--schedule`` fires the schedule
instead). moto's Step Functions engine executes ``state_machine/retrain.asl.json``; its Lambda tasks run our real
handlers; SageMaker jobs run the real ``training_code`` as local subprocesses under the container contract, and the
endpoint is served locally from the model artifact with ``inference.py``.

    python -m offline.run                               # a generated sample dataset, small and quick
    python -m offline.run --dataset ~/dogImages.zip     # your own zip; the template's expected counts apply
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

from offline.initial_weights import CHOICES as WEIGHT_CHOICES
from offline.initial_weights import WEIGHTS_PREFIX, InitialWeights, StandInFile, choose_initial_weights

if TYPE_CHECKING:
    from offline.local_sagemaker.progress import ProgressEvent

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


# The generated sample's jobs last seconds, not minutes: with SageMaker's defaults (patience of 1,000 samples, about
# 8 minutes; LossNotDecreasing over 10 training steps at each end) most rules could only say NotEvaluated. For the
# sample only, the rules judge shorter spans; a dataset of your own keeps the defaults. The audit prints these.
SAMPLE_DEBUG_RULE_PARAMETERS = {"LossNotDecreasing_num_steps": 3}
SAMPLE_PROFILER_RULE_PARAMETERS = {
    "CPUBottleneck_patience": 20,
    "IOBottleneck_patience": 20,
    "LowGPUUtilization_patience": 20,
    "LowGPUUtilization_window": 20,
    "GPUMemoryIncrease_patience": 20,
    "BatchSize_patience": 20,
    "BatchSize_window": 20,
    "LoadBalancing_patience": 20,
    "StepOutlier_min_steps": 20,
    "Dataloader_patience": 5,
}


OFFLINE_MAX_POLLS = 1_000_000
STAND_IN_ACCURACY_FLOOR = "0"
# (tuning epochs, final epochs) when not given (RunOptions): on the production path, and from random init.
PRODUCTION_PATH_EPOCHS = (10, 20)
FROM_SCRATCH_EPOCHS = (3, 8)
# moto returns an execution's whole history on every GetExecutionHistory (no paging), so a call costs more the
# longer the run: reading it every 3 s keeps this process off the cores the training jobs need, while the cheap
# DescribeExecution, every 0.25 s, notices the end at once (the history is then read a last time).
HISTORY_POLL_SECONDS = 3.0
STATUS_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class RunOptions:
    """What one offline run does; the defaults finish in a few minutes on 2 CPU cores and visit every state."""

    dataset: Path | None = None
    classes: int = 4
    counts: tuple[int, int, int] = (160, 40, 40)
    expected_classes: int | None = None
    expected_counts: tuple[int, int, int] | None = None
    tuning_jobs: int = 3
    # None: what the path needs. On cached features an epoch of the head costs milliseconds, and the sample's 160
    # images make 1-5 steps an epoch at the tuner's batch sizes: 10 and 20 epochs give every trial enough steps.
    # From random init every epoch runs the whole network over the images: 3 and 8.
    tuning_epochs: int | None = None
    epochs: int | None = None
    image_size: int = 64
    # auto: ImageNet's ResNet18 if this machine has it, else the labelled stand-in (offline/initial_weights.py).
    weights: str = "auto"
    schedule: bool = False
    # A local job that prints nothing for this long is stopped as stuck; nothing else bounds a run that progresses.
    stall_timeout: float = 600.0
    # ApprovalMode manual (--parameter ApprovalMode=manual): approve the waiting model after this many seconds.
    approve_after: float | None = None
    output: Path = field(default_factory=lambda: REPO_ROOT / "runs" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S"))
    parameters: tuple[tuple[str, str], ...] = ()
    quiet: bool = False

    def extra_hyperparameters(self, *, sample: bool, weights: InitialWeights | None = None) -> dict[str, Any]:
        # A progress line (decoding, the feature pass) at most every 10 s, not the jobs' 30: the console shows them.
        extra: dict[str, Any] = {"image_size": self.image_size, "progress_interval_seconds": 10}
        if weights is not None:
            extra["weights"] = weights.hyperparameter
        if sample:
            extra["debug_rule_parameters"] = json.dumps(SAMPLE_DEBUG_RULE_PARAMETERS)
            extra["profiler_rule_parameters"] = json.dumps(SAMPLE_PROFILER_RULE_PARAMETERS)
        return extra

    def template_parameters(
        self, generated_counts: tuple[int, int, int] | None, weights: InitialWeights | None = None
    ) -> dict[str, str]:
        extra = self.extra_hyperparameters(sample=generated_counts is not None, weights=weights)
        tuning_epochs, epochs = FROM_SCRATCH_EPOCHS if self.weights == "random" else PRODUCTION_PATH_EPOCHS
        parameters = {
            "MaxTuningJobs": str(self.tuning_jobs),
            "MaxParallelTuningJobs": "1",
            "TuningEpochs": str(self.tuning_epochs or tuning_epochs),
            "TrainingEpochs": str(self.epochs or epochs),
            # Real one-second waits: the local jobs take real time and each poll is a real status call.
            "PollIntervalSeconds": "1",
            # MaxPolls bounds a wait loop by its count of polls, which at one second apart is minutes, not the work
            # a dataset needs: here it never ends a run. A stuck local job fails on the stall timeout instead
            # (RunOptions.stall_timeout), and every job on its MaxRuntimeInSeconds, as on AWS.
            "MaxPolls": str(OFFLINE_MAX_POLLS),
            "ExtraHyperparameters": json.dumps(extra),
            # The jobs need no network (their weights come through the pretrained channel): the local executor runs
            # them as SageMaker would under isolation, without proxies, AWS credentials or any connection off loopback.
            "NetworkIsolation": "true",
        }
        expected_classes = self.expected_classes or (self.classes if generated_counts else None)
        expected_counts = self.expected_counts or generated_counts
        if expected_classes is not None:
            parameters["ExpectedClasses"] = str(expected_classes)
        if expected_counts is not None:
            train, valid, test = expected_counts
            parameters |= {
                "ExpectedTrainImages": str(train),
                "ExpectedValidImages": str(valid),
                "ExpectedTestImages": str(test),
            }
        if self.lowers_accuracy_floor(generated_counts, weights):
            parameters["AccuracyFloor"] = STAND_IN_ACCURACY_FLOOR
        return parameters | dict(self.parameters)

    def lowers_accuracy_floor(
        self, generated_counts: tuple[int, int, int] | None, weights: InitialWeights | None
    ) -> bool:
        """AccuracyFloor (0.60) is set for ImageNet features on real photos; a stand-in's random features or a few
        epochs from random init on a dataset of your own fall below it without anything being wrong. A floor given
        with --parameter stands."""
        own_floor = "AccuracyFloor" in dict(self.parameters)
        return weights is not None and weights.kind != "imagenet" and generated_counts is None and not own_floor


@dataclass
class StateVisit:
    name: str
    type: str
    entered: datetime
    exited: datetime | None = None
    outcome: str = "running"
    output: dict[str, Any] | None = None

    @property
    def seconds(self) -> float:
        end = self.exited or datetime.now(UTC)
        return (end - self.entered).total_seconds()


@dataclass
class RunResult:
    status: str
    execution_arn: str
    error: str | None
    cause: str | None
    visits: list[StateVisit]
    final_state: dict[str, Any]
    record: dict[str, Any]
    output_dir: Path

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"

    @property
    def outcome(self) -> str:
        """The terminal state the execution ended in (RetrainingSucceeded, AlreadyTrained, ModelRejected, ...)."""
        ends = [v.name for v in self.visits if v.type in ("Succeed", "Fail")]
        return ends[-1] if ends else self.status


# Why an execution that succeeded did not deploy a model: the terminal state and where the state says why.
OUTCOME_REASONS = {
    "AlreadyTrained": ("dedupe", "reason"),
    "QueuedBehindRunningRun": ("lease", "reason"),
    "ModelRejected": ("gate", "reason"),
}


class Console:
    """Progress lines with the elapsed time, safe to call from the executor's worker threads."""

    def __init__(self, quiet: bool = False) -> None:
        self.started = time.monotonic()
        self.quiet = quiet
        self._lock = threading.Lock()

    def say(self, message: str) -> None:
        if self.quiet:
            return
        elapsed = time.monotonic() - self.started
        with self._lock:
            print(f"[{int(elapsed // 60):02d}:{elapsed % 60:04.1f}] {message}", flush=True)


def _error_message(cause: str | None) -> str:
    """A Lambda error's Cause is the JSON of errorMessage/errorType/stackTrace: show the message plainly."""
    if not cause:
        return ""
    try:
        parsed = json.loads(cause)
    except ValueError:
        return cause
    return str(parsed.get("errorMessage", cause)) if isinstance(parsed, dict) else cause


def _fake_aws_environment() -> dict[str, str]:
    """moto needs credentials and a region (never real ones); the handlers' EMF metric lines would go to stdout,
    which is the progress display here."""
    return {
        "AWS_ACCESS_KEY_ID": "offline",
        "AWS_SECRET_ACCESS_KEY": "offline",
        "AWS_SESSION_TOKEN": "offline",
        "AWS_DEFAULT_REGION": os.environ.get("OFFLINE_REGION", "us-east-1"),
        "AWS_PROFILE": "",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "DogBreedRetraining",
        "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
        "POWERTOOLS_METRICS_DISABLED": "true",
    }


class OfflinePipeline:
    """The stack from template.yaml in moto, with the local SageMaker; several runs may share one instance."""

    def __init__(
        self,
        work_dir: Path,
        parameters: dict[str, str],
        console: Console,
        initial_weights: InitialWeights | None = None,
        stall_timeout: float | None = RunOptions.stall_timeout,
        approve_after: float | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.approve_after = approve_after
        self.parameters = parameters
        self.console = console
        self.initial_weights = initial_weights
        self.stall_timeout = stall_timeout
        from offline.local_sagemaker.progress import TimeLeft

        self._time_left = TimeLeft()
        self._stack = ExitStack()
        self._last_poll: dict[str, dict[str, Any]] = {}
        self.staged_weights: str | None = None  # the s3:// URI of the file the jobs' pretrained channel holds

    def __enter__(self) -> OfflinePipeline:
        import logging

        from moto import mock_aws

        from offline.local_sagemaker import LocalSageMaker
        from offline.moto_shims import offline_aws_patches
        from offline.stack import Template, deploy_to_moto

        weights = self.initial_weights
        # The stand-in's file is written by a child process while the stack comes up (torch's import costs seconds).
        stand_in = StandInFile(self.work_dir / "weights") if weights and weights.staged and not weights.file else None
        # Restored on exit: a test process goes on after the offline run.
        self._stack.enter_context(mock.patch.dict(os.environ, _fake_aws_environment()))
        os.environ.pop("AWS_PROFILE")
        # moto's Step Functions engine reports every caught task failure as an exception log line.
        levels = {"moto": logging.ERROR, "botocore": logging.ERROR, "moto.stepfunctions.parser": logging.CRITICAL}
        for name, level in levels.items():
            self._stack.callback(logging.getLogger(name).setLevel, logging.getLogger(name).level)
            logging.getLogger(name).setLevel(level)
        self._stack.enter_context(mock_aws(config={"stepfunctions": {"execute_state_machine": True}}))
        self._stack.enter_context(offline_aws_patches(include_sagemaker_actions=False, fast_timers=False))
        self.sagemaker = self._stack.enter_context(
            LocalSageMaker(
                self.work_dir / "sagemaker",
                progress=self._on_progress,
                log=self._on_log,
                stall_timeout_seconds=self.stall_timeout,
            )
        )
        weights_file = stand_in.result() if stand_in else Path(weights.file) if weights and weights.file else None
        if weights_file is not None and weights and weights.staged:
            # The key carries the file's own name, as the template's default carries torchvision's (a key given
            # with --parameter stands, and the jobs then hold the file to the name it gives).
            self.parameters = {"PretrainedWeightsKey": f"{WEIGHTS_PREFIX}{weights_file.name}"} | self.parameters
        self.template = Template(parameters=self.parameters)
        self.stack = deploy_to_moto(self.template)
        self.console.say(
            f"stack from template.yaml: bucket {self.stack.bucket}, {len(self.stack.functions)} functions, "
            f"state machine {self.stack.state_machine_arn.rsplit(':', 1)[-1]}, rules {sorted(self.stack.rules)}"
        )
        if weights_file is not None and weights and weights.staged:
            self._stage_weights(weights_file)
        return self

    def _stage_weights(self, weights_file: Path) -> None:
        """What `make stage-weights` does after a deployment, with its code: the pinned file into the bucket."""
        import boto3

        from offline.stage_weights import stage_weights_file

        key = self.template.parameters["PretrainedWeightsKey"]
        staged = stage_weights_file(boto3.client("s3"), self.stack.bucket, key, weights_file)
        self.staged_weights = staged.uri
        self.console.say(
            f"staged {weights_file.name} at {staged.uri} (SHA-256 {staged.sha256[:16]}..., as `make stage-weights` "
            "does): every job loads it from its pretrained channel"
        )

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    # -- progress ---------------------------------------------------------------------------------------------

    def _on_progress(self, event: ProgressEvent) -> None:
        from offline.local_sagemaker.progress import console_line

        self.console.say(console_line(event, self._time_left.observe(event, time.monotonic())))

    def _on_log(self, resource: str, line: str) -> None:
        log_dir = self.work_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        with (log_dir / f"{resource}.log").open("a") as log:
            log.write(line.rstrip("\n") + "\n")

    # -- triggers -----------------------------------------------------------------------------------------------

    def upload(self, zip_path: Path, key: str) -> None:
        import boto3

        from offline.local_sagemaker import s3io

        # One PUT: a multipart upload would start two executions (s3io.WHOLE_OBJECT_TRANSFERS).
        s3 = boto3.client("s3", config=s3io.MOTO_FRIENDLY_UPLOADS)
        s3io.upload_file(s3, zip_path, f"s3://{self.stack.bucket}/{key}")
        self.console.say(f"uploaded {zip_path.name} to s3://{self.stack.bucket}/{key}")

    def fire_schedule(self) -> None:
        from offline.moto_shims import fire_schedule

        (schedule,) = [event for event in self.stack.rules.values() if event.kind == "Schedule"]
        fire_schedule(schedule.rule_name)
        self.console.say(f"fired the schedule rule {schedule.rule_name}")

    def executions(self) -> list[dict[str, Any]]:
        import boto3

        response = boto3.client("stepfunctions").list_executions(stateMachineArn=self.stack.state_machine_arn)
        return list(response["executions"])

    # -- one run ------------------------------------------------------------------------------------------------

    def run(self, trigger: Callable[[], None], output_dir: Path, timeout: float | None = None) -> RunResult:
        """One execution, followed to its end; ``timeout`` (tests) stops it after that many seconds."""
        import boto3

        sfn = boto3.client("stepfunctions")
        known = {e["executionArn"] for e in self.executions()}
        trigger()
        execution_arn = self._wait_for_new_execution(known)
        self.console.say(f"execution started by EventBridge: {execution_arn.rsplit(':', 1)[-1]}")
        visits: list[StateVisit] = []
        seen_events = 0
        deadline = time.monotonic() + timeout if timeout is not None else None
        history_read = -math.inf
        while True:
            description = sfn.describe_execution(executionArn=execution_arn)
            running = description["status"] == "RUNNING"
            if not running or time.monotonic() - history_read >= HISTORY_POLL_SECONDS:
                history_read = time.monotonic()
                events = list(_history(sfn, execution_arn))
                for event in events[seen_events:]:
                    self._follow(event, visits)
                seen_events = len(events)
            if not running:
                break
            if deadline is not None and time.monotonic() > deadline:
                sfn.stop_execution(executionArn=execution_arn, error="OfflineTimeout", cause="the offline run gave up")
                raise TimeoutError(f"execution still running after {timeout:.0f} s")
            time.sleep(STATUS_POLL_SECONDS)
        self.sagemaker.wait_idle(timeout=300)
        final_state = _final_state(events)
        result = RunResult(
            status=description["status"],
            execution_arn=execution_arn,
            error=description.get("error"),
            cause=description.get("cause"),
            visits=visits,
            final_state=final_state,
            record={},
            output_dir=output_dir,
        )
        result.record = self._record(result, events)
        self._write_outputs(result, events)
        return result

    def _wait_for_new_execution(self, known: set[str], timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout if timeout is not None else None
        while time.monotonic() < deadline:
            fresh = [e for e in self.executions() if e["executionArn"] not in known]
            if fresh:
                return str(fresh[0]["executionArn"])
            time.sleep(0.1)
        raise RuntimeError("no execution started: the EventBridge rule did not match the trigger")

    def _follow(self, event: dict[str, Any], visits: list[StateVisit]) -> None:
        kind = event["type"]
        if kind.endswith("StateEntered"):
            details = event["stateEnteredEventDetails"]
            visits.append(StateVisit(details["name"], kind.removesuffix("StateEntered"), event["timestamp"]))
            if visits[-1].type not in ("Wait", "Choice") and not _is_poll(details["name"]):
                self.console.say(f"> {details['name']}")
            if details["name"] == "AwaitApproval":
                self._ask_for_approval(json.loads(details.get("input") or "{}"))
        elif kind.endswith("StateExited") and visits:
            details = event["stateExitedEventDetails"]
            visit = visits[-1]
            visit.exited = event["timestamp"]
            visit.outcome = "succeeded" if visit.outcome == "running" else visit.outcome
            output = json.loads(details.get("output") or "{}")
            visit.output = output if isinstance(output, dict) else None
            if visit.type in ("Wait", "Choice"):
                return
            if _is_poll(visit.name):
                self._report_poll(visit)
            else:
                self.console.say(f"< {visit.name} {visit.outcome} ({visit.seconds:.1f} s){_summary(visit)}")
        elif kind in ("LambdaFunctionFailed", "TaskFailed") and visits:
            details = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
            visits[-1].outcome = f"caught {details.get('error')}"
            self.console.say(f"! {visits[-1].name}: {details.get('error')}: {_error_message(details.get('cause'))}")
        elif kind == "ExecutionFailed" and visits:
            visits[-1].exited = event["timestamp"]
            visits[-1].outcome = "failed"

    def _ask_for_approval(self, state: dict[str, Any]) -> None:
        """ApprovalMode manual: say how a person decides on AWS, and take the same decision here (typed, or after
        --approve-after seconds); either way it is the registry's UpdateModelPackage that resumes the run."""
        from pipeline.request_approval import approval_commands

        package = (state.get("gate") or {}).get("model_package_arn", "<model package ARN>")
        self.console.say("  waiting for a person to approve or reject the model in the registry; on AWS:")
        for command in approval_commands(package):
            self.console.say(f"    {command}")
        if self.approve_after is not None:
            self.console.say(f"  (--approve-after: approving it here in {self.approve_after:g} s)")
            decide = threading.Timer(
                self.approve_after, _decide, args=(package, "Approved", "approved by the offline run (--approve-after)")
            )
        else:
            self.console.say("  here the local registry takes it: type 'approve <why>' or 'reject <why>' and Enter")
            decide = threading.Thread(target=_decide_from_stdin, args=(package,))
        decide.daemon = True
        decide.start()

    def _report_poll(self, visit: StateVisit) -> None:
        """A status poll is worth a line only when what it saw changed."""
        key = {"GetTuningStatus": "tuning", "GetTrainingStatus": "training", "GetEndpointStatus": "deployment"}
        status = dict(((visit.output or {}).get(key[visit.name]) or {}).get("status") or {})
        status.pop("polls", None)
        if status != self._last_poll.get(visit.name):
            self._last_poll[visit.name] = status
            shown = {k: v for k, v in status.items() if k != "done"}
            self.console.say(f"  {visit.name}: {json.dumps(shown, default=str)}")

    # -- results -------------------------------------------------------------------------------------------------

    def _record(self, result: RunResult, events: list[dict[str, Any]]) -> dict[str, Any]:
        import boto3

        state = result.final_state
        sagemaker = boto3.client("sagemaker")
        record: dict[str, Any] = {
            "execution": result.execution_arn,
            "status": result.status,
            "error": result.error,
            "cause": _error_message(result.cause),
            "trigger": state.get("dataset", {}).get("trigger"),
            "dataset": state.get("dataset"),
            "tuning": state.get("tuning"),
            "best": state.get("best"),
            "training": state.get("training"),
            "rules": state.get("rules"),
            "deployment": state.get("deployment"),
            "states": [
                {"name": v.name, "type": v.type, "seconds": round(v.seconds, 2), "outcome": v.outcome}
                for v in result.visits
            ],
            "local_tuner": "trials sample the search ranges at random (SageMaker would use Bayesian search)",
            "initial_weights": (
                self.initial_weights.__dict__ | {"staged": self.staged_weights} if self.initial_weights else None
            ),
            "outcome": result.outcome,
            "lease": state.get("lease"),
            "dedupe": state.get("dedupe"),
            "gate": state.get("gate"),
            "release": state.get("release"),
            # The run record RecordRun wrote to the bucket (runs/<execution name>.json), cost estimate included.
            "pipeline_record": _pipeline_record(state),
        }
        training_job = (state.get("training") or {}).get("job_name")
        if training_job:
            job = sagemaker.describe_training_job(TrainingJobName=training_job)
            record["metrics"] = {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])}
            record["model_artifact"] = job.get("ModelArtifacts", {}).get("S3ModelArtifacts")
        endpoint_name = self.template.functions()["DeployEndpointFunction"].environment.get("ENDPOINT_NAME")
        endpoints = {e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]}
        if endpoint_name in endpoints:
            endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
            record["endpoint"] = {
                "name": endpoint_name,
                "status": endpoint["EndpointStatus"],
                "serving_config": endpoint["EndpointConfigName"],
                "last_deployment_config": endpoint.get("LastDeploymentConfig"),
            }
        return record

    @property
    def incoming_prefix(self) -> str:
        return self.template.functions()["ValidateDatasetFunction"].environment["INCOMING_PREFIX"]

    def predict(self, result: RunResult, zip_path: Path) -> dict[str, Any] | None:
        """One real prediction from the local endpoint on the first image of the dataset's test split."""
        import boto3
        from moto.core import DEFAULT_ACCOUNT_ID

        endpoint = result.record.get("endpoint")
        if not endpoint or endpoint["status"] != "InService":
            return None
        name, image = _first_test_image(zip_path)
        runtime = boto3.client("sagemaker-runtime")
        response = runtime.invoke_endpoint(
            EndpointName=endpoint["name"], ContentType="image/jpeg", Accept="application/json", Body=image
        )
        # The request the local model server answered, for the audit to print as a call a reader can repeat.
        sample = result.output_dir / f"prediction_input{Path(name).suffix}"
        sample.write_bytes(image)
        fleet = self.sagemaker.endpoints.fleet(DEFAULT_ACCOUNT_ID, runtime.meta.region_name, endpoint["name"])
        call = {"endpoint": endpoint["name"], "file": str(sample), "port": fleet.port if fleet else None}
        return {"image": name, "prediction": json.loads(response["Body"].read()), "call": call}

    def _write_outputs(self, result: RunResult, events: list[dict[str, Any]]) -> None:
        from pipeline.common.state_machine_drawing import render_svg

        result.output_dir.mkdir(parents=True, exist_ok=True)
        (result.output_dir / "execution_history.json").write_text(json.dumps(events, indent=2, default=str))
        (result.output_dir / "run_record.json").write_text(json.dumps(result.record, indent=2, default=str))
        asl = json.loads((REPO_ROOT / "state_machine" / "retrain.asl.json").read_text())
        failed = next((v.name for v in result.visits if v.outcome.startswith("caught")), None)
        svg = render_svg(asl, [v.name for v in result.visits], failed_state=failed)
        (result.output_dir / "state_machine.svg").write_text(svg)
        _copy_report(result)


def _decide(package: str, status: str, description: str) -> None:
    import boto3

    boto3.client("sagemaker").update_model_package(
        ModelPackageArn=package, ModelApprovalStatus=status, ApprovalDescription=description
    )


def _decide_from_stdin(package: str) -> None:
    for line in sys.stdin:
        verb, _, why = line.strip().partition(" ")
        if verb.lower() in ("approve", "reject"):
            status = "Approved" if verb.lower() == "approve" else "Rejected"
            _decide(package, status, why or f"{status.lower()} in the offline run")
            return
        print("  type 'approve <why>' or 'reject <why>'", flush=True)


def _pipeline_record(state: dict[str, Any]) -> dict[str, Any] | None:
    import boto3

    uri = (state.get("record") or {}).get("uri")
    if not uri:
        return None
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return dict(json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()))


def _copy_report(result: RunResult) -> Path | None:
    """report.html: the page the run's WriteRunReport state wrote next to its record in the (moto) bucket."""
    import boto3

    from pipeline.common.job_outputs import split_s3_uri

    uri = (result.final_state.get("report") or {}).get("uri")
    if not uri:
        return None
    bucket, key = split_s3_uri(uri)
    path = result.output_dir / "report.html"
    path.write_bytes(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    return path


def _cost_lines(cost: dict[str, Any] | None) -> list[str]:
    if not cost:
        return ["Cost estimate: no SageMaker job ran"]
    if cost.get("total_usd") is None:
        return [f"Cost estimate: unknown, InstancePrices has no price for {', '.join(cost['missing_prices'])}"]
    lines = [f"Cost estimate: {cost['total_usd']:.4f} USD on AWS ({cost['basis']})"]
    if cost.get("spot_savings_usd"):
        lines.append(
            f"  managed spot saved {cost['spot_savings_usd']:.4f} USD of {cost['on_demand_usd']:.4f} on demand"
        )
    for job in cost["jobs"]:
        lines.append(
            f"  {job['job']}: {job['billable_seconds']:.0f} s x {job['instance_count']} {job['instance_type']}"
            f" = {job['usd']:.4f} USD"
        )
    if cost.get("endpoint_usd_per_hour") is not None:
        lines.append(f"  the endpoint costs {cost['endpoint_usd_per_hour']:.4f} USD per hour while it serves")
    return lines


def _history(sfn: Any, execution_arn: str) -> Iterator[dict[str, Any]]:
    paginator = sfn.get_paginator("get_execution_history")
    for page in paginator.paginate(executionArn=execution_arn):
        yield from page["events"]


def _final_state(events: list[dict[str, Any]]) -> dict[str, Any]:
    for event in reversed(events):
        for key in ("stateExitedEventDetails", "stateEnteredEventDetails"):
            if key in event:
                payload = event[key].get("output" if key.startswith("stateExited") else "input")
                if payload:
                    parsed = json.loads(payload)
                    if isinstance(parsed, dict):
                        return parsed
    return {}


def _is_poll(state_name: str) -> bool:
    return state_name in ("GetTuningStatus", "GetTrainingStatus", "GetEndpointStatus")


def _summary(visit: StateVisit) -> str:
    """One line of what a state wrote, in the words of the contract (DESIGN.md's table)."""
    out = visit.output or {}
    pick = {
        "ValidateDataset": lambda: f"dataset {out['dataset']['dataset_id']}: {out['dataset']['counts']}",
        "StartTuning": lambda: (
            f"tuning job {out['tuning']['job_name']}, "
            + (
                f"warm start from {out['tuning']['warm_start_parent']}"
                if out["tuning"].get("warm_start_parent")
                else f"cold start ({out['tuning'].get('warm_start_skipped')})"
            )
        ),
        "PickBestJob": lambda: f"best {out['best']['training_job_name']} {out['best']['hyperparameters']}",
        "StartTraining": lambda: f"training job {out['training']['job_name']}; {_champion_line(out['training'])}",
        "CheckRules": lambda: f"rules {out['rules'].get('rules')}",
        "DeployEndpoint": lambda: f"{out['deployment']['action']} {out['deployment']['endpoint_config']}",
        "EvaluateModel": lambda: f"{'passed' if out['gate']['passed'] else 'rejected'}: {out['gate']['reason']}",
        "RejectModel": lambda: f"{out['rejection']['model_package_arn']} Rejected",
        "AwaitApproval": lambda: (
            f"{out['approval_decision']['status']} by {out['approval_decision']['approved_by']}: "
            f"{out['approval_decision']['description']}"
        ),
        "ApproveModel": lambda: f"{out['approval']['model_package_arn']} Approved",
    }.get(visit.name)
    try:
        return f": {pick()}" if pick else ""
    except (KeyError, TypeError):
        return ""


def _champion_line(training: dict[str, Any]) -> str:
    champion = training.get("champion")
    if not champion:
        return "no model serving yet: the floor alone will decide"
    if champion.get("problem"):
        return f"the serving model cannot be scored ({champion['problem']}): the floor alone will decide"
    return f"scores the serving model ({champion['endpoint_config']}) on the same test images"


def _first_test_image(zip_path: Path) -> tuple[str, bytes]:
    with zipfile.ZipFile(zip_path) as archive:
        names = sorted(
            n
            for n in archive.namelist()
            if "/test/" in f"/{n}" and n.lower().endswith(IMAGE_SUFFIXES) and "__MACOSX" not in n
        )
        if not names:
            raise FileNotFoundError(f"{zip_path} has no image under test/")
        return names[0], archive.read(names[0])


def audit_rows(visits: list[StateVisit]) -> list[dict[str, Any]]:
    """The console's table, with each poll loop folded into one row per state (entries, total seconds)."""
    rows: list[dict[str, Any]] = []
    for visit in visits:
        recent = rows[-5:]  # a poll loop is Wait -> status Task -> Choice: fold repeats within a short window
        row = next((r for r in recent if r["name"] == visit.name), None)
        if row is None:
            row = {"name": visit.name, "type": visit.type, "entries": 0, "seconds": 0.0, "outcome": ""}
            rows.append(row)
        row["entries"] += 1
        row["seconds"] += visit.seconds
        row["outcome"] = visit.outcome
    return rows


def _rule_lines(rules: dict[str, Any]) -> list[str]:
    """Every rule's verdict with what it found (our rule and profiler reports; SageMaker's rule jobs when on)."""
    lines = [f"Rule and profiler results ({rules.get('evidence')}; blocking rules stop the model):"]
    details = rules.get("details") or {}
    for name, status in (rules.get("rules") or {}).items():
        lines.append(f"  {name:<24} {status:<14} {details.get(name, '')}")
    if rules.get("sagemaker_rules"):
        lines.append(f"  SageMaker's rule jobs: {rules['sagemaker_rules']}")
    return lines


def _invocation_lines(call: dict[str, Any] | None) -> list[str]:
    """The prediction's request as commands: what the local model server answered (it stops with the run: the
    offline AWS is in-process, so there is no runtime API URL for the aws CLI), and the same call on AWS."""
    if not call:
        return []
    lines = []
    if call.get("port"):
        lines += [
            "  the request the local model server answered (it stopped when the run ended):",
            f"    curl -s http://127.0.0.1:{call['port']}/invocations -H 'Content-Type: image/jpeg' "
            f"-H 'Accept: application/json' --data-binary @{call['file']}",
        ]
    lines += [
        "  the same call to the deployed stack's endpoint (docs/deploy.md, Calling the endpoint):",
        f"    aws sagemaker-runtime invoke-endpoint --endpoint-name {call['endpoint']} --content-type image/jpeg "
        f"--body fileb://{call['file']} out.json",
    ]
    return lines


def print_audit(result: RunResult, prediction: dict[str, Any] | None, out: Any = sys.stdout) -> None:
    def line(text: str = "") -> None:
        print(text, file=out)

    line()
    line(f"Execution {result.execution_arn.rsplit(':', 1)[-1]}: {result.status}, ended in {result.outcome}")
    line(f"  {'state':<22} {'type':<8} {'entered':>7} {'seconds':>8}  outcome")
    for row in audit_rows(result.visits):
        line(f"  {row['name']:<22} {row['type']:<8} {row['entries']:>7} {row['seconds']:>8.1f}  {row['outcome']}")
    record = result.record
    if result.outcome in OUTCOME_REASONS:
        part, key = OUTCOME_REASONS[result.outcome]
        line(f"{result.outcome}: {(record.get(part) or {}).get(key, '')}")
    if not result.succeeded:
        line()
        line(f"Error: {result.error}")
        line(f"Cause: {_error_message(result.cause)}")
        if record.get("endpoint"):
            line(f"The endpoint keeps serving {record['endpoint']['serving_config']}.")
    if record.get("best"):
        best = record["best"]
        objective = best.get("objective", {})
        line(
            f"Chosen hyperparameters: {best.get('hyperparameters')} from {best.get('training_job_name')} "
            f"({objective.get('name')}={objective.get('value')}; {record['local_tuner']})"
        )
    if record.get("rules"):
        for rule_line in _rule_lines(record["rules"]):
            line(rule_line)
    if record.get("initial_weights"):
        line(f"Initial weights: {record['initial_weights']['description']}")
        if record["initial_weights"].get("staged"):
            line(f"  staged at {record['initial_weights']['staged']}: the jobs' pretrained channel")
    metrics = record.get("metrics") or {}
    if "test:accuracy" in metrics:
        int8 = metrics.get("test:int8_accuracy")
        int8_note = f" (int8 network for CPU endpoints: {int8:.4f})" if int8 is not None else ""
        line(f"Test accuracy: {metrics['test:accuracy']:.4f}{int8_note}")
    if record.get("endpoint"):
        endpoint = record["endpoint"]
        line(f"Endpoint {endpoint['name']}: {endpoint['status']}, serving endpoint config {endpoint['serving_config']}")
    pipeline_record = record.get("pipeline_record")
    if pipeline_record:
        line(f"Run record ({pipeline_record['outcome']}): {(result.final_state.get('record') or {}).get('uri')}")
        for cost_line in _cost_lines(pipeline_record.get("cost")):
            line(cost_line)
    release = record.get("release") or {}
    if release.get("started"):
        line(f"Follow-up run started for the trigger that waited: {release['started']}")
    if prediction:
        top = prediction["prediction"].get("predictions", prediction["prediction"])
        shown = ", ".join(f"{p['breed']} {p['probability']:.2f}" for p in top[:3]) if isinstance(top, list) else top
        line(f"Prediction for {prediction['image']}: {shown}")
        for call_line in _invocation_lines(prediction.get("call")):
            line(call_line)
    report = result.output_dir / "report.html"
    if report.is_file():
        line(f"Run report (open it in a browser): {report}")
    else:
        error = result.final_state.get("report_error") or {}
        why = f"{error.get('Error', 'WriteRunReport did not run')}: {_error_message(error.get('Cause'))}"
        line(f"Run report: none ({why})")
    line(f"Execution history, run record and state machine graph: {result.output_dir}")


def parse_args(argv: list[str]) -> RunOptions:
    parser = argparse.ArgumentParser(prog="python -m offline.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, help="your dataset zip (dogImages layout); default: a generated one")
    parser.add_argument("--classes", type=int, default=RunOptions.classes, help="generated dataset: class count")
    parser.add_argument(
        "--counts",
        type=int,
        nargs=3,
        metavar=("TRAIN", "VALID", "TEST"),
        default=RunOptions.counts,
        help="generated dataset: images per split",
    )
    parser.add_argument("--expected-classes", type=int, help="override the template's ExpectedClasses")
    parser.add_argument("--expected-counts", type=int, nargs=3, metavar=("TRAIN", "VALID", "TEST"))
    parser.add_argument("--tuning-jobs", type=int, default=RunOptions.tuning_jobs)
    parser.add_argument("--tuning-epochs", type=int, help="default: 10 (production path), 3 (--weights random)")
    parser.add_argument("--epochs", type=int, help="final training epochs; default 20, or 8 with --weights random")
    parser.add_argument("--image-size", type=int, default=RunOptions.image_size, help="training resolution (px)")
    parser.add_argument(
        "--weights",
        choices=WEIGHT_CHOICES,
        default=RunOptions.weights,
        help="auto: ImageNet's ResNet18 if in the torch hub cache, else a labelled stand-in (frozen backbone, head "
        "on cached features, as in production); random: train the whole network from random init",
    )
    parser.add_argument("--schedule", action="store_true", help="start through the schedule rule, not the upload")
    parser.add_argument(
        "--approve-after",
        type=float,
        metavar="SECONDS",
        help="with --parameter ApprovalMode=manual: approve the waiting model after this many seconds (for demos); "
        "without it, run the printed update-model-package command (the local registry takes it while the run waits)",
    )
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=RunOptions.stall_timeout,
        metavar="SECONDS",
        help="a local job that prints nothing for this long fails as stuck (jobs print every epoch and progress "
        "line); nothing else ends a run that progresses",
    )
    parser.add_argument("--output", type=Path, help="folder for the history, run record and graph")
    parser.add_argument(
        "--parameter", action="append", default=[], metavar="NAME=VALUE", help="any other template parameter"
    )
    args = parser.parse_args(argv)
    parameters = []
    for item in args.parameter:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--parameter {item!r}: expected NAME=VALUE")
        parameters.append((name, value))
    options = RunOptions(
        dataset=args.dataset,
        classes=args.classes,
        counts=tuple(args.counts),
        expected_classes=args.expected_classes,
        expected_counts=tuple(args.expected_counts) if args.expected_counts else None,
        tuning_jobs=args.tuning_jobs,
        tuning_epochs=args.tuning_epochs,
        epochs=args.epochs,
        image_size=args.image_size,
        weights=args.weights,
        schedule=args.schedule,
        stall_timeout=args.stall_timeout,
        approve_after=args.approve_after,
        parameters=tuple(parameters),
    )
    if args.output:
        options = RunOptions(**{**options.__dict__, "output": args.output})
    return options


@contextmanager
def offline_pipeline(options: RunOptions, console: Console) -> Iterator[tuple[OfflinePipeline, Path]]:
    """The dataset (given or generated) and the pipeline brought up for it."""
    options.output.mkdir(parents=True, exist_ok=True)
    if options.dataset:
        zip_path = options.dataset.expanduser().resolve()
        if not zip_path.is_file():
            raise FileNotFoundError(f"--dataset {zip_path}: no such file")
        generated = None
    else:
        from offline.synthetic_dataset import write_dataset_zip

        zip_path = options.output / "sample_dataset.zip"
        write_dataset_zip(zip_path, num_classes=options.classes, counts=options.counts, image_size=96)
        generated = options.counts
        console.say(f"generated {zip_path.name}: {options.classes} classes, train/valid/test {options.counts}")
        console.say(
            "the sample's jobs last seconds, so its rules judge shorter spans than SageMaker's defaults: "
            f"{SAMPLE_DEBUG_RULE_PARAMETERS | SAMPLE_PROFILER_RULE_PARAMETERS}"
        )
    work_dir = options.output / "work"
    weights = choose_initial_weights(options.weights)
    console.say(f"initial weights: {weights.description}")
    parameters = options.template_parameters(generated, weights)
    if options.lowers_accuracy_floor(generated, weights):
        console.say(
            f"AccuracyFloor {STAND_IN_ACCURACY_FLOOR} for this run (the template's 0.60 assumes ImageNet features on "
            "real photos); --parameter AccuracyFloor=... sets your own"
        )
    with OfflinePipeline(
        work_dir,
        parameters,
        console,
        initial_weights=weights,
        stall_timeout=options.stall_timeout,
        approve_after=options.approve_after,
    ) as pipeline:
        yield pipeline, zip_path


def run_once(pipeline: OfflinePipeline, zip_path: Path, options: RunOptions, output_dir: Path) -> RunResult:
    key = f"{pipeline.incoming_prefix}{zip_path.name}"
    if options.schedule:
        # The schedule takes the newest zip under incoming/: put it there without an upload event first.
        return pipeline.run(lambda: (_quiet_put(pipeline, zip_path, key), pipeline.fire_schedule()), output_dir)
    return pipeline.run(lambda: pipeline.upload(zip_path, key), output_dir)


def _quiet_put(pipeline: OfflinePipeline, zip_path: Path, key: str) -> None:
    import boto3

    from offline.local_sagemaker import s3io

    # Uploading would also trigger the S3 rule; stage the object under a name the rule ignores, then copy it
    # with the rule disabled, so only the schedule starts the run.
    events = boto3.client("events")
    (upload_rule,) = [e.rule_name for e in pipeline.stack.rules.values() if e.kind == "EventBridgeRule"]
    events.disable_rule(Name=upload_rule)
    try:
        s3 = boto3.client("s3", config=s3io.MOTO_FRIENDLY_UPLOADS)
        s3io.upload_file(s3, zip_path, f"s3://{pipeline.stack.bucket}/{key}")
    finally:
        events.enable_rule(Name=upload_rule)
    pipeline.console.say(f"staged {zip_path.name} at s3://{pipeline.stack.bucket}/{key} (upload rule paused)")


def main(argv: list[str] | None = None) -> int:
    options = parse_args(sys.argv[1:] if argv is None else argv)
    console = Console(options.quiet)
    with offline_pipeline(options, console) as (pipeline, zip_path):
        result = run_once(pipeline, zip_path, options, options.output)
        prediction = pipeline.predict(result, zip_path) if result.succeeded else None
    print_audit(result, prediction)
    return 0 if result.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
