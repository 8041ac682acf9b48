"""hpo.py and train_model.py run as SageMaker runs them: env contract, metrics, artifact, hook, resume."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import runpy
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import dog_data
import dog_model
import inference
import paired_evaluation
import profiler
import profiler_rules
import pytest
import torch
import training_job
import training_loop
from conftest import FAST_ARGS, TINY_CLASSES, SageMakerPaths
from PIL import Image

from offline.synthetic_dataset import class_folder_names
from pipeline.common import rule_evaluation
from pipeline.common.config import load_settings
from pipeline.common.metric_definitions import METRIC_DEFINITIONS

TRAINING_CODE = Path(training_job.__file__).parent
RULE_NAMES = {"VanishingGradient", "LossNotDecreasing", "Overfit", "Overtraining", "PoorWeightInitialization"}
RULE_STATUSES = {"NoIssuesFound", "IssuesFound", "NotEvaluated", "Error"}


def run_script(script: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the script as ``python script args`` would (in this process, to share the imports); return stdout.

    The job's process starts here: the profiler's initialisation (process start to first step) must not count
    the minutes this test process ran before it."""
    monkeypatch.setattr(sys, "argv", [script, *args])
    started = time.time()
    monkeypatch.setattr(profiler, "process_start_time", lambda: started)
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        runpy.run_path(str(TRAINING_CODE / script), run_name="__main__")
    return output.getvalue()


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def train_model_run(tmp_path_factory: pytest.TempPathFactory, tiny_dataset_zip: Path) -> dict[str, Any]:
    """One real 2-epoch train_model.py run under the SageMaker env, without a Debugger config, shared by tests."""
    root = tmp_path_factory.mktemp("train_model")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("SM_CHANNEL_TRAINING", str(tiny_dataset_zip.parent))
        monkeypatch.setenv("SM_MODEL_DIR", str(root / "model"))
        monkeypatch.setenv("SM_OUTPUT_DATA_DIR", str(root / "output"))
        monkeypatch.delenv("SMDEBUG_CONFIG_FILE_PATH", raising=False)
        stdout = run_script("train_model.py", ["--epochs", "2", "--learning_rate", "0.05", *FAST_ARGS], monkeypatch)
    return {"stdout": stdout, "model_dir": root / "model", "output_dir": root / "output"}


def test_metric_definitions_match_real_training_output(train_model_run: dict[str, Any]) -> None:
    # GIVEN the stdout of a real 2-epoch run and the jobs' MetricDefinitions
    stdout = train_model_run["stdout"]
    metrics = read_json(train_model_run["model_dir"] / "metrics.json")

    # WHEN SageMaker's regexes are applied to it
    found = {d["Name"]: [float(v) for v in re.findall(d["Regex"], stdout)] for d in METRIC_DEFINITIONS}

    # THEN every metric is read: one value per epoch for the epoch metrics, one test accuracy at the end
    assert len(found["train:loss"]) == len(found["validation:loss"]) == 2
    assert len(found["train:images_per_second"]) == 2 and min(found["train:images_per_second"]) > 0
    assert found["validation:accuracy"] == pytest.approx([e["valid_accuracy"] for e in metrics["epochs"]], abs=1e-4)
    assert found["test:accuracy"] == pytest.approx([metrics["test_accuracy"]], abs=1e-4)
    assert found["test:int8_accuracy"] == pytest.approx([metrics["int8"]["test_accuracy"]], abs=1e-4)
    evaluation = read_json(train_model_run["output_dir"] / "evaluation.json")
    assert found["test:served_accuracy"] == pytest.approx([evaluation["challenger"]["accuracy"]], abs=1e-4)
    assert found["test:champion_accuracy"] == found["test:paired_difference"] == []  # no champion in this job
    # AND the curves go to the output data for the run report, the same as the artifact's metrics.json holds
    history = read_json(train_model_run["output_dir"] / "training_history.json")
    assert history["epochs"] == metrics["epochs"] and history["trainable"] == metrics["trainable"]
    assert all(0.0 <= value <= 1.0 for value in found["validation:accuracy"] + found["test:accuracy"])


def test_train_model_scores_the_champion_channel_on_the_same_test_images(
    train_model_run: dict[str, Any], sagemaker_env: SageMakerPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the model of an earlier run, delivered as the job's champion channel
    monkeypatch.setenv("SM_CHANNEL_CHAMPION", str(train_model_run["model_dir"]))
    # WHEN a new one-epoch train_model.py job runs for a CPU endpoint
    args = ["--epochs", "1", "--endpoint_instance_type", "ml.c5.xlarge", *FAST_ARGS]
    stdout = run_script("train_model.py", args, monkeypatch)
    # THEN evaluation.json pairs both on every test image, and the log carries the paired figures
    evaluation = read_json(sagemaker_env.output_data_dir / "evaluation.json")
    paired = evaluation["paired"]
    assert paired["images"] == evaluation["test_images"] == evaluation["champion"]["images"]
    assert paired["champion_accuracy"] == pytest.approx(evaluation["champion"]["accuracy"])
    found = {d["Name"]: [float(v) for v in re.findall(d["Regex"], stdout)] for d in METRIC_DEFINITIONS}
    assert found["test:champion_accuracy"] == pytest.approx([paired["champion_accuracy"]], abs=1e-4)
    assert found["test:paired_difference"] == pytest.approx([paired["difference"]], abs=1e-4)
    # AND each was scored in the precision a CPU endpoint would serve it in, per its own artifact's int8 check
    for name, model_dir in (("challenger", sagemaker_env.model_dir), ("champion", train_model_run["model_dir"])):
        expected = paired_evaluation.served_precision(model_dir, "ml.c5.xlarge", "auto")
        assert evaluation[name]["served_as"] == expected


def test_artifact_is_deployable_layout(train_model_run: dict[str, Any]) -> None:
    model_dir: Path = train_model_run["model_dir"]

    classes = read_json(model_dir / "classes.json")
    model = dog_model.load_state(dog_model.build_model(len(classes)), str(model_dir / "model.pth"))

    assert classes == class_folder_names(TINY_CLASSES)
    assert model.fc.out_features == TINY_CLASSES
    assert (model_dir / "code" / "inference.py").read_bytes() == (TRAINING_CODE / "inference.py").read_bytes()
    assert (model_dir / "code" / "dog_model.py").read_bytes() == (TRAINING_CODE / "dog_model.py").read_bytes()
    if (TRAINING_CODE / "inference_requirements.txt").is_file():
        assert (model_dir / "code" / "requirements.txt").is_file()
    metrics = read_json(model_dir / "metrics.json")
    assert metrics["trainable"] == "all" and metrics["initial_weights"] == "random"
    assert [epoch["epoch"] for epoch in metrics["epochs"]] == [1, 2]


def test_train_model_ships_the_int8_network_it_measured(
    train_model_run: dict[str, Any], tiny_dataset_zip: Path
) -> None:
    model_dir: Path = train_model_run["model_dir"]
    metrics = read_json(model_dir / "metrics.json")
    calibration = torch.load(model_dir / inference.CALIBRATION_FILE, weights_only=True)

    # THEN the artifact carries 32 training images at the training size and the int8 test accuracy, also printed
    assert calibration.dtype == torch.uint8 and calibration.shape == (32, 3, 32, 32)
    assert metrics["int8"]["calibration_images"] == 32 and metrics["int8"]["engine"] == inference.INT8_ENGINE
    assert f"int8_test_accuracy={metrics['int8']['test_accuracy']:.4f}" in train_model_run["stdout"]
    # AND the endpoint's int8 network, rebuilt from the artifact, scores exactly what the job recorded
    served = inference.load_model(model_dir, precision="int8")
    test = dog_data.decode_split(dog_data.index_dataset(tiny_dataset_zip), "test", 32, max_corrupt_fraction=0.0)
    with torch.inference_mode():
        predicted = served.network(inference.centre(test.images.permute(0, 3, 1, 2), torch.float32)).argmax(1)
    assert (predicted == test.labels).float().mean().item() == pytest.approx(metrics["int8"]["test_accuracy"])


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("image/jpeg", "jpeg"), ("application/x-image", "jpeg"), ("image/png", "png"), ("application/json", "json")],
)
def test_artifact_round_trips_through_the_serving_hooks(
    train_model_run: dict[str, Any], tiny_dataset_zip: Path, content_type: str, body: str
) -> None:
    # GIVEN the artifact of a real run and a test image of the dataset
    with zipfile.ZipFile(tiny_dataset_zip) as archive:
        image_name = next(name for name in archive.namelist() if "/test/" in name and name.endswith(".jpg"))
        image = archive.read(image_name)
    payload = {
        "jpeg": image,
        "png": _as_png(image),
        "json": json.dumps({"images": [base64.b64encode(image).decode()], "top_k": 2}),
    }[body]

    # WHEN model_fn loads it as the container does (precision chosen automatically) and the request is served
    model = inference.model_fn(str(train_model_run["model_dir"]))
    response = json.loads(
        inference.output_fn(inference.predict_fn(inference.input_fn(payload, content_type), model), None)
    )

    # THEN the answer is a top-k ranking of the dataset's breeds, in the precision the artifact's int8 check allows
    ranking = response["predictions"][0] if body == "json" else response["predictions"]
    assert len(ranking) == (2 if body == "json" else TINY_CLASSES)
    assert {entry["label"] for entry in ranking} <= set(class_folder_names(TINY_CLASSES))
    int8_allowed = dog_model.cpu_has_int8_dot_product() and not inference.int8_accuracy_refusal(
        train_model_run["model_dir"]
    )
    assert (model.precision == "int8") == bool(int8_allowed)


def _as_png(jpeg_bytes: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(jpeg_bytes)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_train_model_evaluates_rules_on_its_own_local_trial(train_model_run: dict[str, Any]) -> None:
    report = read_json(train_model_run["output_dir"] / "rule_report.json")

    assert report["debug_hook"]["source"] == "local"
    assert Path(report["trial_dir"]) == train_model_run["output_dir"] / "debug-trial"
    assert set(report["rules"]) == RULE_NAMES
    assert all(result["status"] in RULE_STATUSES and result["details"] for result in report["rules"].values())
    # These rules have all the tensors they need in the local trial, so they must not end in Error.
    for name in ("VanishingGradient", "Overfit", "Overtraining", "PoorWeightInitialization"):
        assert report["rules"][name]["status"] != "Error", report["rules"][name]
    timing = report["timing"]
    assert timing["train_data_seconds"] >= 0 and timing["train_compute_seconds"] > 0
    assert 0 <= timing["train_data_fraction"] < 1


def test_train_model_profiles_itself_and_judges_the_profile(train_model_run: dict[str, Any]) -> None:
    output = train_model_run["output_dir"]
    report = read_json(output / "profiler_report.json")
    rules = report["rules"]

    # THEN every profiler rule reached a verdict, and none passed without judging
    assert set(rules) == {*profiler_rules.RULE_NAMES, "ProfilerReport"}
    for name in ("LowGPUUtilization", "GPUMemoryIncrease", "LoadBalancing", "CPUBottleneck"):
        assert rules[name]["status"] == "NotEvaluated" and "GPU" in rules[name]["details"], rules[name]
    assert rules["MaxInitializationTime"]["status"] == "NoIssuesFound"
    # (6 training steps are fewer than Dataloader's patience: too little data is said, never passed)
    assert rules["Dataloader"] | {"figures": {}} == {
        "status": "NotEvaluated",
        "details": "6 training steps, needs at least 10 (patience)",
        "recommendation": "",
        "figures": {},
        "parameters": {"threshold": 20, "patience": 10},
    }
    assert report["context"]["gpu_note"] == "no GPU on this machine: GPU metrics not recorded"
    # AND the loop recorded every step: 48 training images at batch 16 for 2 epochs, one validation batch each
    framework = profiler_rules.load_records(output / "profiler" / "framework-metrics.jsonl")
    steps = [record for record in framework if record["Type"] == "step"]
    assert [(r["Epoch"], r["Step"]) for r in steps if r["Phase"] == "train"] == [
        (1, 0),
        (1, 1),
        (1, 2),
        (2, 3),
        (2, 4),
        (2, 5),
    ]
    assert [r["Epoch"] for r in steps if r["Phase"] == "eval"] == [1, 2]
    assert all(r["DataSeconds"] >= 0 and r["ComputeSeconds"] > 0 for r in steps)
    (initialization,) = [record for record in framework if record["Type"] == "initialization"]
    assert initialization["StartTime"] < initialization["EndTime"] == steps[0]["StartTime"]
    # AND the system samples are SageMaker's format, one per core
    system = profiler_rules.load_records(output / "profiler" / "system-metrics.jsonl")
    assert report["samples"] >= 1 and len(system) >= report["samples"]
    assert {r["Name"] for r in system if r["Dimension"] == "CPUUtilization"} == {
        f"cpu{core}" for core in range(os.cpu_count() or 1)
    }
    assert {"Type", "Name", "Dimension", "Value", "NodeId", "Timestamp"} == set(system[0])


def _hpo_with_delayed_batches(
    paths: SageMakerPaths, monkeypatch: pytest.MonkeyPatch, delay_seconds: float
) -> dict[str, Any]:
    """hpo.py for 4 epochs (12 steps) on the streamed path, each batch ``delay_seconds`` late."""
    streamed = dog_data.image_batches

    def late_batches(*args: Any, **kwargs: Any) -> Any:
        for batch in streamed(*args, **kwargs):
            time.sleep(delay_seconds)
            yield batch

    with monkeypatch.context() as patch:
        patch.setattr(dog_data, "image_batches", late_batches)
        run_script("hpo.py", ["--epochs", "4", "--trainable", "all", *FAST_ARGS], patch)
    return read_json(paths.output_data_dir / "profiler_report.json")["rules"]


def test_a_slow_data_path_is_found_by_the_dataloader_rule_and_a_healthy_one_is_not(
    sagemaker_env: SageMakerPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the same job twice on the same data: as it is, and with every batch arriving 0.1 s late
    healthy = _hpo_with_delayed_batches(sagemaker_env, monkeypatch, 0.0)
    slow = _hpo_with_delayed_batches(sagemaker_env, monkeypatch, 0.1)

    # THEN only the slow one is a Dataloader finding, with the share and a recommendation, and ProfilerReport says so
    assert healthy["Dataloader"]["status"] == "NoIssuesFound", healthy["Dataloader"]
    assert slow["Dataloader"]["status"] == "IssuesFound", slow["Dataloader"]
    # (the 12 injected delays are all in the measured wait)
    assert slow["Dataloader"]["figures"]["data_wait_seconds"] >= 12 * 0.1
    assert (
        slow["Dataloader"]["figures"]["data_wait_percent"] > 2 * healthy["Dataloader"]["figures"]["data_wait_percent"]
    )
    assert slow["Dataloader"]["recommendation"]
    assert slow["ProfilerReport"]["status"] == "IssuesFound" and "Dataloader" in slow["ProfilerReport"]["details"]


def test_with_the_profiler_off_no_profiler_rule_passes(
    sagemaker_env: SageMakerPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_script("hpo.py", ["--epochs", "1", "--profiler", "false", *FAST_ARGS], monkeypatch)

    rules = read_json(sagemaker_env.output_data_dir / "profiler_report.json")["rules"]
    assert {result["status"] for result in rules.values()} == {"NotEvaluated"}
    assert rules["ProfilerReport"]["details"] == "the profiler was switched off for this job (--profiler false)"
    assert not (sagemaker_env.output_data_dir / "profiler").exists()


def test_profiler_rule_parameters_are_checked_before_training(
    sagemaker_env: SageMakerPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="CPUBottleneck"):
        run_script("hpo.py", ["--profiler_rule_parameters", '{"CPUBottleneck_treshold": 30}', *FAST_ARGS], monkeypatch)
    assert not (sagemaker_env.model_dir / "model.pth").exists()


def test_a_job_asked_for_pretrained_weights_without_the_channel_fails_before_decoding_and_says_why(
    sagemaker_env: SageMakerPaths, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN the container env without a pretrained channel, and the default weights (pretrained)
    monkeypatch.delenv("SM_CHANNEL_PRETRAINED", raising=False)
    monkeypatch.setenv("SM_OUTPUT_DIR", str(tmp_path / "output"))
    monkeypatch.setattr(dog_data, "index_dataset", lambda *a, **k: pytest.fail("the dataset was read"))
    fast_without_weights = [arg for arg in FAST_ARGS if arg not in ("--weights", "random")]

    # WHEN the job starts THEN it fails before reading the dataset, never training from random init
    with pytest.raises(dog_model.PretrainedWeightsUnavailable, match="no 'pretrained' input channel"):
        run_script("hpo.py", ["--epochs", "1", *fast_without_weights], monkeypatch)
    assert not (sagemaker_env.model_dir / "model.pth").exists()
    # AND SageMaker's FailureReason (output/failure, which the toolkit keeps) is that message
    failure = (tmp_path / "output" / "failure").read_text()
    assert failure.startswith("pretrained weights asked for (weights=pretrained)") and "make stage-weights" in failure


def test_a_gpu_instance_whose_gpus_torch_cannot_use_fails_instead_of_training_on_the_cpu(
    sagemaker_env: SageMakerPaths, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN SageMaker's word that the instance has a GPU, and a torch that sees none (this machine)
    monkeypatch.setenv("SM_NUM_GPUS", "1")
    monkeypatch.setenv("SM_OUTPUT_DIR", str(tmp_path / "output"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dog_data, "index_dataset", lambda *a, **k: pytest.fail("the dataset was read"))

    # WHEN the job starts THEN it stops before reading the dataset, and FailureReason says why and what to change
    with pytest.raises(training_loop.GpuUnavailable, match=r"1 GPU\(s\) \(SM_NUM_GPUS\)"):
        run_script("hpo.py", ["--epochs", "1", *FAST_ARGS], monkeypatch)
    assert "TrainingImageUri" in (tmp_path / "output" / "failure").read_text()


def test_one_epoch_without_a_hook_under_the_sagemaker_env(
    sagemaker_env: SageMakerPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the container env and hpo.py, which creates no local trial
    # WHEN one epoch runs
    stdout = run_script("hpo.py", ["--epochs", "1", *FAST_ARGS], monkeypatch)

    # THEN it trained, saved the artifact and said there was no hook; a tuning trial skips the int8 check
    assert "epoch=1 " in stdout and "test_accuracy=" in stdout and "int8_test_accuracy" not in stdout
    assert (sagemaker_env.model_dir / "model.pth").is_file()
    assert not (sagemaker_env.model_dir / inference.CALIBRATION_FILE).exists()
    assert read_json(sagemaker_env.model_dir / "metrics.json")["int8"] == {"skipped": "--int8_check false"}
    report = read_json(sagemaker_env.output_data_dir / "rule_report.json")
    assert report["debug_hook"]["source"] == "none" and report["rules"] == {}


def _debugger_config(path: Path, tensors_dir: Path) -> Path:
    """The file SageMaker writes from a job's DebugHookConfig (what smd.get_hook reads)."""
    config = {
        "LocalPath": str(tensors_dir),
        "HookParameters": {"save_interval": "1"},
        "CollectionConfigurations": [
            {"CollectionName": "losses", "CollectionParameters": {}},
            {"CollectionName": "gradients", "CollectionParameters": {"save_interval": "2"}},
            {"CollectionName": "relu_input", "CollectionParameters": {"include_regex": ".*relu_input"}},
        ],
    }
    path.write_text(json.dumps(config))
    return path


def test_one_epoch_with_the_debugger_config_saves_losses_and_gradients(
    sagemaker_env: SageMakerPaths, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN a SageMaker Debugger hook config for the job
    tensors = tmp_path / "tensors"
    monkeypatch.setenv("SMDEBUG_CONFIG_FILE_PATH", str(_debugger_config(tmp_path / "hook.json", tensors)))

    # WHEN one epoch of train_model.py runs (3 steps), keeping ReLU inputs of the first 2 steps
    run_script("train_model.py", ["--epochs", "1", "--debug_relu_input_steps", "2", *FAST_ARGS], monkeypatch)

    # THEN the trial holds losses in TRAIN and EVAL mode and gradients of the TRAIN steps
    from smdebug import modes
    from smdebug.trials import create_trial

    trial = create_trial(str(tensors))
    loss = trial.tensor(trial.tensor_names(collection="losses")[0])
    assert len(loss.steps(mode=modes.TRAIN)) == 3 and len(loss.steps(mode=modes.EVAL)) == 1
    gradients = trial.tensor_names(collection="gradients")
    assert "gradient/ResNet_fc.weight" in gradients and "gradient/ResNet_conv1.weight" in gradients
    assert trial.tensor("gradient/ResNet_fc.weight").steps(mode=modes.TRAIN) == [0, 2]  # the config's interval
    assert trial.tensor("gradient/ResNet_fc.weight").steps(mode=modes.EVAL) == []  # no backward pass in EVAL
    # In-place ReLUs were turned off: the saved ReLU inputs still hold their negative values.
    relu_input = trial.tensor("layer1.0.relu_input_0")
    assert relu_input.value(0, mode=modes.TRAIN).min() < 0
    # Full ReLU inputs (~0.6 GB a step at 224 px, batch 64) only for PoorWeightInitialization's first steps.
    assert relu_input.steps(mode=modes.TRAIN) == [0, 1] and relu_input.steps(mode=modes.EVAL) == []
    report = read_json(sagemaker_env.output_data_dir / "rule_report.json")
    assert report["debug_hook"]["source"] == "sagemaker" and Path(report["trial_dir"]) == tensors
    assert set(report["rules"]) == RULE_NAMES


def test_training_runs_when_smdebug_is_missing(sagemaker_env: SageMakerPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a container where smdebug cannot be imported
    monkeypatch.setitem(sys.modules, "smdebug.pytorch", None)

    # WHEN train_model.py runs
    stdout = run_script("train_model.py", ["--epochs", "1", *FAST_ARGS], monkeypatch)

    # THEN it still trains and reports every rule as not evaluated, with the reason
    assert "epoch=1 " in stdout
    report = read_json(sagemaker_env.output_data_dir / "rule_report.json")
    assert set(report["rules"]) == RULE_NAMES
    assert all(r["status"] == "Error" and "smdebug" in r["details"] for r in report["rules"].values())


@pytest.mark.parametrize("path", ["streamed", "cached-features"])
def test_resumed_run_finishes_the_same_epochs_as_an_uninterrupted_one(
    sagemaker_env: SageMakerPaths, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, path: str
) -> None:
    weights = []
    if path == "cached-features":  # a backbone file, as ImageNet's: trainable auto is the head on cached features
        torch.save(dog_model.build_model(1000).state_dict(), tmp_path / "initial.pth")
        weights = ["--weights", str(tmp_path / "initial.pth")]
    # GIVEN an uninterrupted 2-epoch run
    run_script(
        "hpo.py", ["--epochs", "2", "--checkpoint_dir", str(tmp_path / "ck_a"), *FAST_ARGS, *weights], monkeypatch
    )
    uninterrupted = read_json(sagemaker_env.model_dir / "metrics.json")
    assert uninterrupted["trainable"] == ("fc" if weights else "all")

    # AND a run interrupted (spot reclaim) during epoch 2
    real_train_one_epoch = training_job.train_one_epoch
    calls = []

    def interrupted_in_epoch_two(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("spot instance reclaimed")
        return real_train_one_epoch(*args, **kwargs)

    checkpoint_args = ["--epochs", "2", "--checkpoint_dir", str(tmp_path / "ck_b"), *FAST_ARGS, *weights]
    with monkeypatch.context() as patch:
        patch.setattr(training_job, "train_one_epoch", interrupted_in_epoch_two)
        with pytest.raises(KeyboardInterrupt):
            run_script("hpo.py", checkpoint_args, patch)

    # WHEN the job restarts with the same checkpoint folder
    stdout = run_script("hpo.py", checkpoint_args, monkeypatch)
    resumed = read_json(sagemaker_env.model_dir / "metrics.json")

    # THEN it runs only epoch 2, and ends where the uninterrupted run ended
    assert "epoch=2 " in stdout and "epoch=1 " not in stdout
    assert [e["epoch"] for e in resumed["epochs"]] == [1, 2]
    assert resumed["epochs"][1]["train_loss"] == pytest.approx(uninterrupted["epochs"][1]["train_loss"], rel=1e-5)
    assert resumed["test_accuracy"] == pytest.approx(uninterrupted["test_accuracy"])
    if weights:  # AND the head path checkpoints the head only: the backbone comes back from the initial weights
        saved = torch.load(tmp_path / "ck_b" / "checkpoint.pth", weights_only=True)["model"]
        assert set(saved) == {"weight", "bias"}


def test_frozen_backbone_trains_only_the_head(
    sagemaker_env: SageMakerPaths, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN initial weights from a file (standing in for ImageNet weights) and trainable=fc
    initial = dog_model.build_model(1000).state_dict()
    torch.save(initial, tmp_path / "initial.pth")
    # (24 training steps: more than LossNotDecreasing's num_steps at both ends, so both blocking rules can judge)
    args = [*FAST_ARGS, "--epochs", "4", "--batch_size", "8", "--learning_rate", "0.05"]
    args += ["--weights", str(tmp_path / "initial.pth"), "--trainable", "fc"]

    # WHEN hpo.py trains
    run_script("hpo.py", args, monkeypatch)

    # THEN the backbone is exactly the file's, the head learned, and the features were cached once
    trained = torch.load(sagemaker_env.model_dir / "model.pth", weights_only=True)
    assert torch.equal(trained["layer4.1.conv2.weight"], initial["layer4.1.conv2.weight"])
    assert torch.equal(trained["bn1.running_mean"], initial["bn1.running_mean"])
    assert trained["fc.weight"].shape == (TINY_CLASSES, 512)
    metrics = read_json(sagemaker_env.model_dir / "metrics.json")
    assert metrics["trainable"] == "fc" and metrics["timing"]["feature_cache_seconds"] > 0
    assert metrics["epochs"][1]["train_loss"] < metrics["epochs"][0]["train_loss"]


def test_head_only_training_passes_the_default_rule_gate(
    sagemaker_env: SageMakerPaths, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN the default job on AWS: pretrained weights, so only the head trains, on cached features
    torch.save(dog_model.build_model(1000).state_dict(), tmp_path / "initial.pth")
    # (24 training steps: more than LossNotDecreasing's num_steps at both ends, so both blocking rules can judge)
    args = [*FAST_ARGS, "--epochs", "4", "--batch_size", "8", "--learning_rate", "0.05"]
    args += ["--weights", str(tmp_path / "initial.pth"), "--trainable", "fc"]

    # WHEN train_model.py runs and judges its own trial, and CheckRules reads the report with the default settings
    run_script("train_model.py", args, monkeypatch)
    report = read_json(sagemaker_env.output_data_dir / "rule_report.json")
    monkeypatch.setenv("DATA_BUCKET", "bucket")
    verdict = rule_evaluation.evaluate(
        rule_evaluation.results_from_report(report), list(RULE_NAMES), load_settings().blocking_rules
    )

    # THEN the blocking rules were evaluated on the head's gradients and losses, and the gate passes; the
    # initialization rule, with no ReLU in the trained network, says why it could not judge
    assert verdict.passed, verdict
    poor_init = report["rules"]["PoorWeightInitialization"]
    assert poor_init["status"] == "NotEvaluated" and "only the classifier head" in poor_init["details"]


def test_progressive_resize_trains_at_the_scheduled_sizes_and_ends_at_the_final_size(
    sagemaker_env: SageMakerPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a 4-epoch run at 64 px with progressive resizing, recording the image size of every training batch
    real_train_one_epoch = training_job.train_one_epoch
    seen: list[set[tuple[int, int]]] = []

    def recording(network: Any, batches: Any, *args: Any, **kwargs: Any) -> Any:
        sizes: set[tuple[int, int]] = set()
        seen.append(sizes)

        def watched() -> Any:
            for inputs, labels in batches:
                sizes.add(tuple(inputs.shape[-2:]))
                yield inputs, labels

        return real_train_one_epoch(network, watched(), *args, **kwargs)

    monkeypatch.setattr(training_job, "train_one_epoch", recording)
    args = ["--epochs", "4", *FAST_ARGS, "--image_size", "64", "--progressive_resize", "true", "--debug_hook", "false"]

    # WHEN hpo.py trains
    stdout = run_script("hpo.py", args, monkeypatch)

    # THEN the epochs train at 32, 48, 64, 64 px, the log and metrics say so, and the model serves at 64 px
    assert seen == [{(32, 32)}, {(48, 48)}, {(64, 64)}, {(64, 64)}]
    metrics = read_json(sagemaker_env.model_dir / "metrics.json")
    assert [e["train_image_size"] for e in metrics["epochs"]] == [32, 48, 64, 64]
    assert metrics["image_size"] == 64 and metrics["hyperparameters"]["progressive_resize"] is True
    assert "epoch=1 " in stdout and "train_image_size=32" in stdout


@pytest.mark.slow
def test_learning_works_well_above_chance(
    learnable_dataset_zip: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN a seeded learnable set of 4 classes (chance: 25%) and random initial weights
    args = ["--data_dir", str(learnable_dataset_zip), "--model_dir", str(tmp_path / "m")]
    args += ["--output_data_dir", str(tmp_path / "o"), "--epochs", "4", "--learning_rate", "0.05", *FAST_ARGS]

    # WHEN hpo.py trains 4 epochs, checking the int8 network too
    run_script("hpo.py", [*args, "--int8_check", "true"], monkeypatch)

    # THEN validation and test accuracy end far above chance, and int8 keeps the test accuracy within 3 of 32 images
    metrics = read_json(tmp_path / "m" / "metrics.json")
    assert metrics["valid_accuracy"] >= 0.6
    assert metrics["test_accuracy"] >= 0.6
    assert metrics["int8"]["test_accuracy"] >= metrics["test_accuracy"] - 3 / 32


def test_hyperparameters_accept_sagemaker_json_encoding() -> None:
    parser = training_job.build_arg_parser(epochs=4, debug_dir_default="", description="test")

    args = parser.parse_args(
        ["--batch_size", '"64"', "--learning_rate", "0.01", "--epochs", "3", "--optimizer", '"adamw"',
         "--debug_hook", '"false"', "--weight_decay", "5e-4"]
    )  # fmt: skip

    assert (args.batch_size, args.learning_rate, args.epochs) == (64, 0.01, 3)
    assert args.optimizer == "adamw" and args.debug_hook is False and args.weight_decay == 5e-4


def test_missing_inference_code_fails_before_training(
    sagemaker_env: SageMakerPaths, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(training_job, "CODE_SOURCE_DIR", tmp_path)

    with pytest.raises(FileNotFoundError, match=r"inference\.py is missing"):
        run_script("hpo.py", ["--epochs", "1", *FAST_ARGS], monkeypatch)
    assert not (sagemaker_env.model_dir / "model.pth").exists()


def test_progress_lines_come_at_most_once_per_interval(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter([0.0, 10.0, 20.0, 31.0, 40.0, 62.0])
    monkeypatch.setattr(training_job.time, "monotonic", lambda: next(clock))
    progress = training_job.ProgressLog(30.0)  # created at t=0
    for done in (100, 200, 300, 400, 500):  # at t = 10, 20, 31, 40, 62
        progress.update("feature pass train", done, 1000)
    # one line at 31 s, the next 30 s later at 62 s; the rate counts the images after the phase's first update (at
    # 10 s), and the time left is the rest at that rate
    assert capsys.readouterr().out.splitlines() == [
        "progress: feature pass train 300/1000 (9.5/s, about 74 s left)",
        "progress: feature pass train 500/1000 (7.7/s, about 65 s left)",
    ]
    # AND a finished phase says no time left; a phase's first update, with no rate yet, gives none
    monkeypatch.setattr(training_job.time, "monotonic", lambda: 100.0)
    progress.update("feature pass train", 1000, 1000)
    assert capsys.readouterr().out == "progress: feature pass train 1000/1000 (10.0/s)\n"
    monkeypatch.setattr(training_job.time, "monotonic", lambda: 140.0)
    progress.update("feature pass valid", 64, 835)
    assert capsys.readouterr().out == "progress: feature pass valid 64/835\n"


def _bf16_cpu() -> training_loop.Compute:
    return training_loop.Compute(torch.device("cpu"), torch.bfloat16)


def _split(images: int) -> dog_data.DecodedSplit:
    return dog_data.DecodedSplit(
        torch.zeros((images, 8, 8, 3), dtype=torch.uint8), torch.zeros(images, dtype=torch.long)
    )


@pytest.mark.parametrize(("bf16_seconds", "fp32_seconds", "chosen"), [(0.03, 0.0, "fp32"), (0.0, 0.03, "bf16")])
def test_a_feature_pass_on_a_bf16_cpu_takes_the_precision_measured_faster(
    monkeypatch: pytest.MonkeyPatch, bf16_seconds: float, fp32_seconds: float, chosen: str
) -> None:
    def timed_features(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        time.sleep(bf16_seconds if torch.is_autocast_enabled("cpu") else fp32_seconds)
        return torch.zeros(len(images), 512)

    monkeypatch.setattr(dog_model, "backbone_features", timed_features)
    batches = training_job.PRECISION_PROBE_MIN_BATCHES
    compute = training_job.feature_pass_compute(torch.nn.Identity(), _split(4 * batches), _bf16_cpu(), 4, "auto")
    assert compute.precision == chosen and compute.device.type == "cpu"


@pytest.mark.parametrize(
    ("images", "compute", "requested"),
    [
        (64, _bf16_cpu(), "bf16"),  # pinned: no probe, no timing dependence
        (64, training_loop.Compute(torch.device("cpu"), None), "auto"),  # already float32
        (4 * training_job.PRECISION_PROBE_MIN_BATCHES - 1, _bf16_cpu(), "auto"),  # too few batches to pay for it
    ],
)
def test_a_feature_pass_keeps_the_jobs_precision_without_a_probe_where_one_cannot_pay(
    monkeypatch: pytest.MonkeyPatch, images: int, compute: training_loop.Compute, requested: str
) -> None:
    def never(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        raise AssertionError("probed")

    monkeypatch.setattr(dog_model, "backbone_features", never)
    assert training_job.feature_pass_compute(torch.nn.Identity(), _split(images), compute, 4, requested) is compute
