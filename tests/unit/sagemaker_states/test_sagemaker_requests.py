"""Request bodies, checked against the API model and against what the SageMaker Python SDK 2.x would send."""

from __future__ import annotations

import dataclasses

import pytest
from sagemaker.debugger import (
    CollectionConfig,
    DebuggerHookConfig,
    ProfilerRule,
    Rule,
    get_rule_container_image_uri,
    rule_configs,
)
from sagemaker.estimator import _TrainingJob
from sagemaker.tuner import CategoricalParameter, ContinuousParameter, HyperparameterTuner, _TuningJob
from sagemaker_states_support import (
    BEST,
    CODE_URI,
    INFERENCE_ENVIRONMENT,
    RULE_IMAGE,
    assert_valid,
    sdk_estimator,
)

from pipeline.common.config import Settings
from pipeline.common.metric_definitions import METRIC_DEFINITIONS
from pipeline.common.sagemaker_requests import (
    BATCH_SIZES,
    TENSOR_SAVES_PER_JOB,
    decode_hyperparameter,
    enabled_rules,
    endpoint_config_request,
    hook_parameters,
    model_request,
    training_job_request,
    training_steps,
    tuning_job_request,
)
from pipeline.common.state_models import Dataset


@pytest.fixture
def with_rule_containers(settings: Settings) -> Settings:
    """An account that still has SageMaker Debugger and Profiler, with both turned on."""
    return dataclasses.replace(settings, debugger_rules_enabled=True, profiler_rules_enabled=True)


def test_tuning_ranges_objective_and_statics_match_the_sdk_tuner(settings: Settings, dataset: Dataset) -> None:
    # GIVEN the tuner the SDK would build for the same search
    estimator = sdk_estimator(settings, "hpo.py", {"epochs": settings.tuning_epochs})
    tuner = HyperparameterTuner(
        estimator,
        "validation:accuracy",
        {
            "batch_size": CategoricalParameter([32, 64, 128, 256]),
            "learning_rate": ContinuousParameter(0.001, 0.1, scaling_type="Logarithmic"),
        },
        metric_definitions=METRIC_DEFINITIONS,
        strategy="Bayesian",
        objective_type="Maximize",
        max_jobs=5,
        max_parallel_jobs=2,
        early_stopping_type="Auto",
    )
    tuner._prepare_for_tuning(job_name="hpo-251125-015343-3f9a1c")
    sdk = _TuningJob._get_tuner_args(tuner, dataset.validated_uri)
    estimator._prepare_for_training(job_name="hpo-251125-015343-3f9a1c")
    sdk_framework = {k: v for k, v in estimator.hyperparameters().items() if k != "sagemaker_job_name"}

    # WHEN we build ours
    ours = tuning_job_request(settings, dataset, "hpo-251125-015343-3f9a1c", CODE_URI, "us-east-1")
    config, definition = ours["HyperParameterTuningJobConfig"], ours["TrainingJobDefinition"]

    # THEN search space, objective and encodings agree
    assert config["ParameterRanges"] == sdk["tuning_config"]["parameter_ranges"]
    assert config["Strategy"] == sdk["tuning_config"]["strategy"]
    assert config["TrainingJobEarlyStoppingType"] == sdk["tuning_config"]["early_stopping_type"]
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "validation:accuracy"}
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 5, "MaxParallelTrainingJobs": 2}
    assert definition["StaticHyperParameters"] == sdk["training_config"]["static_hyperparameters"] | sdk_framework
    assert definition["InputDataConfig"][0]["DataSource"] == sdk["training_config"]["input_config"][0]["DataSource"]
    assert definition["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
    assert_valid("create_hyper_parameter_tuning_job", ours)


def test_training_hyperparameters_match_thesdk_estimator(settings: Settings, dataset: Dataset) -> None:
    serving = {"endpoint_instance_type": settings.endpoint_instance_type, "inference_precision": "auto"}
    estimator = sdk_estimator(
        settings, "train_model.py", {"batch_size": 64, "learning_rate": 0.0123, "epochs": 10} | serving
    )
    estimator._prepare_for_training(job_name="train-251125-015343-3f9a1c")
    sdk = _TrainingJob._get_train_args(estimator, dataset.validated_uri, experiment_config=None)
    sdk["hyperparameters"].pop("sagemaker_job_name")

    ours = training_job_request(settings, dataset, BEST, "train-251125-015343-3f9a1c", CODE_URI, "us-east-1")

    assert ours["HyperParameters"] == sdk["hyperparameters"]
    assert ours["HyperParameters"]["sagemaker_program"] == '"train_model.py"'
    assert_valid("create_training_job", ours)


def test_a_training_request_with_the_champion_channel_passes_the_service_model(
    settings: Settings, dataset: Dataset
) -> None:
    uri = "s3://dog-data/jobs/r/train-r/output/model.tar.gz"
    ours = training_job_request(settings, dataset, BEST, "train-1", CODE_URI, "us-east-1", uri)
    assert [c["ChannelName"] for c in ours["InputDataConfig"]] == ["training", "pretrained", "champion"]
    assert ours["InputDataConfig"][2]["DataSource"]["S3DataSource"]["S3Uri"] == uri
    assert_valid("create_training_job", ours)


def test_rule_configurations_are_what_the_sdk_rules_send(with_rule_containers: Settings, dataset: Dataset) -> None:
    settings = with_rule_containers
    sdk_rules = [
        Rule.sagemaker(rule_configs.vanishing_gradient()),
        Rule.sagemaker(rule_configs.loss_not_decreasing()),
        Rule.sagemaker(rule_configs.overfit()),
        Rule.sagemaker(rule_configs.overtraining()),
        Rule.sagemaker(rule_configs.poor_weight_initialization()),
    ]
    sdk_profiler_rule = ProfilerRule.sagemaker(rule_configs.ProfilerReport())
    # The SDK fills the evaluator image in at job creation; our RULE_IMAGE_URI must be that image.
    assert get_rule_container_image_uri("sagemaker-debugger-rules", "us-east-1") == RULE_IMAGE

    ours = training_job_request(settings, dataset, BEST, "train-1", CODE_URI, "us-east-1")

    assert ours["DebugRuleConfigurations"] == [
        rule.to_debugger_rule_config_dict() | {"RuleEvaluatorImage": RULE_IMAGE} for rule in sdk_rules
    ]
    assert ours["ProfilerRuleConfigurations"] == [
        sdk_profiler_rule.to_profiler_rule_config_dict() | {"RuleEvaluatorImage": RULE_IMAGE}
    ]
    # Every collection a rule reads is saved by our hook, with the rule's selection regex.
    hook_collections = {
        c["CollectionName"]: c.get("CollectionParameters", {})
        for c in ours["DebugHookConfig"]["CollectionConfigurations"]
    }
    for rule in sdk_rules:
        for needed in rule.collection_configs:
            assert needed.name in hook_collections, (rule.name, needed.name)
            regex = needed.parameters.get("include_regex")
            assert hook_collections[needed.name].get("include_regex") == regex


def test_hook_config_matches_the_sdk_encoding(with_rule_containers: Settings, dataset: Dataset) -> None:
    ours = training_job_request(with_rule_containers, dataset, BEST, "train-1", CODE_URI, "us-east-1")
    # 6,680 training images at batch 64 for 10 epochs: 1,050 steps, weights and gradients every 42nd.
    assert dataset.counts["train"] == 6680 and with_rule_containers.training_epochs == 10
    sdk = DebuggerHookConfig(
        s3_output_path="s3://dog-data/jobs/251125-015343-3f9a1c/",
        hook_parameters={"train.save_interval": "42", "eval.save_interval": "42"},
        collection_configs=[
            CollectionConfig("weights"),
            CollectionConfig("gradients"),
            CollectionConfig("losses", parameters={"train.save_interval": "1", "eval.save_interval": "1"}),
            CollectionConfig("relu_input", parameters={"include_regex": ".*relu_input"}),
        ],
    )._to_request_dict()

    assert ours["DebugHookConfig"] == sdk
    assert_valid("create_training_job", ours)


@pytest.mark.parametrize("train_images", [60, 6680, 50_000])
@pytest.mark.parametrize("epochs", [1, 10, 40])
def test_hook_saves_enough_steps_for_the_rules_at_every_searched_batch_size(train_images: int, epochs: int) -> None:
    for batch_size in BATCH_SIZES:
        steps = training_steps(train_images, batch_size, epochs)
        interval = int(hook_parameters(train_images, batch_size, epochs)["train.save_interval"])
        saves = len(range(0, steps, interval))
        # VanishingGradient sees the whole job: about TENSOR_SAVES_PER_JOB saves, all of them when the job is short
        assert saves >= min(steps, TENSOR_SAVES_PER_JOB), (batch_size, steps, interval)
        assert saves < 2 * TENSOR_SAVES_PER_JOB
        assert steps - interval * (saves - 1) <= interval  # the last save lies in the last interval: the end is seen


def test_profiler_off_disables_it_and_sends_no_profiler_rule(with_rule_containers: Settings, dataset: Dataset) -> None:
    # The SDK notes that a ProfilerRule next to DisableProfiler is an invalid request shape.
    settings = dataclasses.replace(with_rule_containers, profiler_rules_enabled=False)

    ours = training_job_request(settings, dataset, BEST, "train-1", CODE_URI, "us-east-1")

    assert ours["ProfilerConfig"] == {"DisableProfiler": True}
    assert "ProfilerRuleConfigurations" not in ours
    assert len(ours["DebugRuleConfigurations"]) == 5
    assert enabled_rules(settings) == [
        "VanishingGradient",
        "LossNotDecreasing",
        "Overfit",
        "Overtraining",
        "PoorWeightInitialization",
    ]
    assert_valid("create_training_job", ours)


def test_debugger_off_sends_no_hook_and_no_debugger_rule(with_rule_containers: Settings, dataset: Dataset) -> None:
    settings = dataclasses.replace(with_rule_containers, debugger_rules_enabled=False)

    ours = training_job_request(settings, dataset, BEST, "train-1", CODE_URI, "us-east-1")

    assert "DebugHookConfig" not in ours and "DebugRuleConfigurations" not in ours
    assert [rule["RuleConfigurationName"] for rule in ours["ProfilerRuleConfigurations"]] == ["ProfilerReport"]
    assert enabled_rules(settings) == ["ProfilerReport"]
    assert_valid("create_training_job", ours)


def test_extra_hyperparameters_reach_both_jobs_in_wire_form(settings: Settings, dataset: Dataset) -> None:
    settings = dataclasses.replace(settings, extra_hyperparameters={"image_size": "64", "backbone": "resnet18"})

    tuning = tuning_job_request(settings, dataset, "hpo-1", CODE_URI, "us-east-1")
    training = training_job_request(settings, dataset, BEST, "train-1", CODE_URI, "us-east-1")

    for hyperparameters in (tuning["TrainingJobDefinition"]["StaticHyperParameters"], training["HyperParameters"]):
        assert hyperparameters["image_size"] == "64"
        assert hyperparameters["backbone"] == '"resnet18"'


def test_model_and_endpoint_config_requests_are_valid(settings: Settings, dataset: Dataset) -> None:
    model = model_request(settings, dataset, "dogs-1", "s3://dog-data/jobs/r/train-1/output/model.tar.gz", "us-east-1")
    config = endpoint_config_request(settings, dataset, "dogs-1", "dogs-1")

    assert model["PrimaryContainer"]["Environment"] == INFERENCE_ENVIRONMENT
    assert config["ProductionVariants"][0]["VariantName"] == "AllTraffic"
    assert_valid("create_model", model)
    assert_valid("create_endpoint_config", config)


@pytest.mark.parametrize(("wire", "value"), [('"64"', "64"), ("64", 64), ("0.0123", 0.0123), ("resnet", "resnet")])
def test_tuned_values_decode_from_either_encoding(wire: str, value: object) -> None:
    assert decode_hyperparameter(wire) == value


def test_defaults_ask_for_no_sagemaker_rule_container(settings: Settings, dataset: Dataset) -> None:
    # GIVEN the template's defaults (an account opened after Debugger closed to new customers)
    assert not settings.debugger_rules_enabled and not settings.profiler_rules_enabled

    ours = training_job_request(settings, dataset, BEST, "train-1", CODE_URI, "us-east-1")

    # THEN the job asks for nothing Debugger or Profiler runs: the training code profiles and checks itself
    assert "DebugHookConfig" not in ours and "DebugRuleConfigurations" not in ours
    assert ours["ProfilerConfig"] == {"DisableProfiler": True} and "ProfilerRuleConfigurations" not in ours
    assert enabled_rules(settings) == []
    assert_valid("create_training_job", ours)
