"""One training job run locally: the SageMaker lifecycle around a subprocess running the job's program.

``accept()`` runs inside the CreateTrainingJob request, so a describe right after it sees ``InProgress``;
``run()`` runs in a worker thread: download the code and channels, run the script under the container contract
(``container.py``) on every host of the job (``ResourceConfig.InstanceCount`` processes on this machine, each with
its own ``/opt/ml``), read metrics from their logs, upload ``model.tar.gz``/``output.tar.gz`` (every host's folders
merged, as SageMaker does)/tensors, then evaluate
the Debugger and Profiler rules as separate work, as SageMaker's rule jobs do after the training job: the Debugger
rules on the job's smdebug tensors, ProfilerReport on the metric files the training code's own profiler wrote
(SageMaker's profiling agent does not run here), both with the project's rule code.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import json
import logging
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from moto.core.utils import utcnow
from moto.sagemaker.models import FakeTrainingJob

from offline.local_sagemaker import s3io
from offline.local_sagemaker.container import (
    FAILURE_REASON_LIMIT,
    ContainerLayout,
    MetricReader,
    container_environment,
    debug_hook_config_json,
    decode_hyperparameters,
    failure_reason,
    host_names,
    isolate_network,
    killed_by,
    torch_distributed,
    training_command,
    user_hyperparameters,
)
from offline.local_sagemaker.progress import PROGRESS_PREFIX, LogCallback, ProgressCallback, ProgressEvent, epoch_in
from offline.local_sagemaker.s3io import worker_client
from offline.local_sagemaker.warm_interpreter import PRELOADED_NOTE, JobProcesses, WarmProcess, free_port

logger = logging.getLogger(__name__)

RuleEvaluator = Callable[[Path, list[str]], Mapping[str, Mapping[str, str]]]
# Test control: which managed-spot jobs lose their capacity (once, after their first checkpoint), by job name.
SpotInterruptions = Callable[[str], bool]

RULE_RUNNER = Path(__file__).with_name("rule_runner.py")
RULE_STATUSES = ("NoIssuesFound", "IssuesFound", "Error")
NOT_EVALUATED = "NotEvaluated"  # our rules' status for a rule that could not judge (training_code/debug_rules.py)
STATUS_DETAILS_LIMIT = 1024
STDERR_TAIL_LINES = 12
# torchrun's summary of a rank that a signal ended ("traceback : Signal 9 (SIGKILL) received by PID 4242").
TORCHRUN_RANK_KILLED = re.compile(r"Signal \d+ \(SIG\w+\) received by PID")
END_OF_TRAINING_MARKER = "training_job_end.ts"  # smdebug.core.access_layer.utils.END_OF_JOB_FILENAME
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
LOG_EVENTS_PER_CALL = 5000
PROFILER_SOURCE_NOTE = (
    "ProfilerConfig: SageMaker's profiling agent does not run locally; ProfilerReport is evaluated on the training "
    "code's own profiler samples (output/profiler/)."
)
PROFILER_DATA_DIR = "profiler"


@dataclass(frozen=True)
class JobServices:
    """What a running job needs from the executor."""

    work_root: Path
    report: ProgressCallback
    log: LogCallback
    rule_evaluator: RuleEvaluator | None
    fallback_code_dirs: tuple[Path, ...]
    python: str = sys.executable
    rule_timeout_seconds: float = 900.0
    # How long the other hosts of a job get to fail by themselves after one host failed, before they are killed.
    failure_grace_seconds: float = 10.0
    # A job whose process prints nothing for this long is stopped as stuck (None: never). SageMaker has no such
    # bound, only MaxRuntimeInSeconds; the offline run sets one, so that a job that hangs fails in minutes with the
    # last thing it said, while a job that keeps printing (epochs, the training code's progress lines) runs on.
    stall_timeout_seconds: float | None = None
    spot_interruptions: SpotInterruptions | None = None
    # Taken when the executor is created: an in-process Lambda handler patches os.environ while it runs, and its
    # variables must not leak into a job that happens to start meanwhile.
    base_environment: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    # How the hosts' commands start: forked from a warm interpreter (torch already imported) or as subprocesses.
    processes: JobProcesses = field(default_factory=lambda: JobProcesses(sys.executable, os.environ, warm=False))


def _group_of(pid: int) -> int:
    """The process group of ``pid``, or ``pid`` itself once it has gone (killpg then finds nothing)."""
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return pid


def _replicate(source: Path, destination: Path) -> None:
    """Another host's copy of a downloaded folder: hard links where the file system allows (a 1 GB dataset zip
    is not copied once per host), a copy otherwise."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, destination, copy_function=link_or_copy, dirs_exist_ok=True)


class RuleEvaluationError(Exception):
    """The local rule evaluation could not produce results."""


def _rule_entries(configurations: list[dict[str, Any]], status: str, job_arn: str) -> list[dict[str, Any]]:
    prefix = job_arn.split(":training-job/")[0]
    return [
        {
            "RuleConfigurationName": c["RuleConfigurationName"],
            "RuleEvaluationJobArn": f"{prefix}:processing-job/{c['RuleConfigurationName'][:20].lower()}-"
            f"{secrets.token_hex(6)}",
            "RuleEvaluationStatus": status,
            "LastModifiedTime": utcnow(),
        }
        for c in configurations
    ]


def _sagemaker_status(result: Mapping[str, Any]) -> tuple[str, str]:
    """One of our rule results as SageMaker's rule evaluation status and details. SageMaker has no NotEvaluated:
    a rule that could not judge is an Error there, saying why."""
    status, details = str(result.get("status")), str(result.get("details") or "")
    if status in ("NoIssuesFound", "IssuesFound", "Error"):
        return status, details
    return "Error", f"Not evaluated: {details}"


def _rule_to_invoke(configuration: Mapping[str, Any]) -> str:
    return str(
        (configuration.get("RuleParameters") or {}).get("rule_to_invoke", configuration["RuleConfigurationName"])
    )


class TrainingRun:
    """The lifecycle of one training job on moto's ``FakeTrainingJob``."""

    def __init__(
        self,
        job: FakeTrainingJob,
        request: Mapping[str, Any],
        services: JobServices,
        *,
        tuning_job: str | None = None,
        trial: int | None = None,
        trials: int | None = None,
    ) -> None:
        self.job = job
        self.request = copy.deepcopy(dict(request))
        self.services = services
        self.tuning_job, self.trial, self.trials = tuning_job, trial, trials
        self.job_dir = services.work_root / job.training_job_name
        self.hosts = host_names(int((self.request.get("ResourceConfig") or {}).get("InstanceCount") or 1))
        # algo-1 keeps the single-instance layout; the others get a tree of their own beside it.
        self.layouts = {
            host: ContainerLayout(self.job_dir / ("opt_ml" if host == self.hosts[0] else f"opt_ml-{host}"))
            for host in self.hosts
        }
        self.layout = self.layouts[self.hosts[0]]
        self.log_file = self.job_dir / "job.log"
        definitions = self.request["AlgorithmSpecification"].get("MetricDefinitions") or []
        self.metrics = MetricReader([dict(d) for d in definitions])
        self._stop_requested = threading.Event()
        self._max_runtime_exceeded = False
        self._stalled: str | None = None
        self._last_output = time.monotonic()
        self._last_line = ""
        epochs = decode_hyperparameters(self.request.get("HyperParameters") or {}).get("epochs")
        self.epochs = int(epochs) if str(epochs).isdigit() else None
        self._spot_reclaimed = threading.Event()
        self.interruptions = 0
        self._processes: dict[str, subprocess.Popen[str] | WarmProcess] = {}
        self._process_lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._stderr_tails = {host: collections.deque[str](maxlen=STDERR_TAIL_LINES) for host in self.hosts}
        self._log_events: dict[str, list[dict[str, Any]]] = {host: [] for host in self.hosts}
        self._started = time.monotonic()
        self._created_at = int(time.time())

    @property
    def name(self) -> str:
        return str(self.job.training_job_name)

    # --- status bookkeeping --------------------------------------------------------------------------------

    def accept(self) -> None:
        """Replace moto's instant "Completed" with the state of a job that has just been created."""
        job, request = self.job, self.request
        now = utcnow()
        # moto replaces MetricDefinitions with a fake one; DescribeTrainingJob must show what was asked for.
        job.algorithm_specification = copy.deepcopy(request["AlgorithmSpecification"])
        job.training_job_status = "InProgress"
        job.secondary_status = "Starting"
        job.secondary_status_transitions = [
            {"Status": "Starting", "StartTime": now, "StatusMessage": "Launching requested ML instances"}
        ]
        job.final_metric_data_list = None
        job.training_start_time = None
        job.training_end_time = None
        job.failure_reason = None
        job.last_modified_time = now
        job.environment = request.get("Environment")
        job.profiler_config = request.get("ProfilerConfig")
        job.profiler_rule_configurations = request.get("ProfilerRuleConfigurations")
        debug_rules = request.get("DebugRuleConfigurations") or []
        profiler_rules = request.get("ProfilerRuleConfigurations") or []
        job.debug_rule_evaluation_statuses = _rule_entries(debug_rules, "InProgress", job.arn) or None
        job.profiler_rule_evaluation_statuses = _rule_entries(profiler_rules, "InProgress", job.arn) or None
        self._report("status", f"{self.name}: InProgress", status="InProgress")

    def _transition(self, status: str, message: str) -> None:
        now = utcnow()
        transitions = [dict(t) for t in self.job.secondary_status_transitions or []]
        if transitions and "EndTime" not in transitions[-1]:
            transitions[-1]["EndTime"] = now
        transitions.append({"Status": status, "StartTime": now, "StatusMessage": message})
        self.job.secondary_status_transitions = transitions
        self.job.secondary_status = status
        self.job.last_modified_time = now

    def _end(self, status: str, secondary: str, message: str, reason: str | None = None) -> None:
        self._transition(secondary, message)
        transitions = self.job.secondary_status_transitions
        transitions[-1]["EndTime"] = transitions[-1]["StartTime"]
        now = utcnow()
        seconds = max(1, int(time.monotonic() - self._started))
        self.job.training_end_time = now
        self.job.training_time_in_seconds = seconds
        self.job.billable_time_in_seconds = seconds
        self.job.failure_reason = reason
        self.job.training_job_status = status
        self._report("status", f"{self.name}: {status}" + (f" ({reason})" if reason else ""), status=status)

    def _report(self, kind: str, message: str, **fields: Any) -> None:
        self.services.report(
            ProgressEvent(
                kind=kind,
                resource=self.name,
                message=message,
                tuning_job=self.tuning_job,
                trial=self.trial,
                trials=self.trials,
                epochs=self.epochs,
                **fields,
            )
        )

    def _log(self, line: str, host: str | None = None) -> None:
        """A line of the job's log; a host's output goes to that host's stream, the executor's own to algo-1's.
        With several hosts the local log and the progress callback prefix each line with its host."""
        shown = f"[{host}] {line}" if host and len(self.hosts) > 1 else line
        with self._log_lock, self.log_file.open("a", encoding="utf-8") as log:
            log.write(shown + "\n")
            event = {"timestamp": int(time.time() * 1000), "message": line or " "}
            self._log_events[host or self.hosts[0]].append(event)
        self.services.log(self.name, shown)

    def _publish_logs(self) -> None:
        """Copy the job's log to CloudWatch Logs where SageMaker writes it (``/aws/sagemaker/TrainingJobs``), one
        stream per host."""
        logs = worker_client("logs", self.job.arn.split(":")[3])
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=TRAINING_LOG_GROUP)
        for host in self.hosts:
            stream = f"{self.name}/{host}-{self._created_at}"
            logs.create_log_stream(logGroupName=TRAINING_LOG_GROUP, logStreamName=stream)
            with self._log_lock:
                events = list(self._log_events[host])
            for start in range(0, len(events), LOG_EVENTS_PER_CALL):
                logs.put_log_events(
                    logGroupName=TRAINING_LOG_GROUP,
                    logStreamName=stream,
                    logEvents=events[start : start + LOG_EVENTS_PER_CALL],
                )

    # --- the run ---------------------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop_requested.set()
        self._signal_hosts(signal.SIGTERM)

    def _signal_hosts(self, signal_number: int) -> None:
        """Signal every process of every host, as an instance's shutdown does: the host's process group, and the
        ranks its torchrun started, which torchrun puts in sessions of their own (a SIGKILLed torchrun would
        otherwise leave them running, still writing checkpoints beside the restarted job)."""
        with self._process_lock:
            for process in self._processes.values():
                if process.poll() is None:
                    ranks: list[psutil.Process] = []
                    with contextlib.suppress(psutil.Error):
                        ranks = psutil.Process(process.pid).children(recursive=True)
                    for group in dict.fromkeys([process.pid, *(_group_of(rank.pid) for rank in ranks)]):
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(group, signal_number)

    def run(self) -> None:
        self.job_dir.mkdir(parents=True, exist_ok=True)
        s3 = worker_client("s3", self.job.arn.split(":")[3])
        try:
            self._run_training(s3)
        except s3io.S3InputMissing as error:
            self._end("Failed", "Failed", "Training job failed", f"ClientError: {error}")
        except s3io.OutputClash as error:
            self._end("Failed", "Failed", "Training job failed", f"AlgorithmError: {error}")
        except Exception as error:  # the executor itself broke: report it on the job, as an internal error
            logger.exception("local training job %s failed in the executor", self.name)
            self._end(
                "Failed",
                "Failed",
                "Training job failed",
                f"InternalServerError: local executor: {type(error).__name__}: {error}",
            )
        try:
            self._upload_tensors(s3)
        except Exception:
            logger.exception("could not upload the Debugger tensors of %s", self.name)
        try:
            self._publish_logs()
        except Exception:
            logger.exception("could not copy the log of %s to CloudWatch Logs", self.name)
        self._evaluate_rules(s3)

    def _run_training(self, s3: Any) -> None:
        request = self.request
        channels = [c["ChannelName"] for c in request.get("InputDataConfig") or []]
        for layout in self.layouts.values():
            layout.create(channels)
        self._transition("Downloading", "Downloading input data")
        encoded = request.get("HyperParameters") or {}
        decoded = decode_hyperparameters(encoded)
        program = decoded.get("sagemaker_program")
        if not program:
            self._end("Failed", "Failed", "Training job failed", "ClientError: no sagemaker_program hyperparameter")
            return
        self._fetch_code(s3, str(decoded.get("sagemaker_submit_directory") or ""))
        for channel in request.get("InputDataConfig") or []:
            source = channel["DataSource"].get("S3DataSource") or {}
            if source.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise s3io.S3InputMissing(f"S3DataType {source.get('S3DataType')} is not supported locally")
            s3io.download_prefix(s3, source["S3Uri"], self.layout.channel_dir(channel["ChannelName"]))
        # Every host downloads the same code and FullyReplicated channels.
        for layout in list(self.layouts.values())[1:]:
            _replicate(self.layout.code_dir, layout.code_dir)
            _replicate(self.layout.data_dir, layout.data_dir)
        debug_config_files = {host: self._write_config_files(host, encoded, channels) for host in self.hosts}
        if (request.get("ProfilerConfig") or {}).get("DisableProfiler") is False:
            self._log(PROFILER_SOURCE_NOTE)
        if self._stop_requested.is_set():
            self._end("Stopped", "Stopped", "Training job stopped before training started")
            return
        self._transition("Training", "Training image download completed. Training in progress.")
        self.job.training_start_time = utcnow()
        hyperparameters = user_hyperparameters(decoded)
        distributed = torch_distributed(decoded)
        master_port = free_port() if distributed or len(self.hosts) > 1 else None
        commands, environments = {}, {}
        for host, layout in self.layouts.items():
            commands[host] = training_command(
                self.services.python,
                program,
                hyperparameters,
                distributed=distributed,
                hosts=self.hosts,
                current_host=host,
                master_port=master_port,
            )
            environments[host] = container_environment(
                layout,
                program=program,
                hyperparameters=hyperparameters,
                channels=channels,
                job_name=self.name,
                job_environment=request.get("Environment") or {},
                debug_config_file=debug_config_files[host],
                checkpoint_dir=layout.checkpoint_dir if self._checkpoint_uri() else None,
                hosts=self.hosts,
                current_host=host,
                master_port=master_port,
            )
        if len(self.hosts) > 1 and not distributed:
            self._log(
                f"{len(self.hosts)} instances without sagemaker_torch_distributed_enabled: each host runs its own "
                "copy of the script, as the SageMaker PyTorch container does"
            )
        self._sync_checkpoints_down(s3)
        exits = self._run_processes(commands, environments)
        while self._spot_reclaimed.is_set() and not self._stop_requested.is_set():
            exits = self._restart_after_interruption(s3, commands, environments)
        failures = [(host, code) for host, code in exits if code != 0]
        self._sync_checkpoints_up(s3)
        if self._max_runtime_exceeded:
            limit = (request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
            self._end("Stopped", "MaxRuntimeExceeded", f"Training job exceeded MaxRuntimeInSeconds ({limit} s)")
        elif self._stalled:
            self._upload_output_data(s3)
            self._end("Failed", "Failed", "Training job failed", self._stalled)
        elif self._stop_requested.is_set():
            self._end("Stopped", "Stopped", "Training job stopped")
        elif failures:
            self._upload_output_data(s3)
            self._end("Failed", "Failed", "Training job failed", self._failure_reason(failures, commands))
        else:
            self._transition("Uploading", "Uploading generated training model")
            self._upload_model(s3)
            self._upload_output_data(s3)
            self._end("Completed", "Completed", "Training job completed")

    def _failure_reason(self, failures: list[tuple[str, int]], commands: Mapping[str, list[str]]) -> str:
        """The first host to fail tells why, hosts that failed after it (their collectives broke) follow briefly;
        a host whose torchrun reports a rank killed by a signal comes first, since its peers fail because of it."""
        failures = sorted(failures, key=lambda failure: not self._reports_killed_rank(failure[0]))
        host, code = failures[0]
        later = "".join(
            f"\nthen [{other}] exited {other_code}: {self._last_words(other, other_code)[:160]}"
            for other, other_code in failures[1:]
        )
        first = failure_reason(
            self.layouts[host],
            code,
            list(self._stderr_tails[host]),
            commands[host],
            host=host if len(self.hosts) > 1 else None,
            limit=FAILURE_REASON_LIMIT - len(later),
        )
        return first + later

    def _reports_killed_rank(self, host: str) -> bool:
        return any(TORCHRUN_RANK_KILLED.search(line) for line in self._stderr_tails[host])

    def _last_words(self, host: str, exit_code: int) -> str:
        signal_note = killed_by(exit_code)
        if signal_note:
            return signal_note
        failure_file = self.layouts[host].failure_file
        if failure_file.is_file():
            return failure_file.read_text(errors="replace").strip()
        tail = self._stderr_tails[host]
        return tail[-1] if tail else "(no output on stderr)"

    def _fetch_code(self, s3: Any, submit_directory: str) -> None:
        if submit_directory.startswith("s3://"):
            archive = s3io.download_file(s3, submit_directory, self.job_dir / "sourcedir.tar.gz")
            s3io.extract_tarball(archive, self.layout.code_dir)
            return
        local = Path(submit_directory.removeprefix("file://"))
        if submit_directory and local.is_dir():
            for path in local.iterdir():
                target = self.layout.code_dir / path.name
                if path.is_file():
                    target.write_bytes(path.read_bytes())
            return
        raise s3io.S3InputMissing(
            f"sagemaker_submit_directory {submit_directory!r} is neither an S3 tarball nor a folder"
        )

    def _write_config_files(self, host: str, encoded: Mapping[str, str], channels: list[str]) -> Path | None:
        layout = self.layouts[host]
        config_dir = layout.config_dir
        (config_dir / "hyperparameters.json").write_text(json.dumps(dict(encoded)))
        (config_dir / "inputdataconfig.json").write_text(
            json.dumps(
                {
                    c["ChannelName"]: {k: v for k, v in c.items() if k != "ChannelName"}
                    for c in self.request.get("InputDataConfig") or []
                }
            )
        )
        (config_dir / "resourceconfig.json").write_text(
            json.dumps({"current_host": host, "hosts": self.hosts, "network_interface_name": "lo"})
        )
        hook_config = self.request.get("DebugHookConfig")
        if not hook_config:
            return None
        path = config_dir / "debughookconfig.json"
        path.write_text(json.dumps(debug_hook_config_json(hook_config, layout.tensors_dir)))
        return path

    def _run_processes(
        self, commands: Mapping[str, list[str]], environments: Mapping[str, Mapping[str, str]]
    ) -> list[tuple[str, int]]:
        """Run every host's command at once; each host's exit code, in the order the hosts exited."""
        readers = []
        isolated = bool(self.request.get("EnableNetworkIsolation"))
        if isolated:
            self._log("EnableNetworkIsolation: the job runs without network access, proxies or AWS credentials")
        with self._process_lock:
            for host, command in commands.items():
                self._log(f"$ {' '.join(command)}", host)
                process_environment = {**self.services.base_environment, **environments[host]}
                if isolated:
                    process_environment = isolate_network(process_environment)
                # A process group of its own, so that killing a host kills torchrun and every rank it started.
                process = self.services.processes.start(command, self.layouts[host].code_dir, process_environment)
                if isinstance(process, WarmProcess):
                    self._log(f"(pid {process.pid}: forked from the warm interpreter, {PRELOADED_NOTE})", host)
                elif self.services.processes.warm_unavailable:
                    self._log(f"(a plain process: {self.services.processes.warm_unavailable})", host)
                self._processes[host] = process
                readers += [
                    threading.Thread(target=self._pump, args=(host, process.stdout, False), daemon=True),
                    threading.Thread(target=self._pump, args=(host, process.stderr, True), daemon=True),
                ]
        for reader in readers:
            reader.start()
        result = self._wait()
        for reader in readers:
            reader.join()
        return result

    def _wait(self) -> list[tuple[str, int]]:
        """Each host's exit code, in the order they exited. A failing host fails the job: the others get
        ``failure_grace_seconds`` to end by themselves (their collectives break, and what they say helps), then are
        killed. MaxRuntimeInSeconds and a stall end every host at once."""
        limit = (self.request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
        deadline = self._started + limit if limit else None
        stall = self.services.stall_timeout_seconds
        self._last_output = time.monotonic()
        exits: queue.Queue[tuple[str, int]] = queue.Queue()

        def report_exit(host: str, process: subprocess.Popen[str] | WarmProcess) -> None:
            exits.put((host, process.wait()))

        processes = dict(self._processes)
        for host, process in processes.items():
            threading.Thread(target=report_exit, args=(host, process), daemon=True).start()
        ordered: list[tuple[str, int]] = []
        first_failure: float | None = None
        while len(ordered) < len(processes):
            with contextlib.suppress(queue.Empty):
                ordered.append(exits.get(timeout=0.5))
                if ordered[-1][1] != 0 and first_failure is None:
                    first_failure = time.monotonic()
                continue
            now = time.monotonic()
            if first_failure is not None and now - first_failure > self.services.failure_grace_seconds:
                break
            if deadline is not None and now > deadline:
                self._max_runtime_exceeded = True
            elif stall is not None and now - self._last_output > stall:
                self._stalled = (
                    f"AlgorithmError: local executor: the training process printed nothing for {stall:.0f} s and "
                    f"was stopped as stuck (its last line: {self._last_line[:300]!r}). A job that is making "
                    "progress prints its epochs and progress lines; if this one legitimately works longer in "
                    "silence, raise the offline run's --stall-timeout."
                )
            else:
                continue
            break
        self._signal_hosts(signal.SIGKILL)
        while len(ordered) < len(processes):
            ordered.append(exits.get())
        return ordered

    def _pump(self, host: str, stream: Any, is_stderr: bool) -> None:
        for raw in stream:
            line = raw.rstrip("\n")
            self._last_output, self._last_line = time.monotonic(), line
            self._log(line, host)
            if is_stderr:
                self._stderr_tails[host].append(line)
            self._maybe_reclaim_spot_capacity()
            found = self.metrics.read(line)
            if found:
                self.job.final_metric_data_list = self.metrics.final_metric_data_list()
                self._report("metrics", line, epoch=epoch_in(line), metrics=found)
            elif line.startswith(PROGRESS_PREFIX):
                self._report("progress", line.removeprefix(PROGRESS_PREFIX))
        stream.close()

    # --- managed spot and checkpoints ---------------------------------------------------------------------------

    def _checkpoint_uri(self) -> str | None:
        uri = (self.request.get("CheckpointConfig") or {}).get("S3Uri")
        return str(uri) if uri else None

    def _sync_checkpoints_down(self, s3: Any) -> None:
        """SageMaker copies CheckpointConfig.S3Uri into every host's /opt/ml/checkpoints before the script starts."""
        uri = self._checkpoint_uri()
        if not uri:
            return
        for host, layout in self.layouts.items():
            try:
                restored = s3io.download_prefix(s3, uri.rstrip("/") + "/", layout.checkpoint_dir)
            except s3io.S3InputMissing:
                return  # nothing checkpointed yet: a first start
            self._log(f"restored {len(restored)} checkpoint files from {uri}", host)

    def _sync_checkpoints_up(self, s3: Any) -> None:
        """SageMaker keeps every host's /opt/ml/checkpoints in step with CheckpointConfig.S3Uri while the job runs."""
        uri = self._checkpoint_uri()
        if not uri:
            return
        for host, layout in self.layouts.items():
            if layout.checkpoint_dir.is_dir():
                count = s3io.upload_tree(s3, layout.checkpoint_dir, uri)
                if count:
                    self._log(f"synced {count} checkpoint files to {uri}", host)

    def _has_checkpoint(self) -> bool:
        folder = self.layout.checkpoint_dir
        return folder.is_dir() and any(not path.name.startswith(".") for path in folder.iterdir())

    def _maybe_reclaim_spot_capacity(self) -> None:
        """Test control: a managed-spot job chosen by ``spot_interruptions`` loses its instance once, mid-run,
        as soon as it has written a checkpoint (so the restart has something to resume from)."""
        chosen = self.services.spot_interruptions
        if (
            chosen is None
            or self.interruptions
            or self._spot_reclaimed.is_set()
            or not self.request.get("EnableManagedSpotTraining")
            or not chosen(self.name)
            or not self._has_checkpoint()
        ):
            return
        self._spot_reclaimed.set()
        self._signal_hosts(signal.SIGKILL)  # no warning, no clean shutdown: the instances are gone

    def _restart_after_interruption(
        self, s3: Any, commands: Mapping[str, list[str]], environments: Mapping[str, Mapping[str, str]]
    ) -> list[tuple[str, int]]:
        self._spot_reclaimed.clear()
        self.interruptions += 1
        self._transition("Interrupted", "The spot capacity was reclaimed; the job restarts when capacity returns.")
        message = f"{self.name}: spot capacity reclaimed (interruption {self.interruptions})"
        self._report("status", message, status="Interrupted")
        self._log(f"spot interruption {self.interruptions}: the training processes were killed")
        self._sync_checkpoints_up(s3)
        # New instances start with an empty /opt/ml/checkpoints, filled from S3.
        for layout in self.layouts.values():
            shutil.rmtree(layout.checkpoint_dir, ignore_errors=True)
            layout.checkpoint_dir.mkdir(parents=True)
        self._transition("Restarting", "Restarting the training job on new spot capacity.")
        self._sync_checkpoints_down(s3)
        self._transition("Training", "Training resumed from the last checkpoint.")
        return self._run_processes(commands, environments)

    # --- outputs ---------------------------------------------------------------------------------------------

    def _output_prefix(self) -> str:
        return s3io.join_s3_uri(self.request["OutputDataConfig"]["S3OutputPath"], self.name, "output")

    def _upload_model(self, s3: Any) -> None:
        folders = {host: layout.model_dir for host, layout in self.layouts.items()}
        archive = s3io.tar_folders(folders, self.job_dir / "model.tar.gz")
        uri = s3io.upload_file(s3, archive, s3io.join_s3_uri(self._output_prefix(), "model.tar.gz"))
        self.job.model_artifacts = {"S3ModelArtifacts": uri}

    def _upload_output_data(self, s3: Any) -> None:
        folders = {host: layout.output_data_dir for host, layout in self.layouts.items()}
        archive = s3io.tar_folders(folders, self.job_dir / "output.tar.gz")
        s3io.upload_file(s3, archive, s3io.join_s3_uri(self._output_prefix(), "output.tar.gz"))

    def _debug_output_uri(self) -> str | None:
        hook_config = self.request.get("DebugHookConfig")
        if not hook_config:
            return None
        # SageMaker writes a job's tensors under <S3OutputPath>/<job name>/debug-output.
        return s3io.join_s3_uri(hook_config["S3OutputPath"], self.name, "debug-output")

    def _upload_tensors(self, s3: Any) -> None:
        uri = self._debug_output_uri()
        if not uri:
            return
        for host, layout in self.layouts.items():
            if layout.tensors_dir.is_dir():
                count = s3io.upload_tree(s3, layout.tensors_dir, uri)
                self._log(f"uploaded {count} Debugger files to {uri}", host)

    # --- rules -----------------------------------------------------------------------------------------------

    def _set_rule(self, attribute: str, name: str, status: str, details: str) -> None:
        entries = [dict(e) for e in getattr(self.job, attribute) or []]
        for entry in entries:
            if entry["RuleConfigurationName"] == name:
                entry["RuleEvaluationStatus"] = status
                entry["StatusDetails"] = details[:STATUS_DETAILS_LIMIT]
                entry["LastModifiedTime"] = utcnow()
        setattr(self.job, attribute, entries)
        self._report(
            "rule", f"{self.name}: rule {name}: {status}" + (f" ({details})" if details else ""), status=status
        )

    def _evaluate_rules(self, s3: Any) -> None:
        debug_rules = self.request.get("DebugRuleConfigurations") or []
        profiler_rules = self.request.get("ProfilerRuleConfigurations") or []
        if not debug_rules and not profiler_rules:
            return
        if self.job.training_job_status != "Completed":
            details = f"Not evaluated: the training job ended {self.job.training_job_status}."
            for configuration in debug_rules:
                self._set_rule(
                    "debug_rule_evaluation_statuses", configuration["RuleConfigurationName"], "Stopped", details
                )
            for configuration in profiler_rules:
                self._set_rule(
                    "profiler_rule_evaluation_statuses", configuration["RuleConfigurationName"], "Stopped", details
                )
            return
        if profiler_rules:
            for name, (status, details) in self._profiler_rule_results(s3, profiler_rules).items():
                self._set_rule("profiler_rule_evaluation_statuses", name, status, details)
        if debug_rules:
            for name, (status, details) in self._debug_rule_results(s3, debug_rules).items():
                self._set_rule("debug_rule_evaluation_statuses", name, status, details)

    def _debug_rule_results(self, s3: Any, configurations: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
        names = {c["RuleConfigurationName"]: _rule_to_invoke(c) for c in configurations}
        uri = self._debug_output_uri()
        if uri is None:
            return {name: ("Error", "No DebugHookConfig on the job, so no tensors to evaluate.") for name in names}
        # SageMaker's rule jobs read the tensors back from S3; here they read the same files where the training
        # wrote them (they were uploaded to ``uri`` too), which spares a second copy of a ~100 MB ResNet trial.
        trial_dir = self.layout.tensors_dir
        if not trial_dir.is_dir() or not any(trial_dir.iterdir()):
            details = f"No Debugger tensors under {uri}: the training script saved none."
            return {name: ("Error", details) for name in names}
        # The training has ended for certain now; smdebug's rule loop waits for more steps until it sees this marker.
        (trial_dir / END_OF_TRAINING_MARKER).touch()
        self._log(f"evaluating rules {sorted(set(names.values()))} on {uri}")
        try:
            results = (self.services.rule_evaluator or self._evaluate_in_subprocess)(
                trial_dir, sorted(set(names.values()))
            )
        except Exception as error:
            details = f"Local rule evaluation failed: {type(error).__name__}: {error}"
            return {name: ("Error", details) for name in names}
        outcome: dict[str, tuple[str, str]] = {}
        for configuration_name, rule in names.items():
            result = results.get(rule)
            if result is None:
                outcome[configuration_name] = ("Error", f"The local rule evaluator returned no result for {rule}.")
            elif result.get("status") not in (*RULE_STATUSES, NOT_EVALUATED):
                outcome[configuration_name] = ("Error", f"Unknown rule status {result.get('status')!r} for {rule}.")
            else:
                outcome[configuration_name] = _sagemaker_status(result)
        self._write_rule_reports(s3, outcome)
        return outcome

    def _profiler_rule_results(self, s3: Any, configurations: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
        names = [c["RuleConfigurationName"] for c in configurations]
        profiler_dir = self.layout.output_data_dir / PROFILER_DATA_DIR
        if not profiler_dir.is_dir():
            details = f"No profiler data: the training script wrote nothing to {PROFILER_DATA_DIR}/ of its output."
            return dict.fromkeys(names, ("Error", details))
        interval_ms = (self.request.get("ProfilerConfig") or {}).get("ProfilingIntervalInMilliseconds", 500)
        batch_size = decode_hyperparameters(self.request.get("HyperParameters") or {}).get("batch_size")
        try:
            results = self._run_rule_runner(
                "profiler-results.json",
                ["--profiler-dir", str(profiler_dir), "--interval-seconds", str(interval_ms / 1000)]
                + (["--batch-size", str(int(batch_size))] if batch_size is not None else []),
            )
        except Exception as error:
            return dict.fromkeys(
                names, ("Error", f"Local profiler rule evaluation failed: {type(error).__name__}: {error}")
            )
        self._write_profiler_reports(s3, names, results)
        return dict.fromkeys(names, _sagemaker_status(results.get("ProfilerReport") or {}))

    def _write_profiler_reports(self, s3: Any, names: list[str], results: Mapping[str, Any]) -> None:
        """One JSON per sub-rule, where SageMaker's ProfilerReport writes them."""
        base = s3io.join_s3_uri(self.request["OutputDataConfig"]["S3OutputPath"], self.name, "rule-output")
        for name in names:
            for rule, result in results.items():
                report = self.job_dir / "rule-output" / name / "profiler-output" / "profiler-reports" / f"{rule}.json"
                report.parent.mkdir(parents=True, exist_ok=True)
                report.write_text(json.dumps(result, default=str))
                key = f"{name}/profiler-output/profiler-reports/{rule}.json"
                s3io.upload_file(s3, report, s3io.join_s3_uri(base, key))

    def _write_rule_reports(self, s3: Any, outcome: Mapping[str, tuple[str, str]]) -> None:
        base = s3io.join_s3_uri(self.request["DebugHookConfig"]["S3OutputPath"], self.name, "rule-output")
        for name, (status, details) in outcome.items():
            report = self.job_dir / "rule-output" / name / "local-evaluation.json"
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps({"rule": name, "status": status, "details": details, "evaluated_by": "local"}))
            s3io.upload_file(s3, report, s3io.join_s3_uri(base, name, "local-evaluation.json"))

    def _evaluate_in_subprocess(self, trial_dir: Path, rule_names: list[str]) -> Mapping[str, Mapping[str, str]]:
        return self._run_rule_runner(
            "rule-results.json", ["--trial-dir", str(trial_dir), "--rules", json.dumps(rule_names)]
        )

    def _run_rule_runner(self, output_name: str, arguments: list[str]) -> dict[str, Any]:
        output = self.job_dir / output_name
        command = [self.services.python, "-u", str(RULE_RUNNER), *arguments, "--output", str(output)]
        for folder in (self.layout.code_dir, *self.services.fallback_code_dirs):
            command += ["--code-dir", str(folder)]
        # Like a job's host: forked from the warm interpreter where it can be (smdebug and torch, 3-4 s a start).
        process = self.services.processes.start(command, self.job_dir, dict(self.services.base_environment))
        timeout = self.services.rule_timeout_seconds
        timed_out = False
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            process.kill()
            stdout, stderr = process.communicate()
        for line in (stdout + stderr).splitlines():
            self._log(f"[rules] {line}")
        if timed_out:
            raise RuleEvaluationError(f"rule evaluation ran past {timeout:g} s and was stopped")
        if process.returncode != 0:
            tail = " | ".join(stderr.strip().splitlines()[-3:])
            raise RuleEvaluationError(f"exit code {process.returncode}: {tail}")
        results: dict[str, Any] = json.loads(output.read_text())
        return results
