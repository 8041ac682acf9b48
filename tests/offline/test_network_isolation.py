"""EnableNetworkIsolation in the local SageMaker: the job's process has no network, and the real training code still
trains from its pinned weights, which come through the pretrained channel; without the channel it fails saying why.

No test here reaches a network: every address tried is refused inside the job (TEST-NET-1, an .invalid name), with
a short timeout in case the guard were missing.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from offline_moto_builders import REGION, tarball

from offline.initial_weights import StandInFile
from offline.local_sagemaker import LocalSageMaker
from offline.local_sagemaker.container import isolate_network
from offline.synthetic_dataset import write_dataset_zip
from pipeline.common.metric_definitions import METRIC_DEFINITIONS
from pipeline.common.training_code_bundle import build_bundle

pytestmark = pytest.mark.usefixtures("aws")

TRAINING_CODE = Path(__file__).resolve().parents[2] / "training_code"
BUCKET = "data"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"

# Run inside the job: what an isolated container allows and refuses. Asserts fail the job with the reason.
PROBE = """
    import errno, json, multiprocessing, os, pathlib, socket, urllib.error, urllib.request

    socket.setdefaulttimeout(3)  # were the guard missing, no test would hang on the network
    found = {"proxy": os.environ.get("HTTPS_PROXY"), "aws_key": os.environ.get("AWS_ACCESS_KEY_ID")}
    try:
        socket.create_connection(("192.0.2.1", 443))
    except OSError as error:
        found["connect"] = [error.errno == errno.ENETUNREACH, str(error)]
    try:
        socket.getaddrinfo("download.pytorch.invalid", 443)
    except socket.gaierror as error:
        found["resolve"] = [error.errno == socket.EAI_AGAIN, str(error)]
    try:
        urllib.request.urlopen("https://download.pytorch.invalid/models/resnet18-f37072fd.pth", timeout=3)
    except urllib.error.URLError as error:
        found["download"] = str(error.reason)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.sendto(b"x", ("192.0.2.1", 53))
    except OSError as error:
        found["udp"] = error.errno == errno.ENETUNREACH
    # What stays: AF_UNIX sockets (multiprocessing, DataLoader workers) and the loopback
    left, right = socket.socketpair()
    left.sendall(b"ping")
    found["unix"] = right.recv(4).decode()
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    client.sendall(b"loop")
    found["loopback"] = accepted.recv(4).decode()

    def child_connects(queue):
        try:
            socket.create_connection(("192.0.2.1", 80), timeout=3)
            queue.put("reached the network")
        except OSError as error:
            queue.put(str(error))

    if __name__ == "__main__":
        queue = multiprocessing.get_context("spawn").Queue()
        process = multiprocessing.get_context("spawn").Process(target=child_connects, args=(queue,))
        process.start()
        found["spawned_child"] = queue.get(timeout=60)
        process.join()
        pathlib.Path(os.environ["SM_MODEL_DIR"], "found.json").write_text(json.dumps(found))
"""


def _upload(key: str, body: bytes) -> str:
    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key=key, Body=body)
    return f"s3://{BUCKET}/{key}"


def _channel(name: str, uri: str) -> dict[str, Any]:
    return {"ChannelName": name, "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}}}


def _job(name: str, program: str, code_uri: str, channels: list[dict[str, Any]], **values: Any) -> dict[str, Any]:
    hyperparameters = {"sagemaker_program": program, "sagemaker_submit_directory": code_uri} | values
    return {
        "TrainingJobName": name,
        "HyperParameters": {key: json.dumps(value) for key, value in hyperparameters.items()},
        "AlgorithmSpecification": {
            "TrainingImage": "pytorch",
            "TrainingInputMode": "File",
            "MetricDefinitions": [dict(d) for d in METRIC_DEFINITIONS],
        },
        "RoleArn": ROLE,
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/jobs"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalSageMaker]:
    # The machine has a proxy and AWS credentials (the executor takes its environment when it is created)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    with LocalSageMaker(tmp_path / "work") as executor:
        yield executor
    assert executor.errors == []


def _found(name: str) -> dict[str, Any]:
    import io
    import tarfile

    artifact = boto3.client("sagemaker", region_name=REGION).describe_training_job(TrainingJobName=name)
    bucket, key = artifact["ModelArtifacts"]["S3ModelArtifacts"].removeprefix("s3://").split("/", 1)
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        return json.load(archive.extractfile("found.json"))  # type: ignore[arg-type]


def test_an_isolated_job_has_no_network_but_keeps_unix_sockets_and_the_loopback(local: LocalSageMaker) -> None:
    # GIVEN a job with EnableNetworkIsolation whose script probes the network
    code = _upload("code/probe.tar.gz", tarball({"probe.py": textwrap.dedent(PROBE)}))
    data = _channel("training", _upload("validated/dogs.zip", b"zip"))
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    sagemaker.create_training_job(**_job("probe-isolated", "probe.py", code, [data]), EnableNetworkIsolation=True)

    local.wait_idle(120)

    # THEN it completed, and every way out was refused with the errors of a machine without a network
    job = sagemaker.describe_training_job(TrainingJobName="probe-isolated")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["EnableNetworkIsolation"] is True
    found = _found("probe-isolated")
    assert found["connect"][0] is True and "may not reach 192.0.2.1:443" in found["connect"][1]
    assert found["resolve"][0] is True and "may not reach download.pytorch.invalid" in found["resolve"][1]
    assert "Temporary failure in name resolution" in found["download"]
    assert found["udp"] is True
    assert "EnableNetworkIsolation" in found["spawned_child"]  # a process the job starts is isolated too
    # AND the job got no proxy and no AWS credentials, but AF_UNIX sockets and the loopback work
    assert (found["proxy"], found["aws_key"]) == (None, None)
    assert (found["unix"], found["loopback"]) == ("ping", "loop")


def test_a_job_without_isolation_keeps_the_machines_environment(local: LocalSageMaker) -> None:
    # (only the environment is compared: a job that may use the network would really try to reach it)
    environment = isolate_network({"HTTPS_PROXY": "p", "https_proxy": "p", "AWS_ACCESS_KEY_ID": "k", "PATH": "/bin"})
    assert set(environment) == {"PATH", "PYTHONPATH"}
    assert environment["PYTHONPATH"].endswith(os.path.join("local_sagemaker", "network_isolation"))

    script = """
        import json, os, pathlib
        found = {"proxy": os.environ.get("HTTPS_PROXY"), "path": os.environ.get("PYTHONPATH", "")}
        pathlib.Path(os.environ["SM_MODEL_DIR"], "found.json").write_text(json.dumps(found))
    """
    code = _upload("code/env.tar.gz", tarball({"env.py": textwrap.dedent(script)}))
    data = _channel("training", _upload("validated/dogs.zip", b"zip"))
    boto3.client("sagemaker", region_name=REGION).create_training_job(**_job("env-open", "env.py", code, [data]))
    local.wait_idle(120)

    found = _found("env-open")
    assert found["proxy"] == "http://proxy.invalid:3128" and "network_isolation" not in found["path"]


def test_the_trials_of_an_isolated_tuning_job_are_isolated(local: LocalSageMaker) -> None:
    code = _upload("code/probe.tar.gz", tarball({"probe.py": textwrap.dedent(PROBE)}))
    definition = _job("unused", "probe.py", code, [_channel("training", _upload("validated/dogs.zip", b"zip"))])
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    sagemaker.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="hpo-isolated",
        HyperParameterTuningJobConfig={
            "Strategy": "Random",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "validation:accuracy"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 1, "MaxParallelTrainingJobs": 1},
            "ParameterRanges": {
                "ContinuousParameterRanges": [{"Name": "learning_rate", "MinValue": "0.01", "MaxValue": "0.1"}]
            },
        },
        TrainingJobDefinition={
            "StaticHyperParameters": definition["HyperParameters"],
            **{key: definition[key] for key in ("AlgorithmSpecification", "RoleArn", "InputDataConfig")},
            **{key: definition[key] for key in ("OutputDataConfig", "ResourceConfig", "StoppingCondition")},
            "EnableNetworkIsolation": True,
        },
    )
    local.wait_idle(180)

    (trial,) = sagemaker.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName="hpo-isolated")[
        "TrainingJobSummaries"
    ]
    job = sagemaker.describe_training_job(TrainingJobName=trial["TrainingJobName"])
    assert job["EnableNetworkIsolation"] is True
    assert "EnableNetworkIsolation" in _found(trial["TrainingJobName"])["connect"][1]


@pytest.fixture
def real_job(tmp_path: Path) -> dict[str, Any]:
    """The project's hpo.py as StartTuning bundles it, a tiny dataset, and the offline run's pinned stand-in file
    staged as `make stage-weights` stages the ImageNet file."""
    from offline.stage_weights import stage_weights_file

    dataset = write_dataset_zip(tmp_path / "dogs.zip", num_classes=2, counts=(8, 4, 4), image_size=32)
    s3 = boto3.client("s3", region_name=REGION)
    s3.upload_file(str(dataset), BUCKET, "validated/dogs.zip")
    code = _upload("code/sourcedir.tar.gz", build_bundle(TRAINING_CODE).archive)
    weights = StandInFile(tmp_path / "weights").result()
    staged = stage_weights_file(s3, BUCKET, f"weights/{weights.name}", weights)
    fast = {"epochs": 1, "batch_size": 4, "image_size": 32, "num_threads": 1, "profiler": False, "debug_hook": False}
    return {"code": code, "weights_uri": staged.uri, "weights_file": weights.name, "hyperparameters": fast}


@pytest.mark.slow
def test_an_isolated_job_trains_from_the_channels_weights_and_without_them_fails_saying_why(
    local: LocalSageMaker, real_job: dict[str, Any]
) -> None:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    data = _channel("training", f"s3://{BUCKET}/validated/dogs.zip")
    pretrained = _channel("pretrained", real_job["weights_uri"])
    # GIVEN two isolated jobs that require pretrained weights (the default): one with the channel, one without
    for name, channels in (("with-weights", [data, pretrained]), ("without-weights", [data])):
        request = _job(name, "hpo.py", real_job["code"], channels, **real_job["hyperparameters"])
        sagemaker.create_training_job(**request, EnableNetworkIsolation=True)

    local.wait_idle(600)

    # THEN the first loaded the pinned file from its channel and trained, with no network at all
    job = sagemaker.describe_training_job(TrainingJobName="with-weights")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    log = (local.work_dir / "jobs" / "with-weights" / "job.log").read_text()
    assert f"initial weights: pretrained {real_job['weights_file']} (SHA-256 matches" in log
    assert "EnableNetworkIsolation: the job runs without network access" in log
    assert {m["MetricName"] for m in job["FinalMetricDataList"]} >= {"validation:accuracy", "test:accuracy"}
    # AND the second failed before training, never from random init, its FailureReason saying what to stage
    failed = sagemaker.describe_training_job(TrainingJobName="without-weights")
    assert failed["TrainingJobStatus"] == "Failed"
    assert failed["FailureReason"].startswith(
        "AlgorithmError: pretrained weights asked for (weights=pretrained) but the job has no 'pretrained' input "
        "channel (SM_CHANNEL_PRETRAINED is not set)"
    )
    assert "make stage-weights STACK=<stack name>" in failed["FailureReason"]
    assert "epoch=" not in (local.work_dir / "jobs" / "without-weights" / "job.log").read_text()
