"""Distributed jobs: when the training and tuning requests turn on SageMaker's torch_distributed launcher (torchrun
on every host), compared with what the SageMaker Python SDK 2.x sends for the same estimator and tuner."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from sagemaker.estimator import _TrainingJob
from sagemaker.tuner import CategoricalParameter, ContinuousParameter, HyperparameterTuner, _TuningJob
from sagemaker_states_support import BEST, CODE_URI, assert_valid, sdk_estimator

from offline.run import parse_args
from offline.stack import Template
from pipeline.common.config import Settings, load_settings
from pipeline.common.metric_definitions import METRIC_DEFINITIONS
from pipeline.common.sagemaker_requests import (
    distribution_hyperparameters,
    gpus_per_instance,
    hook_parameters,
    training_job_request,
    training_steps,
    tuning_job_request,
    world_size,
)
from pipeline.common.state_models import Dataset

DISTRIBUTION_KEYS = {"sagemaker_torch_distributed_enabled", "sagemaker_instance_type"}
TORCH_DISTRIBUTED = {"torch_distributed": {"enabled": True}}
# Not an instance type SageMaker knows (the API's enum refuses it), so only the request's shape is checked.
UNKNOWN_TYPE = "ml.g9.xlarge"


def _sdk_training_hyperparameters(settings: Settings, instance_type: str, instance_count: int) -> dict[str, str]:
    serving = {"endpoint_instance_type": settings.endpoint_instance_type, "inference_precision": "auto"}
    tuned = {"batch_size": 64, "learning_rate": 0.0123, "epochs": settings.training_epochs}
    estimator = sdk_estimator(
        settings,
        "train_model.py",
        tuned | serving,
        instance_type=instance_type,
        instance_count=instance_count,
        distribution=TORCH_DISTRIBUTED,
    )
    estimator._prepare_for_training(job_name="train-1")
    sdk = _TrainingJob._get_train_args(estimator, "s3://dog-data/validated/x.zip", experiment_config=None)
    hyperparameters: dict[str, str] = sdk["hyperparameters"]
    hyperparameters.pop("sagemaker_job_name")
    return hyperparameters


def _training(settings: Settings, dataset: Dataset, instance_type: str, instance_count: int) -> dict[str, Any]:
    varied = dataclasses.replace(settings, training_instance_type=instance_type, training_instance_count=instance_count)
    return training_job_request(varied, dataset, BEST, "train-1", CODE_URI, "us-east-1")


def _tuning(settings: Settings, dataset: Dataset, instance_type: str, instance_count: int) -> dict[str, Any]:
    varied = dataclasses.replace(settings, tuning_instance_type=instance_type, tuning_instance_count=instance_count)
    return tuning_job_request(varied, dataset, "hpo-1", CODE_URI, "us-east-1")


# -- which instances ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instance_type", "gpus"),
    [
        ("ml.g4dn.xlarge", 1),
        ("ml.g4dn.12xlarge", 4),
        ("ml.g5.16xlarge", 1),
        ("ml.g5.12xlarge", 4),
        ("ml.g5.48xlarge", 8),
        ("ml.g6.24xlarge", 4),
        ("ml.g6e.48xlarge", 8),
        ("ml.p3.8xlarge", 4),
        ("ml.p4d.24xlarge", 8),
        ("ml.p5en.48xlarge", 8),
        ("ml.m5.xlarge", 0),
        ("ml.m6i.2xlarge", 0),
        ("ml.c5n.4xlarge", 0),
        ("ml.c7i.large", 0),
        ("ml.r5.large", 0),
        ("ml.t3.medium", 0),
        (UNKNOWN_TYPE, None),
        ("ml.trn1.32xlarge", None),
    ],
)
def test_gpus_per_instance(instance_type: str, gpus: int | None) -> None:
    assert gpus_per_instance(instance_type) == gpus


@pytest.mark.parametrize(
    ("instance_type", "count", "ranks"),
    [("ml.g4dn.xlarge", 1, 1), ("ml.g4dn.xlarge", 2, 2), ("ml.g5.12xlarge", 2, 8), ("ml.m5.xlarge", 3, 3)],
)
def test_world_size_is_instances_times_gpus(instance_type: str, count: int, ranks: int) -> None:
    assert world_size(instance_type, count) == ranks


def test_world_size_counts_an_unknown_type_as_one_rank_per_instance() -> None:
    assert world_size(UNKNOWN_TYPE, 2) == 2


# -- the final training job --------------------------------------------------------------------------------------


def test_one_single_gpu_instance_sends_no_distribution(settings: Settings, dataset: Dataset) -> None:
    assert (settings.training_instance_type, settings.training_instance_count) == ("ml.g4dn.xlarge", 1)

    ours = training_job_request(settings, dataset, BEST, "train-1", CODE_URI, "us-east-1")

    assert not DISTRIBUTION_KEYS & set(ours["HyperParameters"])
    assert ours["ResourceConfig"]["InstanceCount"] == 1
    assert distribution_hyperparameters("ml.g4dn.xlarge", 1) == {}
    assert_valid("create_training_job", ours)


def test_two_instances_enable_torch_distributed_as_the_sdk_does(settings: Settings, dataset: Dataset) -> None:
    ours = _training(settings, dataset, "ml.g4dn.xlarge", 2)

    assert ours["HyperParameters"]["sagemaker_torch_distributed_enabled"] == "true"
    assert ours["HyperParameters"]["sagemaker_instance_type"] == '"ml.g4dn.xlarge"'
    assert ours["ResourceConfig"]["InstanceCount"] == 2
    # Every hyperparameter, the distribution keys included, as PyTorch(instance_count=2, torch_distributed) sends.
    assert ours["HyperParameters"] == _sdk_training_hyperparameters(settings, "ml.g4dn.xlarge", 2)
    assert_valid("create_training_job", ours)


@pytest.mark.parametrize(
    ("instance_type", "count", "distributed"),
    [
        ("ml.g5.12xlarge", 1, True),  # 4 GPUs: torchrun starts 4 ranks
        ("ml.p3.2xlarge", 2, True),
        ("ml.m5.xlarge", 2, True),  # CPU instances: one gloo rank each
        ("ml.m5.xlarge", 1, False),
        ("ml.g5.xlarge", 1, False),
        (UNKNOWN_TYPE, 1, True),  # unknown GPU count: torchrun finds them
    ],
)
def test_distribution_follows_the_instance_type_and_count(
    settings: Settings, dataset: Dataset, instance_type: str, count: int, distributed: bool
) -> None:
    ours = _training(settings, dataset, instance_type, count)

    assert (set(ours["HyperParameters"]) >= DISTRIBUTION_KEYS) is distributed
    assert not distributed or ours["HyperParameters"] == _sdk_training_hyperparameters(settings, instance_type, count)
    assert ours["ResourceConfig"] == {"InstanceType": instance_type, "InstanceCount": count, "VolumeSizeInGB": 30}
    assert_valid("create_training_job", ours, known_type=instance_type != UNKNOWN_TYPE)


def test_the_training_count_leaves_the_tuning_trials_alone(settings: Settings, dataset: Dataset) -> None:
    varied = dataclasses.replace(settings, training_instance_count=2)

    tuning = tuning_job_request(varied, dataset, "hpo-1", CODE_URI, "us-east-1")["TrainingJobDefinition"]

    assert not DISTRIBUTION_KEYS & set(tuning["StaticHyperParameters"])
    assert tuning["ResourceConfig"]["InstanceCount"] == 1


# -- tuning trials -----------------------------------------------------------------------------------------------


def test_two_instances_per_trial_enable_torch_distributed_as_the_sdk_tuner_does(
    settings: Settings, dataset: Dataset
) -> None:
    estimator = sdk_estimator(
        settings,
        "hpo.py",
        {"epochs": settings.tuning_epochs},
        instance_count=2,
        distribution=TORCH_DISTRIBUTED,
    )
    tuner = HyperparameterTuner(
        estimator,
        "validation:accuracy",
        {
            "batch_size": CategoricalParameter([32, 64, 128, 256]),
            "learning_rate": ContinuousParameter(0.001, 0.1, scaling_type="Logarithmic"),
        },
        metric_definitions=METRIC_DEFINITIONS,
        max_jobs=5,
        max_parallel_jobs=2,
    )
    tuner._prepare_for_tuning(job_name="hpo-1")
    sdk_static = _TuningJob._get_tuner_args(tuner, dataset.validated_uri)["training_config"]["static_hyperparameters"]

    ours = _tuning(settings, dataset, "ml.g4dn.xlarge", 2)
    definition = ours["TrainingJobDefinition"]

    static = definition["StaticHyperParameters"]
    assert {name: static[name] for name in DISTRIBUTION_KEYS} == {name: sdk_static[name] for name in DISTRIBUTION_KEYS}
    assert static["sagemaker_torch_distributed_enabled"] == "true"
    assert static["sagemaker_instance_type"] == '"ml.g4dn.xlarge"'
    assert definition["ResourceConfig"]["InstanceCount"] == 2
    assert_valid("create_hyper_parameter_tuning_job", ours)


@pytest.mark.parametrize(
    ("instance_type", "count", "distributed"),
    [("ml.g4dn.xlarge", 1, False), ("ml.g5.12xlarge", 1, True), ("ml.m5.xlarge", 1, False), (UNKNOWN_TYPE, 1, True)],
)
def test_trial_distribution_follows_the_instance_type(
    settings: Settings, dataset: Dataset, instance_type: str, count: int, distributed: bool
) -> None:
    ours = _tuning(settings, dataset, instance_type, count)
    definition = ours["TrainingJobDefinition"]

    assert (set(definition["StaticHyperParameters"]) >= DISTRIBUTION_KEYS) is distributed
    assert definition["ResourceConfig"]["InstanceCount"] == count
    assert_valid("create_hyper_parameter_tuning_job", ours, known_type=instance_type != UNKNOWN_TYPE)


def test_the_tuning_count_leaves_the_training_job_alone(settings: Settings, dataset: Dataset) -> None:
    varied = dataclasses.replace(settings, tuning_instance_count=2)

    training = training_job_request(varied, dataset, BEST, "train-1", CODE_URI, "us-east-1")

    assert not DISTRIBUTION_KEYS & set(training["HyperParameters"])
    assert training["ResourceConfig"]["InstanceCount"] == 1


# -- the debugger hook's interval ----------------------------------------------------------------------------------


def test_hook_interval_counts_the_steps_of_one_rank() -> None:
    # 6,680 images over 2 ranks: 3,340 each, 53 batches of 64 per epoch, 8 epochs.
    assert training_steps(6680, 64, 8, world_size=2) == 424
    assert hook_parameters(6680, 64, 8, world_size=2) == {"train.save_interval": "16", "eval.save_interval": "16"}
    assert hook_parameters(6680, 64, 8) == {"train.save_interval": "33", "eval.save_interval": "33"}  # 840 steps


def test_steps_per_epoch_follow_the_smallest_shard() -> None:
    # 6,657 images over 2 ranks: shards of 3,329 and 3,328; every rank trains on 3,328 (52 full batches) per epoch.
    assert training_steps(6657, 64, 1, world_size=2) == 52


def test_a_two_instance_job_saves_at_the_per_rank_interval(settings: Settings, dataset: Dataset) -> None:
    varied = dataclasses.replace(settings, debugger_rules_enabled=True, training_epochs=8, training_instance_count=2)
    assert dataset.counts["train"] == 6680

    ours = training_job_request(varied, dataset, BEST, "train-1", CODE_URI, "us-east-1")

    assert ours["DebugHookConfig"]["HookParameters"] == {"train.save_interval": "16", "eval.save_interval": "16"}
    assert_valid("create_training_job", ours)


# -- settings --------------------------------------------------------------------------------------------------


def test_tuning_instance_count_is_read_and_defaults_to_one(pipeline_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().tuning_instance_count == 1
    monkeypatch.setenv("TUNING_INSTANCE_COUNT", "3")
    assert load_settings().tuning_instance_count == 3


@pytest.mark.parametrize(
    ("variable", "parameter"),
    [("TUNING_INSTANCE_COUNT", "TuningInstanceCount"), ("TRAINING_INSTANCE_COUNT", "TrainingInstanceCount")],
)
def test_an_instance_count_below_one_is_refused(
    pipeline_env: Path, monkeypatch: pytest.MonkeyPatch, variable: str, parameter: str
) -> None:
    monkeypatch.setenv(variable, "0")

    with pytest.raises(ValueError, match=rf"{variable} is 0: set the template parameter {parameter} to 1 or more"):
        load_settings()


def test_offline_parameters_reach_the_settings(pipeline_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = parse_args(["--parameter", "TuningInstanceCount=2", "--parameter", "TrainingInstanceCount=3"])
    functions = Template(parameters=options.template_parameters(None)).functions()
    for name in ("StartTuningFunction", "StartTrainingFunction"):
        environment = functions[name].environment
        for variable in ("TUNING_INSTANCE_COUNT", "TRAINING_INSTANCE_COUNT"):
            monkeypatch.setenv(variable, environment[variable])

        settings = load_settings()

        assert (settings.tuning_instance_count, settings.training_instance_count) == (2, 3), name
