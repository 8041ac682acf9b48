"""hpo.py and train_model.py as N data-parallel ranks (torchrun, gloo on this CPU), against the same job as one
process: the shards, the ranks' shared result, rank 0 as the only writer, a resume of every rank."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import distributed_training
import dog_data
import pytest
import torch
import training_job
from conftest import TINY_IMAGE_SIZE
from distributed_training import DistributedLaunchError, Ranks

from offline.local_sagemaker.warm_interpreter import JobProcesses, free_port
from offline.synthetic_dataset import write_dataset_zip

TRAINING_CODE = Path(training_job.__file__).parent
# The production path (a frozen backbone, the head on cached features) from the in-job stand-in weights: no file
# or network needed, and the head converges in a few epochs on the learnable set.
HEAD_ARGS = ["--weights", "stand-in", "--image_size", str(TINY_IMAGE_SIZE), "--batch_size", "16", "--num_threads",
             "1", "--profiler_interval_ms", "100"]  # fmt: skip
JOB_PROCESSES = JobProcesses(sys.executable, os.environ)
EPOCH_LINE = re.compile(r"^epoch=(\d+) .*valid_accuracy=([\d.]+)", re.MULTILINE)
SHARD_LINE = re.compile(r"shard rank=(\d+) split=(\w+) images=(\d+) paths_sha256=(\w+)")


def run_hosts(tmp: Path, hosts: int, script: str, args: list[str], *, timeout: float = 180) -> list[dict[str, Any]]:
    """The job on ``hosts`` hosts as SageMaker's torch_distributed runs it: one torchrun per host (one process
    each, as on a CPU instance), each host with its own model, output and checkpoint folders."""
    port = free_port()
    runs = []
    for host in range(hosts):
        folders = {name: tmp / f"algo-{host + 1}" / name for name in ("model", "output", "checkpoints")}
        folders["checkpoints"].mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-u", "-m", "torch.distributed.run", "--nnodes", str(hosts), "--nproc_per_node", "1",
                   "--node_rank", str(host), "--master_addr", "127.0.0.1", "--master_port", str(port),
                   script, *args, "--model_dir", str(folders["model"]), "--output_data_dir", str(folders["output"]),
                   "--checkpoint_dir", str(folders["checkpoints"])]  # fmt: skip
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMDEBUG"))}
        environment |= {"SM_NUM_GPUS": "0", "SM_HOSTS": json.dumps([f"algo-{h + 1}" for h in range(hosts)])}
        # As the local executor starts a host: torchrun and its ranks forked from the warm interpreter.
        process = JOB_PROCESSES.start(command, TRAINING_CODE, environment)
        runs.append({"process": process, **folders})
    for run in runs:
        run["stdout"], run["stderr"] = run["process"].communicate(timeout=timeout)
        assert run["process"].returncode == 0, run["stderr"][-3000:]
    return runs


def valid_accuracies(stdout: str) -> dict[int, float]:
    return {int(epoch): float(accuracy) for epoch, accuracy in EPOCH_LINE.findall(stdout)}


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.exists() else []


# --- pure parts -------------------------------------------------------------------------------------------------


def test_shards_are_disjoint_cover_the_split_and_keep_the_class_mix() -> None:
    refs = [dog_data.ImageRef(f"train/{label:03d}/{number}.jpg", label) for label in range(5) for number in range(9)]
    shards = [distributed_training.shard_refs(refs, Ranks(rank=rank, world_size=3)) for rank in range(3)]
    paths = [{ref.path for ref in shard} for shard in shards]
    assert sum(len(shard) for shard in shards) == len(refs)
    assert set().union(*paths) == {ref.path for ref in refs}
    assert all(not (paths[a] & paths[b]) for a in range(3) for b in range(a + 1, 3))
    for shard in shards:
        assert Counter(ref.label for ref in shard) == dict.fromkeys(range(5), 3)


def test_ranks_come_from_torchrun_and_a_multi_host_job_without_it_is_refused() -> None:
    torchrun = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert distributed_training.ranks_from_environment(torchrun) == Ranks(3, 4, 1, 2)
    assert distributed_training.ranks_from_environment({"SM_HOSTS": '["algo-1"]'}) == Ranks()
    assert not Ranks().distributed and Ranks().is_main
    with pytest.raises(DistributedLaunchError, match=r"2 hosts.*sagemaker_torch_distributed_enabled"):
        distributed_training.ranks_from_environment({"SM_HOSTS": '["algo-1", "algo-2"]'})


def test_linear_scaling_multiplies_the_learning_rate_by_the_ranks() -> None:
    four = Ranks(rank=0, world_size=4)
    assert distributed_training.scaled_learning_rate(0.01, four, "linear") == pytest.approx(0.04)
    assert distributed_training.scaled_learning_rate(0.01, four, "none") == 0.01
    assert distributed_training.scaled_learning_rate(0.01, Ranks(), "linear") == 0.01
    with pytest.raises(ValueError, match="linear or none"):
        distributed_training.scaled_learning_rate(0.01, four, "sqrt")


def test_an_epoch_visits_only_the_images_every_rank_has() -> None:
    generator = torch.Generator().manual_seed(0)
    order = dog_data.epoch_order(10, shuffle=True, generator=generator, images_per_epoch=7)
    assert len(order) == 7 and len(set(order.tolist())) == 7
    features, labels = torch.zeros(10, 1, 4), torch.arange(10)
    batches = list(dog_data.feature_batches(features, labels, 3, shuffle=False, images_per_epoch=7))
    assert [len(batch_labels) for _, batch_labels in batches] == [3, 3, 1]


# --- the real scripts as ranks ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def comparison_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough test images (96) that one image is ~1% of accuracy, so the comparison's margin can be small."""
    folder = tmp_path_factory.mktemp("comparison")
    return write_dataset_zip(folder / "dogImages.zip", num_classes=4, counts=(256, 96, 96), image_size=32, seed=5)


@pytest.fixture(scope="module")
def one_and_two_hosts(tmp_path_factory: pytest.TempPathFactory, comparison_zip: Path) -> dict[str, Any]:
    args = ["--data_dir", str(comparison_zip), *HEAD_ARGS, "--epochs", "8"]
    tmp = tmp_path_factory.mktemp("distributed")
    return {
        "one": run_hosts(tmp / "one", 1, "hpo.py", args)[0],
        "two": run_hosts(tmp / "two", 2, "hpo.py", args),
    }


def test_two_ranks_reach_the_accuracy_of_one_process(one_and_two_hosts: dict[str, Any]) -> None:
    one = json.loads((one_and_two_hosts["one"]["model"] / "metrics.json").read_text())
    two = json.loads((one_and_two_hosts["two"][0]["model"] / "metrics.json").read_text())
    assert one["distributed"]["world_size"] == 1
    assert two["distributed"] == {"world_size": 2, "backend": "gloo", "global_batch_size": 32, "learning_rate": 0.02}
    assert one["valid_accuracy"] > 0.8, "the single process did not learn: the comparison would say nothing"
    assert abs(two["valid_accuracy"] - one["valid_accuracy"]) <= 0.05
    assert abs(two["test_accuracy"] - one["test_accuracy"]) <= 0.05
    assert two["test_loss"] == pytest.approx(one["test_loss"], rel=0.15)


def test_each_rank_trained_on_its_own_shard(one_and_two_hosts: dict[str, Any], comparison_zip: Path) -> None:
    index = dog_data.index_dataset(comparison_zip)
    logged = {}
    for host in one_and_two_hosts["two"]:
        for rank, split, images, digest in SHARD_LINE.findall(host["stderr"]):
            logged[int(rank), split] = (int(images), digest)
    for rank in range(2):
        for split in ("train", "valid"):
            expected = distributed_training.shard_refs(index.splits[split], Ranks(rank=rank, world_size=2))
            digest = hashlib.sha256("\n".join(ref.path for ref in expected).encode()).hexdigest()[:12]
            assert logged[rank, split] == (len(expected), digest)
    assert (0, "test") in logged and (1, "test") not in logged  # the test split is rank 0's alone
    first_epoch = one_and_two_hosts["two"][0]["stdout"]
    assert "train_images=256 valid_images=96 test_images=96" in first_epoch  # the dataset line sums the shards


def test_only_rank_0_prints_metrics_and_writes_outputs(one_and_two_hosts: dict[str, Any]) -> None:
    rank0, rank1 = one_and_two_hosts["two"]
    assert sorted(valid_accuracies(rank0["stdout"])) == list(range(1, 9))
    assert valid_accuracies(rank1["stdout"]) == {}
    assert "test_accuracy=" not in rank1["stdout"]
    assert {path.name for path in files_under(rank0["model"])} >= {"model.pth", "classes.json", "metrics.json"}
    assert (rank0["output"] / "profiler_report.json").is_file() and (rank0["output"] / "rule_report.json").is_file()
    assert (rank0["checkpoints"] / "checkpoint.pth").is_file()
    assert files_under(rank1["model"]) == [] and files_under(rank1["output"]) == []
    assert files_under(rank1["checkpoints"]) == []


def test_a_restart_resumes_every_rank_from_rank_0s_checkpoint(tmp_path: Path, learnable_dataset_zip: Path) -> None:
    args = ["--data_dir", str(learnable_dataset_zip), *HEAD_ARGS]
    first = run_hosts(tmp_path, 2, "hpo.py", [*args, "--epochs", "2"])
    # A restarted job gets CheckpointConfig.S3Uri on every host: rank 0's checkpoint, the only one written.
    shutil.copy(first[0]["checkpoints"] / "checkpoint.pth", first[1]["checkpoints"] / "checkpoint.pth")
    resumed = run_hosts(tmp_path, 2, "hpo.py", [*args, "--epochs", "4"])
    for host in resumed:
        assert "after epoch 2" in host["stderr"], host["stderr"][-2000:]
    assert sorted(valid_accuracies(resumed[0]["stdout"])) == [3, 4]
    metrics = json.loads((resumed[0]["model"] / "metrics.json").read_text())
    assert [epoch["epoch"] for epoch in metrics["epochs"]] == [1, 2, 3, 4]


def test_streamed_training_of_the_whole_network_also_runs_as_two_ranks(
    tmp_path: Path, learnable_dataset_zip: Path
) -> None:
    args = ["--data_dir", str(learnable_dataset_zip), *HEAD_ARGS, "--trainable", "all", "--epochs", "2",
            "--max_batches_per_epoch", "2"]  # fmt: skip
    rank0, _ = run_hosts(tmp_path, 2, "hpo.py", args)
    metrics = json.loads((rank0["model"] / "metrics.json").read_text())
    assert metrics["trainable"] == "all" and metrics["distributed"]["world_size"] == 2
    assert sorted(valid_accuracies(rank0["stdout"])) == [1, 2]


def test_train_model_as_two_ranks_hooks_evaluates_and_writes_on_rank_0_only(
    tmp_path: Path, tiny_dataset_zip: Path
) -> None:
    args = ["--data_dir", str(tiny_dataset_zip), *HEAD_ARGS, "--weights", "random", "--epochs", "2"]
    rank0, rank1 = run_hosts(tmp_path, 2, "train_model.py", args)
    report = json.loads((rank0["output"] / "rule_report.json").read_text())
    assert report["debug_hook"]["source"] == "local"
    assert report["rules"]["VanishingGradient"]["status"] == "NoIssuesFound", report["rules"]
    assert (rank0["output"] / "evaluation.json").is_file()
    assert "the smdebug hook runs on rank 0 only" in rank1["stderr"]
    assert files_under(rank1["model"]) == [] and files_under(rank1["output"]) == []
