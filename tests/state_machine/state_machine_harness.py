"""The pieces the state machine tests drive: fake training code, rule verdicts, and the deployed pipeline.

What is real in these tests: template.yaml (bucket, functions and their environment, the substituted ASL, the
EventBridge rules and the topic, through ``offline.stack``), state_machine/retrain.asl.json run by moto's ASL
engine, every handler under functions/pipeline (in-process), and the SageMaker lifecycles of
``offline.local_sagemaker`` (jobs as subprocesses, rule evaluations after training, endpoints served by local
processes with blue/green swaps and health checks).

What is fake, so that a run takes seconds: the training code and the rule verdicts. ``FakeTrainingCode`` writes a
training_code folder whose ``hpo.py`` and ``train_model.py`` print metric lines, fail on demand and package a tiny
model with a ``code/inference.py`` that answers (or fails the health check). ``RuleVerdicts`` replaces smdebug's
rule evaluation through the executor's ``rule_evaluator`` injection.
"""

from __future__ import annotations

import json
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.sagemaker.models import sagemaker_backends
from moto.sns.models import sns_backends
from moto.stepfunctions.parser.api import ExecutionStatus
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from moto.stepfunctions.parser.models import stepfunctions_parser_backends

from offline.local_sagemaker import LocalSageMaker, ProgressEvent
from offline.local_sagemaker.endpoints import sample_jpeg
from offline.moto_shims import EventBridgeRouter, InProcessLambda, MotoPatch, fire_schedule
from offline.moto_shims._base import patch_attribute
from offline.moto_shims.lambda_inprocess import resolve_handler
from offline.stack import DeployedStack

REGION = "us-east-1"
CLASSES = 3
COUNTS = (6, 3, 3)
DEADLINE_SECONDS = 60.0
WAIT_SECONDS = 0.1

# Template parameters of every run: the synthetic dataset's layout, one trial, two epochs, no bake time, and a
# poll budget that a subprocess job starting on a busy machine cannot exhaust.
TEMPLATE_PARAMETERS = {
    "ExpectedClasses": str(CLASSES),
    "ExpectedTrainImages": str(COUNTS[0]),
    "ExpectedValidImages": str(COUNTS[1]),
    "ExpectedTestImages": str(COUNTS[2]),
    "MaxTuningJobs": "1",
    "MaxParallelTuningJobs": "1",
    "TuningEpochs": "2",
    "TrainingEpochs": "2",
    "BakeTimeSeconds": "0",
    "MaxPolls": "2000",
}
# An account that still has SageMaker Debugger and Profiler, with their rule containers on (off by default).
WITH_RULE_CONTAINERS = TEMPLATE_PARAMETERS | {"DebuggerRules": "true", "ProfilerRules": "true"}

# The flow of a successful run, each state once (poll loops collapsed).
HAPPY_PATH = [
    "LoadRunSettings",
    "ClaimPipeline",
    "IsPipelineFree",
    "ValidateDataset",
    "CheckAlreadyTrained",
    "IsNewDataset",
    "StartTuning",
    "WaitForTuning",
    "GetTuningStatus",
    "IsTuningDone",
    "PickBestJob",
    "StartTraining",
    "WaitForTraining",
    "GetTrainingStatus",
    "IsTrainingDone",
    "CheckRules",
    "EvaluateModel",
    "IsModelGoodEnough",
    "IsApprovalManual",
    "DeployEndpoint",
    "WaitForEndpoint",
    "GetEndpointStatus",
    "IsEndpointReady",
    "ApproveModel",
    "RecordRun",
    "WriteRunReport",
    "ReleasePipeline",
    "HowDidItEnd",
    "RetrainingSucceeded",
]
# Every ending records the run, writes its report and releases the pipeline before the terminal state.
ENDING = ["RecordRun", "WriteRunReport", "ReleasePipeline", "HowDidItEnd"]
FAILURE_TAIL = ["NotifyFailure", *ENDING, "RunFailed"]


POLL_STATES = {
    "GetTuningStatus": "IsTuningDone",
    "GetTrainingStatus": "IsTrainingDone",
    "GetEndpointStatus": "IsEndpointReady",
}


def assert_failed_in(run: Run, state: str) -> None:
    """The run followed the happy path up to ``state``, failed there, and went to NotifyFailure → RunFailed."""
    assert run.states[-len(FAILURE_TAIL) - 1 :] == [state, *FAILURE_TAIL], run.states[-8:]
    expected = HAPPY_PATH[: HAPPY_PATH.index(state) + 1]
    if state in POLL_STATES and POLL_STATES[state] in run.states:  # the loop went round before the failing poll
        expected.append(POLL_STATES[state])
    assert run.path == [*expected, *FAILURE_TAIL]


HPO_SCRIPT = """
    import argparse, json, pathlib, sys

    behaviour = json.loads((pathlib.Path(__file__).parent / "behaviour.json").read_text())
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch_size", type=int, required=True)
    parser.add_argument("--learning_rate", type=float, required=True)
    args, _ = parser.parse_known_args()
    if behaviour["tuning"] == "fail":
        print("Traceback (most recent call last):", file=sys.stderr)
        print("RuntimeError: trial crashed before its first epoch", file=sys.stderr)
        sys.exit(1)
    for epoch in range(1, args.epochs + 1):
        accuracy = "" if behaviour["tuning"] == "no_metric" else f" valid_accuracy={args.learning_rate * epoch:.6f}"
        print(f"epoch={epoch} train_loss={1.0 / epoch:.4f}{accuracy}", flush=True)
"""

TRAIN_SCRIPT = """
    import argparse, json, os, pathlib, shutil, sys, time

    here = pathlib.Path(__file__).parent
    behaviour = json.loads((here / "behaviour.json").read_text())
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch_size", type=int, required=True)
    parser.add_argument("--learning_rate", type=float, required=True)
    args, _ = parser.parse_known_args()
    if behaviour["training"] == "fail":
        print("epoch=1 train_loss=2.5000", flush=True)
        print("Traceback (most recent call last):", file=sys.stderr)
        print("ValueError: valid/ holds no images for class 002.Afghan_hound", file=sys.stderr)
        sys.exit(3)
    if behaviour["training"] == "hang":
        print("epoch=1 train_loss=2.5000", flush=True)
        time.sleep(60)
    for epoch in range(1, args.epochs + 1):
        print(f"epoch={epoch} train_loss={1.0 / epoch:.4f} valid_accuracy={0.5 + 0.1 * epoch:.4f}", flush=True)
    accuracy = behaviour.get("test_accuracy", 0.9)
    print(f"test_accuracy={accuracy}", flush=True)
    model_dir = pathlib.Path(os.environ["SM_MODEL_DIR"])
    model = {"job": os.environ["SM_TRAINING_JOB_NAME"], "healthy": behaviour["model"] == "healthy",
             "test_accuracy": accuracy}
    (model_dir / "model.json").write_text(json.dumps(model))
    # evaluation.json as paired_evaluation.py writes it, for a test split of `images` images on which a model of
    # accuracy a gets the first round(a * images) right: the champion's accuracy is read from the champion
    # channel's model.tar.gz (the proof that StartTraining delivered it), or "champion_error" says it failed.
    images = 400
    def summary(correct):
        return {"served_as": "float32", "images": images, "accuracy": correct / images, "top5_accuracy": 1.0,
                "per_breed": {"001.Affenpinscher": {"images": images, "correct": correct}},
                "confused_pairs": [], "misclassified": []}
    ours = round(accuracy * images)
    evaluation = {"test_images": images, "confidence": 0.95, "challenger": summary(ours), "champion": None,
                  "paired": None}
    channel = os.environ.get("SM_CHANNEL_CHAMPION")
    if channel and behaviour.get("champion_error"):
        evaluation["champion"] = {"error": behaviour["champion_error"]}
    elif channel:
        import tarfile
        with tarfile.open(next(pathlib.Path(channel).glob("*.tar.gz"))) as archive:
            champion = json.loads(archive.extractfile("model.json").read())
        theirs = round(champion["test_accuracy"] * images)
        only_ours, only_theirs = max(0, ours - theirs), max(0, theirs - ours)
        difference = (ours - theirs) / images
        spread = 1.96 * max(0.0, (only_ours + only_theirs) / images**2 - difference**2 / images) ** 0.5
        evaluation["champion"] = summary(theirs) | {"model": champion["job"]}
        evaluation["paired"] = {
            "images": images, "shared_breeds": 1, "breeds_only_challenger": [], "breeds_only_champion": [],
            "breeds_compared": 1, "challenger_accuracy": ours / images, "champion_accuracy": theirs / images,
            "difference": difference, "interval": [difference - spread, difference + spread], "confidence": 0.95,
            "method": "normal approximation (fake training code)", "challenger_only_correct": only_ours,
            "champion_only_correct": only_theirs, "mcnemar_p": 1.0 if ours == theirs else 0.0001,
        }
    output_data = pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"])
    (output_data / "evaluation.json").write_text(json.dumps(evaluation))
    (model_dir / "code").mkdir(exist_ok=True)
    shutil.copy(here / "inference.py", model_dir / "code" / "inference.py")
    issues = behaviour["report_issues"]
    reports = {
        "rule_report.json": ("VanishingGradient", "LossNotDecreasing", "Overfit", "Overtraining",
                             "PoorWeightInitialization"),
        "profiler_report.json": ("ProfilerReport", "Dataloader", "BatchSize", "LowGPUUtilization"),
    }
    for report_name, rules in reports.items():
        report = {
            "rules": {
                rule: {"status": "IssuesFound", "details": issues[rule]} if rule in issues
                else {"status": "NoIssuesFound", "details": "judged"}
                for rule in rules
            }
        }
        (pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"]) / report_name).write_text(json.dumps(report))
    hook_config = os.environ.get("SMDEBUG_CONFIG_FILE_PATH")
    if hook_config:  # something for the rule jobs to read, where smdebug's hook would leave its tensors
        tensors = pathlib.Path(json.loads(pathlib.Path(hook_config).read_text())["LocalPath"])
        (tensors / "index").mkdir(parents=True, exist_ok=True)
        (tensors / "index" / "000000000000_worker_0.json").write_text("{}")
"""

INFERENCE_SCRIPT = """
    import json, os

    def model_fn(model_dir):
        with open(os.path.join(model_dir, "model.json")) as f:
            return json.load(f)

    def input_fn(body, content_type):
        return {"bytes": len(body), "content_type": content_type}

    def predict_fn(data, model):
        if not model["healthy"]:
            raise RuntimeError("weights produce NaN for every input")
        return {"breed": "001.Affenpinscher", "model": model["job"], "input": data}

    def output_fn(prediction, accept):
        return json.dumps(prediction)
"""


@dataclass
class FakeTrainingCode:
    """A training_code folder whose scripts take a fraction of a second and do what the test says.

    ``tuning``: "succeed", "fail" (every trial crashes) or "no_metric" (trials succeed but print no
    valid_accuracy). ``training``: "succeed", "fail" or "hang" (a minute after its first epoch, unless stopped).
    ``model``: "healthy" or "broken" (the model loads, but
    every prediction raises, so a new fleet fails its health check). ``report_issues``: rule name → details that
    train_model.py reports as IssuesFound in its own ``rule_report.json`` or ``profiler_report.json`` (the gate's
    evidence on every account); every other rule is reported NoIssuesFound. Each run's StartTuning bundles the folder
    again (a new content hash), so changing the behaviour between two runs takes effect.
    """

    folder: Path
    tuning: str = "succeed"
    training: str = "succeed"
    model: str = "healthy"
    report_issues: dict[str, str] = field(default_factory=dict)

    def write(self) -> FakeTrainingCode:
        self.folder.mkdir(parents=True, exist_ok=True)
        scripts = {"hpo.py": HPO_SCRIPT, "train_model.py": TRAIN_SCRIPT, "inference.py": INFERENCE_SCRIPT}
        for name, script in scripts.items():
            (self.folder / name).write_text(textwrap.dedent(script).lstrip())
        behaviour = {
            "tuning": self.tuning,
            "training": self.training,
            "model": self.model,
            "report_issues": self.report_issues,
        }
        (self.folder / "behaviour.json").write_text(json.dumps(behaviour))
        return self

    def behave(self, **behaviour: Any) -> None:
        for name, value in behaviour.items():
            if name not in ("tuning", "training", "model", "report_issues"):
                raise TypeError(f"unknown behaviour {name}")
            setattr(self, name, value)
        self.write()


@dataclass
class RuleVerdicts:
    """Stands in for smdebug's rule evaluation (``LocalSageMaker(rule_evaluator=...)``).

    ``issues``: rule name → details, for the rules that find issues; every other rule finds none.
    ``error``: when set, the evaluation itself raises it (the executor then reports every rule as Error).
    """

    issues: dict[str, str] = field(default_factory=dict)
    error: Exception | None = None
    calls: list[list[str]] = field(default_factory=list)

    def __call__(self, trial_dir: Path, rule_names: list[str]) -> dict[str, dict[str, str]]:
        self.calls.append(list(rule_names))
        if self.error is not None:
            raise self.error
        return {
            name: {"status": "IssuesFound", "details": self.issues[name]}
            if name in self.issues
            else {"status": "NoIssuesFound", "details": ""}
            for name in rule_names
        }


class ShortWaits(MotoPatch):
    """Every Wait state lasts ``seconds`` of wall time, whatever its length; Retry back-offs stay instant.

    Installed over ``FastStepFunctionsTimers``: with zero-second Waits each poll loop calls its status handler
    back to back and takes the CPU the subprocess jobs it waits for need (two shared cores); a tenth of a second
    keeps the polls few and the runs fast.
    """

    def __init__(self, seconds: float = WAIT_SECONDS) -> None:
        super().__init__()
        self.seconds = seconds

    def _patchers_to_start(self) -> list[Any]:
        seconds = self.seconds

        def short_wait(wait: WaitFunction, env: Any, wait_seconds: int) -> None:
            if wait_seconds > 0:
                env.program_state_event.wait(seconds)

        return [patch_attribute(WaitFunction, "_wait_interval", short_wait)]


@dataclass(frozen=True)
class Run:
    """One finished execution: its description and history."""

    arn: str
    status: str
    error: str | None
    cause: str | None
    output: dict[str, Any] | None
    states: list[str]
    events: list[dict[str, Any]]

    @property
    def path(self) -> list[str]:
        """The states entered, each once, in order (the poll loops collapsed)."""
        return list(dict.fromkeys(self.states))

    @property
    def cause_message(self) -> str:
        """The failed handler's message: the Cause is the Lambda error payload."""
        return str(json.loads(self.cause or "{}").get("errorMessage", ""))

    def times_entered(self, state: str) -> int:
        return self.states.count(state)

    def lambda_errors(self) -> list[str]:
        """The error name of every failed Lambda attempt, retried ones included, in order."""
        return [
            e["lambdaFunctionFailedEventDetails"]["error"] for e in self.events if e["type"] == "LambdaFunctionFailed"
        ]

    def state_output(self, state: str) -> dict[str, Any]:
        """The output of the last time ``state`` was exited."""
        exits = [e["stateExitedEventDetails"] for e in self.events if "stateExitedEventDetails" in e]
        (last, *_) = [d for d in reversed(exits) if d["name"] == state]
        return dict(json.loads(last["output"]))


def lost_response(error: str, handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """A handler whose first call does its work and then fails with ``error``, as when Lambda loses the response.

    Step Functions then retries a state whose side effect (a created job) already happened.
    """
    failed = threading.Event()

    def forgetful(event: Any, context: Any) -> Any:
        result = handler(event, context)
        if not failed.is_set():
            failed.set()
            raise type(error, (Exception,), {})(f"injected after the work was done: {error}")
        return result

    return forgetful


def transient_errors(errors: list[str], handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """A handler whose first calls raise the named errors (one each, in order) before the real handler runs.

    The error name reaches Step Functions as the Lambda payload's ``errorType`` (the exception's class name),
    which is what the ASL's Retry matches.
    """
    pending = [type(name, (Exception,), {}) for name in errors]
    lock = threading.Lock()

    def flaky(event: Any, context: Any) -> Any:
        with lock:
            error = pending.pop(0) if pending else None
        if error is not None:
            raise error(f"injected transient failure {error.__name__}")
        return handler(event, context)

    return flaky


@dataclass
class Pipeline:
    """The stack deployed from template.yaml into moto, with handles on what the tests drive and inspect."""

    stack: DeployedStack
    sagemaker: LocalSageMaker
    code: FakeTrainingCode
    rules: RuleVerdicts
    lambdas: InProcessLambda
    router: EventBridgeRouter
    progress: list[ProgressEvent]

    @property
    def endpoint_name(self) -> str:
        return self.stack.template.parameters["EndpointName"]

    # --- triggers --------------------------------------------------------------------------------------------

    def upload(self, key: str, body: bytes) -> None:
        boto3.client("s3", region_name=REGION).put_object(Bucket=self.stack.bucket, Key=key, Body=body)

    def started_executions(self) -> list[str]:
        """Executions the EventBridge rules started, in order."""
        return [d.execution_arn for d in self.router.deliveries if d.execution_arn]

    def all_executions(self) -> list[str]:
        sfn = boto3.client("stepfunctions", region_name=REGION)
        listed = sfn.list_executions(stateMachineArn=self.stack.state_machine_arn)["executions"]
        return [e["executionArn"] for e in listed]

    def upload_and_run(self, key: str, body: bytes) -> Run:
        """Upload a dataset zip and follow the one execution the template's upload rule starts for it."""
        before = len(self.started_executions())
        self.upload(key, body)
        started = self.started_executions()[before:]
        assert len(started) == 1, f"the upload of {key} started {len(started)} executions, not 1"
        return self.finish(started[0])

    def tick_schedule(self) -> Run:
        """One tick of the template's schedule rule, and the execution it starts."""
        (schedule,) = [rule for rule in self.stack.rules.values() if rule.kind == "Schedule"]
        before = len(self.started_executions())
        fire_schedule(schedule.rule_name, region=REGION)
        started = self.started_executions()[before:]
        assert len(started) == 1, f"the schedule tick started {len(started)} executions, not 1"
        return self.finish(started[0])

    def inject(self, logical_id: str, *errors: str) -> None:
        """Make the function's next invocations fail with these errors before its real handler runs again."""
        function = self.stack.functions[logical_id]
        self.lambdas.overrides[function.name] = transient_errors(list(errors), resolve_handler(function.handler))

    def lose_first_response(self, logical_id: str, error: str) -> None:
        """The function's next invocation does its work, then fails with ``error`` (see ``lost_response``)."""
        function = self.stack.functions[logical_id]
        self.lambdas.overrides[function.name] = lost_response(error, resolve_handler(function.handler))

    def make_older(self, key: str, by: timedelta) -> None:
        """Back-date an object (S3 reports LastModified to the second, so two fresh uploads would tie)."""
        bucket = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets[self.stack.bucket]
        bucket.keys[key].last_modified -= by

    # --- results ---------------------------------------------------------------------------------------------

    def finish(self, execution_arn: str) -> Run:
        """Wait for the execution, then for the local SageMaker work it left behind."""
        # The loop reads moto's execution object, not DescribeExecution: a boto3 call every 50 ms would take the GIL
        # from the execution thread it waits for (a tenth of a state-machine test's time under coverage).
        execution = stepfunctions_parser_backends[DEFAULT_ACCOUNT_ID][REGION].describe_execution(execution_arn)
        give_up = time.monotonic() + DEADLINE_SECONDS
        while execution.exec_status == ExecutionStatus.RUNNING:
            assert time.monotonic() < give_up, f"{execution_arn} still RUNNING after {DEADLINE_SECONDS} s"
            time.sleep(0.05)
        sfn = boto3.client("stepfunctions", region_name=REGION)
        description = sfn.describe_execution(executionArn=execution_arn)
        self.sagemaker.wait_idle(DEADLINE_SECONDS)
        events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        output = description.get("output")
        return Run(
            arn=execution_arn,
            status=description["status"],
            error=description.get("error"),
            cause=description.get("cause"),
            output=json.loads(output) if output else None,
            states=[e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e],
            events=events,
        )

    def notifications(self) -> list[tuple[str, str]]:
        """(subject, message) of everything published to the template's failure topic."""
        topic = sns_backends[DEFAULT_ACCOUNT_ID][REGION].topics[self.stack.topic_arn]
        return [(subject, message) for _, message, subject, *_ in topic.sent_notifications]

    def endpoint(self) -> dict[str, Any] | None:
        sm = boto3.client("sagemaker", region_name=REGION)
        if not any(e["EndpointName"] == self.endpoint_name for e in sm.list_endpoints()["Endpoints"]):
            return None
        return dict(sm.describe_endpoint(EndpointName=self.endpoint_name))

    def endpoint_configs(self) -> list[str]:
        sm = boto3.client("sagemaker", region_name=REGION)
        return sorted(c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"])

    def ask_endpoint(self) -> dict[str, Any]:
        """Classify one JPEG through sagemaker-runtime, as a client of the endpoint would."""
        response = boto3.client("sagemaker-runtime", region_name=REGION).invoke_endpoint(
            EndpointName=self.endpoint_name, Body=sample_jpeg(), ContentType="image/jpeg", Accept="application/json"
        )
        return dict(json.loads(response["Body"].read()))

    def training_jobs(self) -> list[str]:
        """Training jobs that are not tuning trials."""
        jobs = sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].training_jobs
        return sorted(name for name in jobs if name.startswith("train-"))

    def trial_objectives(self, tuning_job: str) -> dict[str, float]:
        """Each trial's final validation accuracy, as SageMaker lists them."""
        trials = boto3.client("sagemaker", region_name=REGION).list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=tuning_job
        )["TrainingJobSummaries"]
        return {
            t["TrainingJobName"]: t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
            for t in trials
            if "FinalHyperParameterTuningJobObjectiveMetric" in t
        }

    def job_starts(self, job_name: str) -> int:
        """How many times the local SageMaker started a lifecycle for that job name."""
        return sum(
            1 for e in self.progress if e.resource == job_name and e.kind == "status" and e.status == "InProgress"
        )

    def tuning_jobs(self) -> list[str]:
        return sorted(sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].hyper_parameter_tuning_jobs)
