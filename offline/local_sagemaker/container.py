"""The SageMaker training container contract, reproduced on this machine.

What the SageMaker training toolkit does inside the PyTorch container, and the script relies on:
- hyperparameters arrive JSON-encoded (the SDK's encoding); the toolkit decodes each value (falling back to the
  raw string), drops the ``sagemaker_*`` ones, passes the rest as ``--name value`` (sorted; ``-n`` for a one-letter
  name; a dict becomes ``k=v,k=v``), and exposes them as ``SM_HPS`` (JSON) and ``SM_HP_<NAME>``;
- ``/opt/ml`` holds ``input/config/*.json``, ``input/data/<channel>/``, ``model/``, ``output/data/``,
  ``output/failure``; ``SM_CHANNEL_<NAME>``, ``SM_MODEL_DIR``, ``SM_OUTPUT_DATA_DIR``, ``SM_CHANNELS`` point there;
- Debugger reads ``debughookconfig.json`` (``LocalPath``, ``HookParameters``, ``CollectionConfigurations``);
  ``SMDEBUG_CONFIG_FILE_PATH`` points smdebug at it outside ``/opt/ml``;
- metrics are read from the log by the job's ``MetricDefinitions`` regexes (first group, as a float);
- checkpoints go to ``CheckpointConfig.LocalPath`` (``/opt/ml/checkpoints``), which exists only for a job with a
  CheckpointConfig; locally that folder is given as ``SM_CHECKPOINT_DIR`` (a variable SageMaker itself does not
  set, read by the training code when ``/opt/ml/checkpoints`` is absent), and only for such a job;
- a failed job's ``FailureReason`` is ``AlgorithmError: <output/failure>`` when the script wrote that file, else
  the toolkit's ``ExecuteUserScriptError`` with the exit code and the end of stderr;
- a job with ``ResourceConfig.InstanceCount`` N runs on hosts ``algo-1`` … ``algo-N``, each with its own ``/opt/ml``
  (locally ``opt_ml`` for algo-1, ``opt_ml-algo-k`` for the others), ``resourceconfig.json``, ``SM_HOSTS``,
  ``SM_CURRENT_HOST``, ``MASTER_ADDR`` and ``MASTER_PORT``; with the ``sagemaker_torch_distributed_enabled``
  hyperparameter (the SDK's ``torch_distributed``) each host runs ``torchrun --nnodes N --nproc_per_node <GPUs or 1>
  --master_addr … --master_port … --node_rank i program args``, otherwise one plain ``python program args`` per host.
  Locally the hosts are processes on this machine: the master is 127.0.0.1 on a free port (SageMaker: algo-1:7777;
  two local jobs must not share a port), and every host has one process, as on a CPU instance;
- a job with ``EnableNetworkIsolation`` has no network in its container and no AWS credentials (SageMaker still
  downloads the channels and uploads the output): locally its process gets no proxy or AWS credential variables, and
  ``network_isolation/sitecustomize.py`` refuses every connection and name lookup off the loopback
  (``isolate_network``).
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SAGEMAKER_HYPERPARAMETER_PREFIX = "sagemaker_"
FAILURE_REASON_LIMIT = 1024
CURRENT_HOST = "algo-1"
TORCH_DISTRIBUTED_HYPERPARAMETER = "sagemaker_torch_distributed_enabled"
LOOPBACK = "127.0.0.1"


def host_names(instance_count: int) -> list[str]:
    """SageMaker's names for the instances of a job, the first being the master."""
    return [f"algo-{index}" for index in range(1, max(1, instance_count) + 1)]


def torch_distributed(decoded: Mapping[str, Any]) -> bool:
    """Whether the toolkit starts torchrun: it tests the decoded value for truth, so a raw "False" counts as on."""
    return bool(decoded.get(TORCH_DISTRIBUTED_HYPERPARAMETER))


def decode_hyperparameters(encoded: Mapping[str, str]) -> dict[str, Any]:
    decoded: dict[str, Any] = {}
    for name, text in encoded.items():
        try:
            decoded[name] = json.loads(text)
        except (TypeError, ValueError):
            decoded[name] = text
    return decoded


def user_hyperparameters(decoded: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in decoded.items() if not name.startswith(SAGEMAKER_HYPERPARAMETER_PREFIX)}


def _argument_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return ",".join(f"{key}={item}" for key, item in sorted(value.items()))
    return str(value)


def command_line_arguments(hyperparameters: Mapping[str, Any]) -> list[str]:
    arguments: list[str] = []
    for name in sorted(hyperparameters):
        arguments += [f"--{name}" if len(name) > 1 else f"-{name}", _argument_value(hyperparameters[name])]
    return arguments


@dataclass(frozen=True)
class ContainerLayout:
    """The ``/opt/ml`` tree of one job, rooted in a local folder."""

    root: Path

    @property
    def config_dir(self) -> Path:
        return self.root / "input" / "config"

    @property
    def data_dir(self) -> Path:
        return self.root / "input" / "data"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.root / "output" / "data"

    @property
    def failure_file(self) -> Path:
        return self.root / "output" / "failure"

    @property
    def code_dir(self) -> Path:
        return self.root / "code"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def tensors_dir(self) -> Path:
        return self.root / "output" / "tensors"

    def channel_dir(self, channel: str) -> Path:
        return self.data_dir / channel

    def create(self, channels: list[str]) -> None:
        for folder in (self.config_dir, self.model_dir, self.output_data_dir, self.code_dir, self.checkpoint_dir):
            folder.mkdir(parents=True, exist_ok=True)
        for channel in channels:
            self.channel_dir(channel).mkdir(parents=True, exist_ok=True)


def debug_hook_config_json(debug_hook_config: Mapping[str, Any], local_path: Path) -> dict[str, Any]:
    """The debughookconfig.json SageMaker writes for a job's DebugHookConfig, with tensors kept at ``local_path``."""
    return {
        "LocalPath": str(local_path),
        "HookParameters": dict(debug_hook_config.get("HookParameters") or {}),
        "CollectionConfigurations": [dict(c) for c in debug_hook_config.get("CollectionConfigurations") or []],
    }


def container_environment(
    layout: ContainerLayout,
    *,
    program: str,
    hyperparameters: Mapping[str, Any],
    channels: list[str],
    job_name: str,
    job_environment: Mapping[str, str],
    debug_config_file: Path | None,
    checkpoint_dir: Path | None = None,
    hosts: list[str] | None = None,
    current_host: str = CURRENT_HOST,
    master_port: int | None = None,
) -> dict[str, str]:
    """The environment the toolkit gives the training script on ``current_host`` (the ``SM_*`` variables)."""
    environment = {
        "SM_MODEL_DIR": str(layout.model_dir),
        "SM_OUTPUT_DIR": str(layout.output_dir),
        "SM_OUTPUT_DATA_DIR": str(layout.output_data_dir),
        "SM_INPUT_DIR": str(layout.root / "input"),
        "SM_INPUT_CONFIG_DIR": str(layout.config_dir),
        "SM_CHANNELS": json.dumps(sorted(channels)),
        "SM_HPS": json.dumps(dict(hyperparameters)),
        "SM_USER_ARGS": json.dumps(command_line_arguments(hyperparameters)),
        "SM_USER_ENTRY_POINT": program,
        "SM_MODULE_DIR": str(layout.code_dir),
        "SM_CURRENT_HOST": current_host,
        "SM_HOSTS": json.dumps(hosts or [CURRENT_HOST]),
        "SM_NUM_GPUS": "0",
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        # TRAINING_JOB_NAME is left out on purpose: it makes smdebug skip its end-of-training marker, which on
        # SageMaker the platform replaces by telling the rule jobs; locally the rules need the marker.
        "SM_TRAINING_JOB_NAME": job_name,
        "PYTHONUNBUFFERED": "1",
    }
    for channel in channels:
        environment[f"SM_CHANNEL_{channel.upper()}"] = str(layout.channel_dir(channel))
    for name, value in hyperparameters.items():
        environment[f"SM_HP_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    if debug_config_file is not None:
        environment["SMDEBUG_CONFIG_FILE_PATH"] = str(debug_config_file)
    if checkpoint_dir is not None:
        environment["SM_CHECKPOINT_DIR"] = str(checkpoint_dir)
    if master_port is not None:
        # The toolkit sets both for every runner; torchrun is given them on its command line too.
        environment |= {"MASTER_ADDR": LOOPBACK, "MASTER_PORT": str(master_port)}
    python_path = [str(layout.code_dir), os.environ.get("PYTHONPATH", "")]
    environment["PYTHONPATH"] = os.pathsep.join(part for part in python_path if part)
    return {**environment, **job_environment}


NETWORK_ISOLATION_BOOTSTRAP = Path(__file__).with_name("network_isolation")
# What would let an isolated job reach a network or AWS anyway: proxies (any case), and credentials.
NETWORK_VARIABLES = frozenset(
    {"HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "ALL_PROXY", "NO_PROXY", "WS_PROXY", "WSS_PROXY"}
)
AWS_CREDENTIAL_VARIABLES = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    }
)


def isolate_network(environment: Mapping[str, str]) -> dict[str, str]:
    """The process environment of a job with EnableNetworkIsolation: no proxies, no AWS credentials, and the
    bootstrap that blocks the network first on PYTHONPATH (it runs before the script, in every Python process)."""
    isolated = {
        name: value
        for name, value in environment.items()
        if name.upper() not in NETWORK_VARIABLES and name not in AWS_CREDENTIAL_VARIABLES
    }
    python_path = [str(NETWORK_ISOLATION_BOOTSTRAP), isolated.get("PYTHONPATH", "")]
    isolated["PYTHONPATH"] = os.pathsep.join(part for part in python_path if part)
    return isolated


def training_command(
    python: str,
    program: str,
    hyperparameters: Mapping[str, Any],
    *,
    distributed: bool = False,
    hosts: list[str] | None = None,
    current_host: str = CURRENT_HOST,
    master_port: int | None = None,
) -> list[str]:
    """The command one host runs: the script, or torchrun starting it (the toolkit's TorchDistributedRunner)."""
    script = [program, *command_line_arguments(hyperparameters)]
    if not distributed:
        return [python, "-u", *script]
    hosts = hosts or [CURRENT_HOST]
    if master_port is None:
        raise ValueError("a torchrun launch needs the master's port")
    # The toolkit passes the master and node rank only with several hosts; locally they always go, because a
    # single-node torchrun would otherwise take its default port 29500 and two local jobs would collide on it.
    launcher = ["-m", "torch.distributed.run", "--nnodes", str(len(hosts)), "--nproc_per_node", "1"]
    rendezvous = ["--master_addr", LOOPBACK, "--master_port", str(master_port)]
    return [python, "-u", *launcher, *rendezvous, "--node_rank", str(hosts.index(current_host)), *script]


@dataclass
class MetricReader:
    """Applies a job's MetricDefinitions to each log line; keeps the last value of every metric."""

    definitions: list[dict[str, str]]
    latest: dict[str, tuple[float, datetime]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._compiled = [(d["Name"], re.compile(d["Regex"])) for d in self.definitions]

    def read(self, line: str) -> dict[str, float]:
        found: dict[str, float] = {}
        for name, pattern in self._compiled:
            match = pattern.search(line)
            if match is None:
                continue
            try:
                value = float(match.group(1))
            except (IndexError, ValueError):
                continue  # SageMaker skips a match it cannot read as a number
            found[name] = value
            self.latest[name] = (value, datetime.now(UTC))
        return found

    def final_metric_data_list(self) -> list[dict[str, Any]]:
        return [
            {"MetricName": name, "Value": value, "Timestamp": timestamp}
            for name, (value, timestamp) in self.latest.items()
        ]


def killed_by(exit_code: int) -> str | None:
    """What ended a process that a signal ended (a negative exit code), else None."""
    if exit_code >= 0:
        return None
    try:
        return f"the process was killed by {signal.Signals(-exit_code).name}"
    except ValueError:
        return f"the process was killed by signal {-exit_code}"


def failure_reason(
    layout: ContainerLayout,
    exit_code: int,
    stderr_tail: list[str],
    command: list[str],
    host: str | None = None,
    limit: int = FAILURE_REASON_LIMIT,
) -> str:
    """``host``: the instance of a multi-instance job whose process failed first, named in the reason. A process
    ended by a signal (the kernel's OOM killer, a lost instance) says which."""
    prefix = "AlgorithmError: " + (f"[{host}] " if host else "")
    signal_note = killed_by(exit_code)
    if signal_note:
        stderr_tail = [*stderr_tail, signal_note]
    if layout.failure_file.is_file():
        reason = prefix + layout.failure_file.read_text(errors="replace").strip()
    else:
        message = "\n".join(stderr_tail).strip() or "(no output on stderr)"
        reason = prefix + (
            f'ExecuteUserScriptError:\nExitCode {exit_code}\nErrorMessage "{message}"\n'
            f'Command "{" ".join(command[:1] + command[2:])}", exit code: {exit_code}'
        )
    if len(reason) > limit:
        reason = reason[: limit - 3] + "..."
    return reason
