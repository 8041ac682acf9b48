"""The template's per-region container images are exactly what the SageMaker Python SDK 2.x resolves."""

from __future__ import annotations

from typing import Any

import pytest
from image_mapping import CPU_INSTANCE, GPU_INSTANCE, as_yaml, expected_mapping


@pytest.fixture(scope="module")
def sdk_mapping(sam_template: dict[str, Any]) -> dict[str, dict[str, str]]:
    defaults = {name: spec.get("Default") for name, spec in sam_template["Parameters"].items()}
    return expected_mapping(defaults["TrainingInstanceType"], defaults["EndpointInstanceType"])


def test_region_images_are_the_sdk_images_for_every_region_it_knows(
    sam_template: dict[str, Any], sdk_mapping: dict[str, dict[str, str]]
) -> None:
    assert sam_template["Mappings"]["RegionImages"] == sdk_mapping, (
        "template.yaml's RegionImages differ from the SDK; paste this block (python tests/template/image_mapping.py):"
        f"\n{as_yaml(sdk_mapping)}"
    )


def test_default_instance_types_match_the_processor_of_the_mapped_images(sam_template: dict[str, Any]) -> None:
    # The mapping holds GPU training and CPU inference images; the defaults must be instances of those kinds.
    defaults = {name: spec.get("Default") for name, spec in sam_template["Parameters"].items()}
    one_region = ["us-east-1"]
    reference = expected_mapping(GPU_INSTANCE, CPU_INSTANCE, one_region)
    for training_kind in ("TuningInstanceType", "TrainingInstanceType"):
        chosen = expected_mapping(defaults[training_kind], defaults["EndpointInstanceType"], one_region)
        assert chosen == reference, training_kind
    assert "-gpu-" in reference["us-east-1"]["TrainingImage"]
    assert "-cpu-" in reference["us-east-1"]["InferenceImage"]


def test_regions_without_a_rule_image_turn_the_rules_off(sam_template: dict[str, Any]) -> None:
    conditions = sam_template["Conditions"]
    variables = sam_template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["DEBUGGER_RULES_ENABLED"] == {"Fn::If": ["DebuggerRulesOn", "true", "false"]}
    assert variables["PROFILER_RULES_ENABLED"] == {"Fn::If": ["ProfilerRulesOn", "true", "false"]}
    for condition in ("DebuggerRulesOn", "ProfilerRulesOn"):
        assert {"Condition": "RuleImageAvailable"} in conditions[condition]["Fn::And"]


def test_sagemaker_rule_containers_are_off_by_default(sam_template: dict[str, Any]) -> None:
    # Debugger is closed to new accounts and Profiler support ends 2027-06-30: the defaults must not need them;
    # every job's own rule and profiler reports gate the run (docs/deploy.md, "Rules and profiler").
    parameters = sam_template["Parameters"]
    assert parameters["DebuggerRules"]["Default"] == parameters["ProfilerRules"]["Default"] == "false"
