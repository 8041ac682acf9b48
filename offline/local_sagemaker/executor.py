"""``LocalSageMaker``: moto's SageMaker with real job and endpoint lifecycles, run on this machine.

Installing it patches moto 5.2.5 (version-checked) so that:
- CreateTrainingJob → ``InProgress`` while the job's ``sagemaker_program`` runs in a subprocess, then
  ``Completed``/``Failed``/``Stopped``; rule evaluations ``InProgress`` → ``NoIssuesFound``/``IssuesFound``/``Error``;
- CreateHyperParameterTuningJob → trials run one by one as training jobs, summaries, counters, best job;
- CreateEndpoint/UpdateEndpoint → ``Creating``/``Updating`` → ``InService`` (or ``Failed``/rolled back), with the
  model served from a local process; sagemaker-runtime InvokeEndpoint (boto3) reaches that process, and so does
  ``invoke_endpoint()``;
- StopTrainingJob/StopHyperParameterTuningJob stop the running process;
- the actions moto lacks are added (``offline.moto_shims.SageMakerMissingActions``).

Work runs in background threads so that a state machine's poll loop sees the intermediate states;
``wait_idle()`` waits for all of it (tests, shutdown).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.common_types import TYPE_RESPONSE
from moto.sagemaker.exceptions import ResourceInUseException, ValidationError
from moto.sagemaker.models import FakeEndpoint, FakeTrainingJob, HyperParameterTuningJob, SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

from offline.local_sagemaker.endpoints import (
    EndpointHost,
    EndpointServices,
    InvocationResult,
    model_error_body,
    sample_jpeg,
)
from offline.local_sagemaker.progress import LogCallback, ProgressCallback, ProgressEvent
from offline.local_sagemaker.training import JobServices, RuleEvaluator, SpotInterruptions, TrainingRun
from offline.local_sagemaker.tuning import TuningRun
from offline.local_sagemaker.warm_interpreter import JobProcesses
from offline.moto_shims import MotoPatch, PatchSet, SageMakerMissingActions
from offline.moto_shims._base import patch_attribute

logger = logging.getLogger(__name__)

_original_create_training_job = SageMakerResponse.create_training_job
_original_create_tuning_job = SageMakerResponse.create_hyper_parameter_tuning_job
_original_create_endpoint = SageMakerResponse.create_endpoint
_original_delete_endpoint = SageMakerResponse.delete_endpoint
_original_runtime_setup = SageMakerRuntimeResponse.setup_class

DEFAULT_HEALTH_CHECK_REQUEST = (sample_jpeg(), "image/jpeg")
REPOSITORY_TRAINING_CODE = Path(__file__).resolve().parents[2] / "training_code"


class EndpointInvocationError(Exception):
    """The local endpoint answered with an error status (SageMaker's ModelError)."""

    def __init__(self, result: InvocationResult, endpoint_name: str) -> None:
        super().__init__(
            f"endpoint {endpoint_name} answered {result.status}: {result.body[:300].decode(errors='replace')}"
        )
        self.result = result


def _ignore_progress(event: ProgressEvent) -> None:
    return None


def _log_to_logger(resource: str, line: str) -> None:
    logger.debug("[%s] %s", resource, line)


def _refuse_existing(jobs: Any, name: str, kind: str) -> None:
    """SageMaker refuses a job name in use (moto would overwrite the job and run it twice)."""
    if name in jobs:
        raise ResourceInUseException(
            message=f"{kind} {name} already exists; job names are unique per account and region"
        )


class _RequestPatches(MotoPatch):
    """Wraps moto's create/delete actions so that every accepted request starts its local lifecycle."""

    def __init__(self, executor: LocalSageMaker) -> None:
        super().__init__()
        self.executor = executor

    def _patchers_to_start(self) -> list[Any]:
        executor = self.executor

        def create_training_job(response: SageMakerResponse) -> Any:
            request = json.loads(response.body)
            _refuse_existing(response.sagemaker_backend.training_jobs, request["TrainingJobName"], "Training job")
            result = _original_create_training_job(response)
            executor._start_training_job(response.sagemaker_backend, request)
            return result

        def create_hyper_parameter_tuning_job(response: SageMakerResponse) -> Any:
            request = json.loads(response.body)
            name = request["HyperParameterTuningJobName"]
            _refuse_existing(response.sagemaker_backend.hyper_parameter_tuning_jobs, name, "Hyperparameter tuning job")
            result = _original_create_tuning_job(response)
            executor._start_tuning_job(response.sagemaker_backend, request)
            return result

        def create_endpoint(response: SageMakerResponse) -> Any:
            backend = response.sagemaker_backend
            name = response._get_param("EndpointName")
            if name in backend.endpoints:
                raise ValidationError(
                    message=f'Cannot create already existing endpoint "{backend.endpoints[name].arn}".'
                )
            result = _original_create_endpoint(response)
            executor._start_endpoint(backend, backend.endpoints[name])
            return result

        def delete_endpoint(response: SageMakerResponse) -> Any:
            result = _original_delete_endpoint(response)
            executor.endpoints.delete(response.sagemaker_backend, response._get_param("EndpointName"))
            return result

        def invoke_endpoint(response: SageMakerRuntimeResponse) -> TYPE_RESPONSE:
            return executor._runtime_invoke(response)

        def setup_runtime_request(response: SageMakerRuntimeResponse, *args: Any, **kwargs: Any) -> Any:
            # moto decodes every request body as UTF-8; an InvokeEndpoint body is bytes (a JPEG), so keep it raw.
            kwargs["use_raw_body"] = True
            return _original_runtime_setup(response, *args, **kwargs)

        return [
            patch_attribute(SageMakerResponse, "create_training_job", create_training_job),
            patch_attribute(SageMakerResponse, "create_hyper_parameter_tuning_job", create_hyper_parameter_tuning_job),
            patch_attribute(SageMakerResponse, "create_endpoint", create_endpoint),
            patch_attribute(SageMakerResponse, "delete_endpoint", delete_endpoint),
            patch_attribute(SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint),
            patch_attribute(SageMakerRuntimeResponse, "setup_class", setup_runtime_request),
        ]


class LocalSageMaker:
    """The local SageMaker job executor and endpoint host, plugged into moto's SageMaker backend.

    ``work_dir``: where job folders (``<job>/opt_ml``, ``<job>/job.log``) and endpoint fleets are kept.
    ``progress``: called with every ``ProgressEvent`` (from worker threads). ``log``: called with
    ``(job or endpoint name, line)`` for every log line. ``rule_evaluator``: replaces the project's
    ``debug_rules.evaluate_rules`` (same signature) run in a subprocess. ``training_code_dir``: where
    ``debug_rules.py`` is looked for when the job's source folder has none. ``seed``: the tuner's sampling seed.
    ``health_check_request``: ``(body, content_type)`` sent to a new fleet before it serves (default: a small
    JPEG as ``image/jpeg``; None checks ``/ping`` only). ``spot_interruptions``: a predicate on job names; a
    managed-spot job it selects loses its capacity once, right after its first checkpoint, and restarts from the
    checkpoints synced to ``CheckpointConfig.S3Uri`` (SecondaryStatus Interrupted → Restarting → Training).
    ``stall_timeout_seconds``: a job whose process prints nothing for that long fails as stuck (default: never).
    ``rule_timeout_seconds``: a rule job running longer is stopped, and its rules end in Error saying so.
    ``failure_grace_seconds``: after one host of a job fails, how long the others get to end by themselves (their
    collectives break, and what they say helps) before they are killed.
    ``warm_interpreter``: fork each host's command and each model server from one interpreter that has imported
    torch already (warm_interpreter.py), instead of starting a fresh one that spends seconds importing it.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        progress: ProgressCallback | None = None,
        log: LogCallback | None = None,
        rule_evaluator: RuleEvaluator | None = None,
        training_code_dir: Path | None = REPOSITORY_TRAINING_CODE,
        seed: int = 0,
        python: str = sys.executable,
        health_check_request: tuple[bytes, str] | None = DEFAULT_HEALTH_CHECK_REQUEST,
        endpoint_startup_timeout_seconds: float = 180.0,
        spot_interruptions: SpotInterruptions | None = None,
        stall_timeout_seconds: float | None = None,
        rule_timeout_seconds: float = 900.0,
        failure_grace_seconds: float = 10.0,
        warm_interpreter: bool = True,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.seed = seed
        self._progress = progress or _ignore_progress
        environment = dict(os.environ)
        processes = JobProcesses(python, environment, warm=warm_interpreter)
        self.job_services = JobServices(
            work_root=self.work_dir / "jobs",
            report=self._report,
            log=log or _log_to_logger,
            rule_evaluator=rule_evaluator,
            fallback_code_dirs=(training_code_dir,) if training_code_dir else (),
            python=python,
            spot_interruptions=spot_interruptions,
            stall_timeout_seconds=stall_timeout_seconds,
            rule_timeout_seconds=rule_timeout_seconds,
            failure_grace_seconds=failure_grace_seconds,
            base_environment=environment,
            processes=processes,
        )
        self.endpoints = EndpointHost(
            EndpointServices(
                work_root=self.work_dir,
                report=self._report,
                log=log or _log_to_logger,
                health_check_request=health_check_request,
                python=python,
                startup_timeout_seconds=endpoint_startup_timeout_seconds,
                base_environment=environment,
                processes=processes,
            )
        )
        self.training_runs: dict[str, TrainingRun] = {}
        self.tuning_runs: dict[str, TuningRun] = {}
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._threads_lock = threading.Lock()
        self._patches = PatchSet(_RequestPatches(self), SageMakerMissingActions(lifecycle=self))

    # --- install -------------------------------------------------------------------------------------------

    def install(self) -> LocalSageMaker:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._patches.install()
        atexit.register(self.endpoints.stop_all)
        return self

    def uninstall(self, timeout: float = 30.0) -> None:
        """Stop running jobs, wait for the workers, stop every served model, remove the patches."""
        for run in list(self.tuning_runs.values()):
            run.stop()
        for training in list(self.training_runs.values()):
            training.stop()
        try:
            self.wait_idle(timeout)
        finally:
            self.endpoints.stop_all()
            atexit.unregister(self.endpoints.stop_all)
            self._patches.uninstall()

    def __enter__(self) -> LocalSageMaker:
        return self.install()

    def __exit__(self, *exc_info: object) -> None:
        self.uninstall()

    # --- background work -----------------------------------------------------------------------------------

    def _report(self, event: ProgressEvent) -> None:
        try:
            self._progress(event)
        except Exception:  # a broken display must not break a job
            logger.exception("progress callback failed")

    def _spawn(self, name: str, work: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                work()
            except BaseException as error:
                logger.exception("local SageMaker work %s failed", name)
                self.errors.append(error)

        thread = threading.Thread(target=guarded, name=f"local-sagemaker-{name}", daemon=True)
        with self._threads_lock:
            self._threads.append(thread)
        thread.start()

    def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until no job, tuning job or endpoint change is running; TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._threads_lock:
                self._threads = [t for t in self._threads if t.is_alive()]
                running = list(self._threads)
            if not running:
                return
            for thread in running:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                thread.join(remaining)
                if thread.is_alive():
                    raise TimeoutError(f"local SageMaker still busy after {timeout} s: {thread.name}")

    # --- training and tuning -------------------------------------------------------------------------------

    def _new_training_run(self, backend: SageMakerModelBackend, request: dict[str, Any], **trial: Any) -> TrainingRun:
        job: FakeTrainingJob = backend.training_jobs[request["TrainingJobName"]]
        run = TrainingRun(job, request, self.job_services, **trial)
        self.training_runs[run.name] = run
        run.accept()
        return run

    def _start_training_job(self, backend: SageMakerModelBackend, request: dict[str, Any]) -> None:
        run = self._new_training_run(backend, request)
        self._spawn(run.name, run.run)

    def _create_trial(
        self, backend: SageMakerModelBackend, request: dict[str, Any], trial: dict[str, Any]
    ) -> TrainingRun:
        backend.create_training_job(
            training_job_name=request["TrainingJobName"],
            hyper_parameters=dict(request["HyperParameters"]),
            algorithm_specification=json.loads(json.dumps(request["AlgorithmSpecification"])),
            role_arn=request.get("RoleArn"),
            input_data_config=request.get("InputDataConfig"),
            output_data_config=request["OutputDataConfig"],
            resource_config=request.get("ResourceConfig"),
            vpc_config=request.get("VpcConfig"),
            stopping_condition=request.get("StoppingCondition"),
            tags=[],
            enable_network_isolation=bool(request.get("EnableNetworkIsolation", False)),
            enable_inter_container_traffic_encryption=bool(request.get("EnableInterContainerTrafficEncryption", False)),
            enable_managed_spot_training=bool(request.get("EnableManagedSpotTraining", False)),
            checkpoint_config=request.get("CheckpointConfig"),
            debug_hook_config=None,
            debug_rule_configurations=None,
            tensor_board_output_config=None,
            experiment_config=None,
        )
        return self._new_training_run(backend, request, **trial)

    def _start_tuning_job(self, backend: SageMakerModelBackend, request: dict[str, Any]) -> None:
        tuning_job: HyperParameterTuningJob = backend.hyper_parameter_tuning_jobs[
            request["HyperParameterTuningJobName"]
        ]
        run = TuningRun(backend, tuning_job, request, self.job_services, seed=self.seed, start_trial=self._create_trial)
        self.tuning_runs[run.name] = run
        run.accept()
        self._spawn(run.name, run.run)

    # --- SageMakerLifecycle (for the actions moto lacks) ----------------------------------------------------

    def update_endpoint(
        self,
        backend: SageMakerModelBackend,
        endpoint: FakeEndpoint,
        endpoint_config_name: str,
        deployment_config: dict[str, Any] | None,
    ) -> None:
        work = self.endpoints.accept_update(backend, endpoint, endpoint_config_name, deployment_config)
        self._spawn(f"{endpoint.endpoint_name}-update", work)

    def stop_training_job(self, backend: SageMakerModelBackend, job: FakeTrainingJob) -> None:
        run = self.training_runs.get(job.training_job_name)
        if run is None:
            job.training_job_status = "Stopped"
            return
        run.stop()

    def stop_tuning_job(self, backend: SageMakerModelBackend, tuning_job: HyperParameterTuningJob) -> None:
        run = self.tuning_runs.get(tuning_job.hyper_parameter_tuning_job_name)
        if run is None:
            tuning_job.hyper_parameter_tuning_job_status = "Stopped"
            return
        run.stop()

    # --- endpoints -----------------------------------------------------------------------------------------

    def _start_endpoint(self, backend: SageMakerModelBackend, endpoint: FakeEndpoint) -> None:
        self._spawn(f"{endpoint.endpoint_name}-create", self.endpoints.accept_create(backend, endpoint))

    def invoke_endpoint(
        self,
        endpoint_name: str,
        body: bytes,
        content_type: str,
        accept: str = "application/json",
        *,
        account: str = DEFAULT_ACCOUNT_ID,
        region: str = "us-east-1",
    ) -> InvocationResult:
        """Send a request to the model serving the endpoint now; EndpointInvocationError on an error status."""
        fleet = self.endpoints.fleet(account, region, endpoint_name)
        if fleet is None:
            raise LookupError(f"endpoint {endpoint_name} has no model serving locally (not created, or it failed)")
        result = fleet.invoke(body, content_type, accept)
        if result.status != 200:
            raise EndpointInvocationError(result, endpoint_name)
        return result

    def _runtime_invoke(self, response: SageMakerRuntimeResponse) -> TYPE_RESPONSE:
        endpoint_name = urllib.parse.unquote(response.path.split("/")[2])  # /endpoints/<name>/invocations
        fleet = self.endpoints.fleet(response.current_account, response.region, endpoint_name)
        if fleet is None:
            message = f"Endpoint {endpoint_name} of account {response.current_account} not found."
            return 400, {"status": "400", "x-amzn-ErrorType": "ValidationError"}, json.dumps({"message": message})
        body = response.raw_body if isinstance(response.raw_body, bytes) else str(response.raw_body or "").encode()
        result = fleet.invoke(
            body,
            response.headers.get("Content-Type") or "application/json",
            response.headers.get("Accept") or "application/json",
        )
        if result.status != 200:
            # moto takes the status of a tuple response from its "status" header, not from the tuple.
            return 424, {"status": "424", "x-amzn-ErrorType": "ModelError"}, model_error_body(result, endpoint_name)
        headers = {"Content-Type": result.content_type, "x-Amzn-Invoked-Production-Variant": result.variant}
        return 200, headers, result.body
