"""Multi-instance jobs on the local SageMaker executor: one process per "host", as SageMaker runs one container per
instance, with torchrun on every host when the job asks for ``torch_distributed``.

Stand-in scripts written by the tests, so the outcome is known in advance; the real training code on two hosts is
tested in test_spot_interruption.py.
"""

from __future__ import annotations

import json
import re
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest
from offline_moto_builders import REGION, read_tarball, tarball

from offline.local_sagemaker import LocalSageMaker

pytestmark = pytest.mark.usefixtures("aws")

BUCKET = "data"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
TORCH_DISTRIBUTED = {"sagemaker_torch_distributed_enabled": "true", "sagemaker_instance_type": '"ml.m5.xlarge"'}

# Every host reports what its container gave it, the ranks meet over gloo, and each writes only its own files.
RANK_SCRIPT = """
    import json, os, pathlib, sys
    import torch, torch.distributed as dist

    config = json.loads(pathlib.Path(os.environ["SM_INPUT_CONFIG_DIR"], "resourceconfig.json").read_text())
    seen = {
        "current_host": os.environ["SM_CURRENT_HOST"],
        "hosts": json.loads(os.environ["SM_HOSTS"]),
        "resourceconfig": config,
        "rank": os.environ.get("RANK"),
        "world_size": os.environ.get("WORLD_SIZE"),
        "master": [os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")],
        "dataset": pathlib.Path(os.environ["SM_CHANNEL_TRAINING"], "dogs.zip").read_bytes().decode(),
        "aws_credentials": "AWS_ACCESS_KEY_ID" in os.environ,
    }
    dist.init_process_group("gloo")
    total = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(total)
    seen["sum_of_ranks"] = total.item()
    print(f"rank {dist.get_rank()} of {dist.get_world_size()} on {seen['current_host']}")
    name = "model" if dist.get_rank() == 0 else "extra"
    target = os.environ["SM_MODEL_DIR"] if dist.get_rank() == 0 else os.environ["SM_OUTPUT_DATA_DIR"]
    pathlib.Path(target, f"{name}.json").write_text(json.dumps(seen))
    dist.destroy_process_group()
"""

PLAIN_SCRIPT = """
    import json, os, pathlib
    host = os.environ["SM_CURRENT_HOST"]
    print(f"plain on {host}")
    pathlib.Path(os.environ["SM_MODEL_DIR"], f"{host}.json").write_text(json.dumps({"rank": os.environ.get("RANK")}))
"""

CLASHING_SCRIPT = """
    import os, pathlib
    pathlib.Path(os.environ["SM_MODEL_DIR"], "model.pth").write_text(os.environ["SM_CURRENT_HOST"])
"""

# The second host dies mid-run; the first would run for ten minutes if nothing ended it.
ONE_HOST_FAILS_SCRIPT = """
    import os, sys, time
    if os.environ["SM_CURRENT_HOST"] == "algo-2":
        time.sleep(1)
        print("RuntimeError: rank 1 lost its data shard", file=sys.stderr)
        sys.exit(7)
    print("rank 0 training", flush=True)
    time.sleep(600)
"""


def _upload(key: str, body: bytes) -> str:
    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key=key, Body=body)
    return f"s3://{BUCKET}/{key}"


def _create_job(name: str, script: str, *, hosts: int, distributed: bool, **extra: Any) -> None:
    code_uri = _upload(f"code/{name}/sourcedir.tar.gz", tarball({"train.py": textwrap.dedent(script)}))
    hyperparameters = {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": json.dumps(code_uri)}
    boto3.client("sagemaker", region_name=REGION).create_training_job(
        TrainingJobName=name,
        HyperParameters=hyperparameters | (TORCH_DISTRIBUTED if distributed else {}),
        AlgorithmSpecification={"TrainingImage": "pytorch", "TrainingInputMode": "File"},
        RoleArn=ROLE,
        InputDataConfig=[
            {
                "ChannelName": "training",
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/validated/dogs.zip"}
                },
            }
        ],
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/jobs/run-1"},
        ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": hosts, "VolumeSizeInGB": 5},
        StoppingCondition={"MaxRuntimeInSeconds": 300},
        **extra,
    )


def _describe(name: str) -> dict[str, Any]:
    return dict(boto3.client("sagemaker", region_name=REGION).describe_training_job(TrainingJobName=name))


def _archive(name: str, archive: str) -> dict[str, str]:
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=BUCKET, Key=f"jobs/run-1/{name}/output/{archive}")[
        "Body"
    ]
    return read_tarball(body.read())


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[LocalSageMaker]:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    _upload("validated/dogs.zip", b"zip-bytes")
    # A second's grace, not the default 10: two tests have a host outlive its failed peer until it is killed.
    with LocalSageMaker(tmp_path / "work", stall_timeout_seconds=120, failure_grace_seconds=1.0) as local:
        yield local
    assert local.errors == []


def test_two_hosts_run_torchrun_each_meet_over_gloo_and_their_outputs_are_merged(executor: LocalSageMaker) -> None:
    # GIVEN a 2-instance job asking for torch_distributed, under network isolation
    _create_job("ddp-2", RANK_SCRIPT, hosts=2, distributed=True, EnableNetworkIsolation=True)
    executor.wait_idle(120)
    job = _describe("ddp-2")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    # THEN each host ran torchrun with its own node rank, against one master on loopback
    run = executor.training_runs["ddp-2"]
    log = run.log_file.read_text()
    for rank, host in enumerate(("algo-1", "algo-2")):
        (command,) = [line for line in log.splitlines() if line.startswith(f"[{host}] $ ")]
        assert "-m torch.distributed.run --nnodes 2 --nproc_per_node 1 --master_addr 127.0.0.1" in command
        assert command.endswith(f"--node_rank {rank} train.py")
        assert f"[{host}] rank {rank} of 2 on {host}" in log
    # AND model.tar.gz holds rank 0's file, output.tar.gz rank 1's: every host's folders are aggregated
    rank0 = json.loads(_archive("ddp-2", "model.tar.gz")["model.json"])
    rank1 = json.loads(_archive("ddp-2", "output.tar.gz")["extra.json"])
    for rank, seen in enumerate((rank0, rank1)):
        host = f"algo-{rank + 1}"
        assert seen["current_host"] == host and seen["resourceconfig"]["current_host"] == host
        assert seen["hosts"] == seen["resourceconfig"]["hosts"] == ["algo-1", "algo-2"]
        assert (seen["rank"], seen["world_size"]) == (str(rank), "2")
        # AND both downloaded the channel, reached each other (1 + 2) and had no AWS credentials
        assert seen["dataset"] == "zip-bytes"
        assert seen["sum_of_ranks"] == 3.0
        assert seen["aws_credentials"] is False
    assert rank0["master"] == rank1["master"] and rank0["master"][0] == "127.0.0.1"
    # AND each host's output went to a CloudWatch stream of its own
    logs = boto3.client("logs", region_name=REGION)
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix="ddp-2/")
    by_host = {s["logStreamName"].split("/")[1].rsplit("-", 1)[0]: s["logStreamName"] for s in streams["logStreams"]}
    assert set(by_host) == {"algo-1", "algo-2"}
    for rank, host in enumerate(("algo-1", "algo-2")):
        events = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=by_host[host])
        messages = [event["message"] for event in events["events"]]
        assert f"rank {rank} of 2 on {host}" in messages
        assert f"rank {1 - rank} of 2 on algo-{2 - rank}" not in messages


def test_one_host_with_torch_distributed_still_runs_torchrun(executor: LocalSageMaker) -> None:
    # A multi-GPU instance asks for torch_distributed with one instance: the container still launches torchrun.
    _create_job("ddp-1", RANK_SCRIPT, hosts=1, distributed=True)
    executor.wait_idle(120)
    assert _describe("ddp-1")["TrainingJobStatus"] == "Completed"
    seen = json.loads(_archive("ddp-1", "model.tar.gz")["model.json"])
    assert (seen["rank"], seen["world_size"], seen["hosts"]) == ("0", "1", ["algo-1"])
    assert "[algo-1]" not in executor.training_runs["ddp-1"].log_file.read_text()


def test_two_hosts_without_torch_distributed_each_run_the_plain_script(executor: LocalSageMaker) -> None:
    # GIVEN 2 instances but no torch_distributed: the container runs one plain python per host, no ranks
    _create_job("plain-2", PLAIN_SCRIPT, hosts=2, distributed=False)
    executor.wait_idle(60)
    assert _describe("plain-2")["TrainingJobStatus"] == "Completed"
    model = _archive("plain-2", "model.tar.gz")
    assert {name: json.loads(text)["rank"] for name, text in model.items()} == {
        "algo-1.json": None,
        "algo-2.json": None,
    }
    log = executor.training_runs["plain-2"].log_file.read_text()
    assert "torch.distributed.run" not in log
    assert "each host runs its own copy of the script" in log


def test_hosts_writing_the_same_model_file_fail_the_job_naming_both(executor: LocalSageMaker) -> None:
    _create_job("clash-2", CLASHING_SCRIPT, hosts=2, distributed=False)
    executor.wait_idle(60)
    job = _describe("clash-2")
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"] == (
        "AlgorithmError: hosts algo-1 and algo-2 both wrote model/model.pth; SageMaker merges every host's folder "
        "into one archive, so only one rank (rank 0) may write each file"
    )
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET, Prefix="jobs/run-1/clash-2/")
    assert "model.tar.gz" not in str(listed)


def test_a_failing_host_fails_the_job_at_once_with_its_reason_and_ends_the_others(executor: LocalSageMaker) -> None:
    # GIVEN a 2-instance job whose second host exits 7 after a second while the first would run for 10 minutes
    started = time.monotonic()
    _create_job("fail-2", ONE_HOST_FAILS_SCRIPT, hosts=2, distributed=False)
    executor.wait_idle(120)
    job = _describe("fail-2")
    # THEN the job failed in seconds, not minutes, and the reason names the host and quotes its stderr
    assert time.monotonic() - started < 60
    assert job["TrainingJobStatus"] == "Failed"
    reason = job["FailureReason"]
    assert reason.startswith("AlgorithmError: [algo-2] ExecuteUserScriptError:\nExitCode 7")
    assert "RuntimeError: rank 1 lost its data shard" in reason
    # AND the first host, which would have trained on alone, was killed after the grace period, and says so
    assert reason.endswith("\nthen [algo-1] exited -9: the process was killed by SIGKILL")
    run = executor.training_runs["fail-2"]
    assert all(process.poll() is not None for process in run._processes.values())
    assert run._processes["algo-1"].returncode != 0


# The first host's rank prints its pid and would run for ten minutes; the second host's rank fails at once.
RANK_OUTLIVES_SCRIPT = """
    import os, sys, time
    if os.environ["SM_CURRENT_HOST"] == "algo-2":
        sys.exit(7)
    print(f"rank 0 pid {os.getpid()}", flush=True)
    time.sleep(600)
"""


def test_killing_a_torchrun_host_also_kills_the_ranks_it_started(executor: LocalSageMaker) -> None:
    # GIVEN a 2-instance torch_distributed job whose second host fails while the first host's rank trains on;
    # torchrun starts each rank in a session of its own, so killing torchrun's process group alone misses it
    _create_job("orphan-2", RANK_OUTLIVES_SCRIPT, hosts=2, distributed=True)
    executor.wait_idle(120)
    assert _describe("orphan-2")["TrainingJobStatus"] == "Failed"
    # THEN the first host's rank was killed with its torchrun, as an instance's processes end with it
    log = executor.training_runs["orphan-2"].log_file.read_text()
    (pid,) = re.findall(r"\[algo-1\] rank 0 pid (\d+)", log)
    deadline = time.monotonic() + 10
    while psutil.pid_exists(int(pid)) and psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"rank 0 (pid {pid}) outlived its killed host"
        time.sleep(0.1)
