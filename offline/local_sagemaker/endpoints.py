"""Endpoints served locally: CreateEndpoint and UpdateEndpoint with real Creating/Updating lifecycles.

Each endpoint config's model (the first production variant's) is downloaded from S3, extracted, and served by
``model_server.py`` in a process of its own on 127.0.0.1. An update is blue/green: the new fleet starts beside
the old one and must answer ``/ping`` and a sample invocation, and no rollback alarm of the deployment config may
be in ALARM; only then does it replace the old fleet. Otherwise the new fleet is dropped, the endpoint returns to
InService on the old config with a FailureReason, and the old model keeps answering. A failed creation leaves
the endpoint Failed.
"""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moto.core.utils import utcnow
from moto.sagemaker.models import FakeEndpoint, SageMakerModelBackend
from PIL import Image

from offline.local_sagemaker import s3io
from offline.local_sagemaker.progress import LogCallback, ProgressCallback, ProgressEvent
from offline.local_sagemaker.s3io import worker_client
from offline.local_sagemaker.warm_interpreter import JobProcesses, WarmProcess

logger = logging.getLogger(__name__)

MODEL_SERVER = Path(__file__).with_name("model_server.py")
CONTAINER_MODEL_DIR = "/opt/ml/model"
HEALTH_CHECK_ACCEPT = "application/json"


def sample_jpeg() -> bytes:
    """A small image for the health check's sample invocation."""
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (120, 90, 60)).save(buffer, format="JPEG")
    return buffer.getvalue()


class EndpointUnhealthy(Exception):
    """A new fleet did not start or failed its health check."""


@dataclass(frozen=True)
class InvocationResult:
    status: int
    body: bytes
    content_type: str
    variant: str


@dataclass
class Fleet:
    """One model server process serving one endpoint config."""

    endpoint_config_name: str
    variant_name: str
    process: subprocess.Popen[str] | WarmProcess
    port: int
    folder: Path

    def invoke(self, body: bytes, content_type: str, accept: str, timeout: float = 120.0) -> InvocationResult:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/invocations",
            data=body,
            method="POST",
            headers={"Content-Type": content_type, "Accept": accept},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return InvocationResult(
                    response.status, response.read(), response.headers.get("Content-Type", accept), self.variant_name
                )
        except urllib.error.HTTPError as error:
            return InvocationResult(
                error.code, error.read(), error.headers.get("Content-Type", "text/plain"), self.variant_name
            )

    def ping(self, timeout: float = 10.0) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ping", timeout=timeout) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class EndpointServices:
    work_root: Path
    report: ProgressCallback
    log: LogCallback
    health_check_request: tuple[bytes, str] | None
    python: str = sys.executable
    startup_timeout_seconds: float = 180.0
    base_environment: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    # How model servers start: forked from a warm interpreter (torch already imported) or as subprocesses.
    processes: JobProcesses = field(default_factory=lambda: JobProcesses(sys.executable, os.environ, warm=False))
    fleets: dict[tuple[str, str, str], Fleet] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _endpoint_key(backend: SageMakerModelBackend, endpoint_name: str) -> tuple[str, str, str]:
    return (backend.account_id, backend.region_name, endpoint_name)


class EndpointHost:
    """Starts, checks, swaps and stops the fleets behind the endpoints of moto's SageMaker backends."""

    def __init__(self, services: EndpointServices) -> None:
        self.services = services

    def _report(self, endpoint: str, message: str, status: str | None = None) -> None:
        self.services.log(endpoint, message)
        self.services.report(ProgressEvent("status", endpoint, message, status=status))

    # --- requests (run in the request thread; return the work for a worker thread) ---------------------------

    def accept_create(self, backend: SageMakerModelBackend, endpoint: FakeEndpoint) -> Callable[[], None]:
        endpoint.endpoint_status = "Creating"
        self._report(
            endpoint.endpoint_name, f"{endpoint.endpoint_name}: Creating on {endpoint.endpoint_config_name}", "Creating"
        )
        return lambda: self._create(backend, endpoint)

    def accept_update(
        self,
        backend: SageMakerModelBackend,
        endpoint: FakeEndpoint,
        endpoint_config_name: str,
        deployment_config: dict[str, Any] | None,
    ) -> Callable[[], None]:
        config = backend.describe_endpoint_config(endpoint_config_name)
        endpoint.endpoint_status = "Updating"
        endpoint.failure_reason = None
        endpoint.pending_deployment_summary = {
            "EndpointConfigName": endpoint_config_name,
            "ProductionVariants": [
                {"VariantName": v["VariantName"], "DesiredInstanceCount": v.get("InitialInstanceCount", 1)}
                for v in config["ProductionVariants"]
            ],
            "StartTime": utcnow(),
        }
        endpoint.last_modified_time = utcnow()
        name, serving = endpoint.endpoint_name, endpoint.endpoint_config_name
        self._report(name, f"{name}: Updating from {serving} to {endpoint_config_name} (blue/green)", "Updating")
        return lambda: self._update(backend, endpoint, endpoint_config_name, deployment_config)

    def delete(self, backend: SageMakerModelBackend, endpoint_name: str) -> None:
        with self.services.lock:
            fleet = self.services.fleets.pop(_endpoint_key(backend, endpoint_name), None)
        if fleet is not None:
            fleet.stop()

    # --- lifecycles ------------------------------------------------------------------------------------------

    def _create(self, backend: SageMakerModelBackend, endpoint: FakeEndpoint) -> None:
        name = endpoint.endpoint_name
        try:
            fleet = self._start_fleet(backend, name, endpoint.endpoint_config_name)
        except Exception as error:  # any failure leaves the endpoint Failed, never stuck in Creating
            endpoint.failure_reason = str(error)[:1024]
            endpoint.endpoint_status = "Failed"
            endpoint.last_modified_time = utcnow()
            self._report(name, f"{name}: Failed ({error})", "Failed")
            return
        with self.services.lock:
            self.services.fleets[_endpoint_key(backend, name)] = fleet
        endpoint.endpoint_status = "InService"
        endpoint.last_modified_time = utcnow()
        self._report(
            name, f"{name}: InService on {endpoint.endpoint_config_name} (127.0.0.1:{fleet.port})", "InService"
        )

    def _update(
        self,
        backend: SageMakerModelBackend,
        endpoint: FakeEndpoint,
        config_name: str,
        deployment_config: dict[str, Any] | None,
    ) -> None:
        name = endpoint.endpoint_name
        try:
            green = self._start_fleet(backend, name, config_name)
        except Exception as error:  # any failure rolls back, never leaves the endpoint stuck in Updating
            self._roll_back(endpoint, config_name, f"the new fleet failed its health check: {error}")
            return
        try:
            alarm = self._alarm_in_alarm_state(backend, deployment_config)
        except Exception as error:
            green.stop()
            self._roll_back(endpoint, config_name, f"the rollback alarms could not be read: {error}")
            return
        if alarm is not None:
            green.stop()
            self._roll_back(endpoint, config_name, f"rollback alarm {alarm} is in ALARM")
            return
        with self.services.lock:
            blue = self.services.fleets.get(_endpoint_key(backend, name))
            self.services.fleets[_endpoint_key(backend, name)] = green
        if blue is not None:
            blue.stop()
        config = backend.describe_endpoint_config(config_name)
        endpoint.endpoint_config_name = config_name
        endpoint.production_variants = endpoint._process_production_variants(config["ProductionVariants"])
        endpoint.pending_deployment_summary = None
        endpoint.endpoint_status = "InService"
        endpoint.last_modified_time = utcnow()
        self._report(name, f"{name}: InService on {config_name} (new fleet 127.0.0.1:{green.port})", "InService")

    def _roll_back(self, endpoint: FakeEndpoint, config_name: str, why: str) -> None:
        endpoint.failure_reason = f"Update to {config_name} rolled back: {why}"[:1024]
        endpoint.pending_deployment_summary = None
        endpoint.endpoint_status = "InService"
        endpoint.last_modified_time = utcnow()
        self._report(
            endpoint.endpoint_name,
            f"{endpoint.endpoint_name}: rolled back to {endpoint.endpoint_config_name} ({why})",
            "InService",
        )

    def _alarm_in_alarm_state(
        self, backend: SageMakerModelBackend, deployment_config: dict[str, Any] | None
    ) -> str | None:
        alarms = [
            a["AlarmName"] for a in ((deployment_config or {}).get("AutoRollbackConfiguration") or {}).get("Alarms", [])
        ]
        if not alarms:
            return None
        cloudwatch = worker_client("cloudwatch", backend.region_name)
        for alarm in cloudwatch.describe_alarms(AlarmNames=alarms)["MetricAlarms"]:
            if alarm["StateValue"] == "ALARM":
                return str(alarm["AlarmName"])
        return None

    # --- fleets ----------------------------------------------------------------------------------------------

    def _model_of(self, backend: SageMakerModelBackend, config_name: str) -> tuple[str, dict[str, Any]]:
        variants = backend.endpoint_configs[config_name].production_variants
        if len(variants) > 1:
            self.services.log(config_name, f"{len(variants)} production variants; the local endpoint serves the first")
        variant = variants[0]
        model = backend._models[variant["ModelName"]]
        container = model.primary_container or (model.containers or [{}])[0]
        return variant["VariantName"], container

    def _start_fleet(self, backend: SageMakerModelBackend, endpoint_name: str, config_name: str) -> Fleet:
        folder = self.services.work_root / "endpoints" / endpoint_name / f"{config_name}-{utcnow():%H%M%S%f}"
        model_dir = folder / "model"
        try:
            variant, container = self._model_of(backend, config_name)
            s3 = worker_client("s3", backend.region_name)
            archive = s3io.download_file(s3, container["ModelDataUrl"], folder / "model.tar.gz")
            s3io.extract_tarball(archive, model_dir)
            environment = container.get("Environment") or {}
            code_dir = self._code_dir(s3, environment.get("SAGEMAKER_SUBMIT_DIRECTORY"), model_dir, folder)
        except Exception as error:
            raise EndpointUnhealthy(f"could not fetch the model for {config_name}: {error}") from error
        program = environment.get("SAGEMAKER_PROGRAM", "inference.py")
        log_path = folder / "server.log"
        command = [
            self.services.python,
            "-u",
            str(MODEL_SERVER),
            "--model-dir",
            str(model_dir),
            "--code-dir",
            str(code_dir),
            "--program",
            program,
        ]
        with log_path.open("a") as stderr_log:
            process = self.services.processes.start(
                command, code_dir, {**self.services.base_environment, **environment}, stderr=stderr_log
            )
        if isinstance(process, WarmProcess):
            self.services.log(config_name, f"model server pid {process.pid}: forked from the warm interpreter")
        port = self._wait_ready(process, log_path)
        fleet = Fleet(config_name, variant, process, port, folder)
        try:
            self._health_check(fleet)
        except Exception as error:
            fleet.stop()
            raise EndpointUnhealthy(str(error)) from error
        return fleet

    def _code_dir(self, s3: Any, submit_directory: str | None, model_dir: Path, folder: Path) -> Path:
        if submit_directory and submit_directory.startswith("s3://"):
            archive = s3io.download_file(s3, submit_directory, folder / "sourcedir.tar.gz")
            s3io.extract_tarball(archive, folder / "code")
            return folder / "code"
        if submit_directory and submit_directory.startswith(CONTAINER_MODEL_DIR):
            return model_dir / submit_directory[len(CONTAINER_MODEL_DIR) :].lstrip("/")
        return model_dir / "code"

    def _wait_ready(self, process: subprocess.Popen[str] | WarmProcess, log_path: Path) -> int:
        lines: queue.Queue[str] = queue.Queue()

        def read_stdout() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line.strip())
            lines.put("EXITED")

        threading.Thread(target=read_stdout, daemon=True).start()
        try:
            first = lines.get(timeout=self.services.startup_timeout_seconds)
        except queue.Empty:
            process.kill()
            raise EndpointUnhealthy(
                f"the model server did not start within {self.services.startup_timeout_seconds:.0f} s"
            ) from None
        if first.startswith("READY "):
            return int(first.split()[1])
        process.wait(timeout=30)
        tail = " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-3:])
        raise EndpointUnhealthy(f"{first.removeprefix('FAILED ')} [{tail}]" if tail else first)

    def _health_check(self, fleet: Fleet) -> None:
        status = fleet.ping()
        if status != 200:
            raise EndpointUnhealthy(f"/ping answered {status}")
        if self.services.health_check_request is None:
            return
        body, content_type = self.services.health_check_request
        result = fleet.invoke(body, content_type, HEALTH_CHECK_ACCEPT)
        if result.status != 200:
            answer = result.body[:300].decode(errors="replace")
            raise EndpointUnhealthy(f"the sample invocation ({content_type}) answered {result.status}: {answer}")

    # --- invocations -----------------------------------------------------------------------------------------

    def fleet(self, account: str, region: str, endpoint_name: str) -> Fleet | None:
        with self.services.lock:
            return self.services.fleets.get((account, region, endpoint_name))

    def stop_all(self) -> None:
        with self.services.lock:
            fleets = list(self.services.fleets.values())
            self.services.fleets.clear()
        for fleet in fleets:
            fleet.stop()


def model_error_body(result: InvocationResult, endpoint_name: str) -> str:
    return json.dumps(
        {
            "message": f"Received client error ({result.status}) from primary with message "
            f'"{result.body[:500].decode(errors="replace")}". See the local server log for endpoint {endpoint_name}.',
            "OriginalStatusCode": result.status,
            "OriginalMessage": result.body[:500].decode(errors="replace"),
        }
    )
