"""The template's per-region container images are exactly what their sources give.

Training: AWS's unified ``pytorch`` 2.13.0 SageMaker image, checked against the DLC repository's region table and
image data (dlc_training_image.py, with the commit they were copied from). Inference and rule images: the
SageMaker Python SDK 2.x's ``image_uris.retrieve`` and ``get_rule_container_image_uri``.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import dlc_training_image
import pytest
from dlc_training_image import image_data, pinned_tag, region_accounts
from image_mapping import INFERENCE_FRAMEWORK_VERSION, UNAVAILABLE, as_yaml, expected_mapping, processor

IMAGE_ENVS = Path(__file__).resolve().parents[1] / "image_envs"
# <account>.dkr.ecr.<region>.<domain>/<repository>:<tag>
PRIVATE_ECR_URI = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.(?P<domain>amazonaws\.com(\.cn)?)/"
    r"(?P<repository>[a-z0-9-]+):(?P<tag>[A-Za-z0-9._-]+)$"
)


def training_image_problems(mapping: dict[str, dict[str, str]]) -> list[str]:
    """Every TrainingImage read back into its parts and compared with the DLC documents, one message per fault.

    Independent of image_mapping.py's URI building, so a fault in either shows up."""
    accounts = region_accounts()
    problems = [f"{region}: missing (the DLC table lists it)" for region in sorted(set(accounts) - set(mapping))]
    for region, images in mapping.items():
        uri = images["TrainingImage"]
        if region not in accounts:
            if uri != UNAVAILABLE:
                problems.append(f"{region}: {uri!r}, but the DLC table has no account there (expected {UNAVAILABLE})")
            continue
        parts = PRIVATE_ECR_URI.match(uri)
        if parts is None:
            problems.append(f"{region}: {uri!r} is not a private ECR image URI")
            continue
        domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
        expected = {
            "account": accounts[region],
            "region": region,
            "domain": domain,
            "repository": dlc_training_image.REPOSITORY,
            "tag": pinned_tag(),
        }
        problems.extend(
            f"{region}: {name} {parts[name]!r}, expected {value!r}"
            for name, value in expected.items()
            if parts[name] != value
        )
    return problems


def requirement_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


@pytest.fixture(scope="module")
def defaults(sam_template: dict[str, Any]) -> dict[str, Any]:
    return {name: spec.get("Default") for name, spec in sam_template["Parameters"].items()}


@pytest.fixture(scope="module")
def region_images(sam_template: dict[str, Any]) -> dict[str, dict[str, str]]:
    return sam_template["Mappings"]["RegionImages"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def sources_mapping(defaults: dict[str, Any]) -> dict[str, dict[str, str]]:
    return expected_mapping(defaults["EndpointInstanceType"])


def test_region_images_are_what_the_dlc_documents_and_the_sdk_give_for_every_region(
    region_images: dict[str, dict[str, str]], sources_mapping: dict[str, dict[str, str]]
) -> None:
    assert region_images == sources_mapping, (
        "template.yaml's RegionImages differ from their sources; paste this block "
        f"(python tests/template/image_mapping.py):\n{as_yaml(sources_mapping)}"
    )


def test_every_training_image_is_the_dlc_account_region_repository_and_tag(
    region_images: dict[str, dict[str, str]],
) -> None:
    assert training_image_problems(region_images) == []
    assert region_images["us-east-1"]["TrainingImage"] == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch:2.13.0-cu133-amzn2023-sagemaker"
    )
    assert region_images["cn-north-1"]["TrainingImage"] == (
        "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/pytorch:2.13.0-cu133-amzn2023-sagemaker"
    )
    # GovCloud is not in the DLC table: no guessed URI, the deployer passes TrainingImageUri.
    assert {region for region, images in region_images.items() if images["TrainingImage"] == UNAVAILABLE} == {
        "us-gov-east-1",
        "us-gov-west-1",
    }


@pytest.mark.parametrize(
    ("region", "fault", "message"),
    [
        ("af-south-1", ("626614931356", "763104351884"), "account '763104351884', expected '626614931356'"),
        ("us-west-2", ("2.13.0-cu133", "2.13-cu133"), "tag '2.13-cu133-amzn2023-sagemaker'"),
        ("us-west-2", ("2.13.0-cu133", "2.12.1-cu130"), "tag '2.12.1-cu130-amzn2023-sagemaker'"),
        ("cn-northwest-1", ("amazonaws.com.cn", "amazonaws.com"), "domain 'amazonaws.com', expected"),
        ("eu-west-1", ("/pytorch:", "/pytorch-training:"), "repository 'pytorch-training'"),
        ("eu-west-1", ("eu-west-1.amazonaws", "eu-west-2.amazonaws"), "region 'eu-west-2', expected 'eu-west-1'"),
        ("us-gov-west-1", (UNAVAILABLE, "442386744353.dkr.ecr.us-gov-west-1.amazonaws.com/pytorch:x"), "no account"),
    ],
)
def test_the_training_image_check_catches_each_kind_of_fault(
    region_images: dict[str, dict[str, str]], region: str, fault: tuple[str, str], message: str
) -> None:
    broken = copy.deepcopy(region_images)
    right, wrong = fault
    broken[region]["TrainingImage"] = broken[region]["TrainingImage"].replace(right, wrong)
    problems = training_image_problems(broken)
    assert len(problems) == 1 and problems[0].startswith(f"{region}: ") and message in problems[0], problems


def test_the_check_catches_a_region_of_the_dlc_table_missing_from_the_mapping(
    region_images: dict[str, dict[str, str]],
) -> None:
    broken = {region: images for region, images in region_images.items() if region != "ap-southeast-7"}
    assert training_image_problems(broken) == ["ap-southeast-7: missing (the DLC table lists it)"]


def test_the_region_table_reader_rejects_rows_it_cannot_read() -> None:
    header = "| Region | Code | Account ID |\n| --- | --- | --- |\n"
    assert region_accounts(header + "| EU (Paris) | eu-west-3 | 763104351884 |\n") == {"eu-west-3": "763104351884"}
    for bad in ("| EU (Paris) | eu-west-3 | 76310435188 |", "| EU (Paris) | Paris | 763104351884 |"):
        with pytest.raises(ValueError, match="not a region row"):
            region_accounts(header + bad)
    twice = "| EU (Paris) | eu-west-3 | 763104351884 |\n"
    with pytest.raises(ValueError, match="twice"):
        region_accounts(header + twice + twice)
    # The copied table is whole: the 36 regions of the DLC documentation.
    assert len(region_accounts()) == 36


def test_the_default_training_image_is_the_pinned_gpu_sagemaker_amazon_linux_2023_image() -> None:
    data = image_data()
    assert (data["framework"], data["platform"], data["accelerator"], data["os"], data["python"]) == (
        "PyTorch",
        "sagemaker",
        "gpu",
        "amzn2023",
        "py312",
    )
    # The full version of the data file's two tags (the other is the moving "2.13-..." tag).
    assert pinned_tag() == "2.13.0-cu133-amzn2023-sagemaker"
    assert pinned_tag().startswith(f"{data['version']}.") and pinned_tag() in data["tags"]
    assert (data["ga"], data["eop"]) == ("2026-07-20", "2027-07-20")


def test_default_instance_types_match_the_processor_of_the_mapped_images(
    defaults: dict[str, Any], region_images: dict[str, dict[str, str]]
) -> None:
    # The mapping holds GPU (CUDA) training and CPU inference images; the defaults must be instances of those kinds.
    for training_kind in ("TuningInstanceType", "TrainingInstanceType"):
        assert processor(defaults[training_kind]) == "gpu", training_kind
    assert image_data()["accelerator"] == "gpu" and "-cu" in region_images["us-east-1"]["TrainingImage"]
    assert processor(defaults["EndpointInstanceType"]) == "cpu"
    assert "-cpu-" in region_images["us-east-1"]["InferenceImage"]
    assert expected_mapping(defaults["EndpointInstanceType"], ["us-east-1"]) == expected_mapping(regions=["us-east-1"])


def test_parameter_descriptions_name_the_default_images(sam_template: dict[str, Any]) -> None:
    parameters = sam_template["Parameters"]
    training = parameters["TrainingImageUri"]["Description"]
    assert pinned_tag() in training and image_data()["eop"] in training and "GovCloud" in training
    assert f"PyTorch {INFERENCE_FRAMEWORK_VERSION} CPU inference" in parameters["InferenceImageUri"]["Description"]


def test_the_image_test_environments_pin_the_default_images_versions() -> None:
    # `make test-image-versions` runs the training code on the training image's torch and the serving code on the
    # inference image's; those pins must follow the images the template uses.
    training = requirement_pins(IMAGE_ENVS / "training-image.txt")
    assert pinned_tag().startswith(f"{training['torch']}-")
    serving = requirement_pins(IMAGE_ENVS / "serving-image.txt")
    assert serving["torch"] == INFERENCE_FRAMEWORK_VERSION
    # Their test runner is the main environment's.
    groups = tomllib.loads((IMAGE_ENVS.parents[1] / "pyproject.toml").read_text())["dependency-groups"]
    pytest_pin = next(pin for pin in groups["test"] if pin.startswith("pytest=="))
    assert requirement_pins(IMAGE_ENVS / "test-tools.txt") == {"pytest": pytest_pin.split("==")[1]}


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
