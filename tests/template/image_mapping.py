"""The template's RegionImages mapping: the training image from the DLC repository, the rest from the SDK.

- TrainingImage: AWS's unified ``pytorch`` SageMaker training image (2.13.0, GPU), the newest that still receives
  security patches. The SageMaker Python SDK does not know it; account and tag come from the DLC repository's own
  documents, copied with their commit into dlc_training_image.py. Regions that table does not list (GovCloud) get
  ``unavailable``: pass TrainingImageUri there.
- InferenceImage: the PyTorch 2.6.0 CPU inference image as the SageMaker Python SDK 2.x resolves it (offline,
  bundled JSON); AWS publishes no newer PyTorch inference image (docs/deploy.md, "Container images").
- RuleImage: the Debugger rule image, from the SDK; ``unavailable`` where the region has none.

Run ``python tests/template/image_mapping.py`` to print the YAML block to paste into template.yaml after an SDK
upgrade, a new DLC table or an image change; test_template_image_uris.py compares the template with
:func:`expected_mapping`.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dlc_training_image

# The v2 SDK warns about its own deprecation on import; the 2.x line is the one that still resolves images.
os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
# It also logs, at INFO on stdout, that it found no defaults file.
logging.getLogger("sagemaker.config").setLevel(logging.WARNING)

# The serving image: the newest PyTorch inference DLC there is (the SDK's newest "inference" entry too).
INFERENCE_FRAMEWORK_VERSION = "2.6.0"
PY_VERSION = "py312"
UNAVAILABLE = "unavailable"
# Any instance type of the right processor kind: the inference image only depends on gpu vs cpu.
GPU_INSTANCE = "ml.g4dn.xlarge"
CPU_INSTANCE = "ml.m5.large"


def _sdk() -> tuple[Any, Any, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sagemaker import image_uris, utils
        from sagemaker.debugger import get_rule_container_image_uri
    return image_uris, get_rule_container_image_uri, utils


@contextmanager
def _one_endpoint_resolver(utils: Any) -> Iterator[None]:
    # The SDK parses botocore's endpoints.json again on every call (~80 ms); the data is the same each time.
    original = utils._botocore_resolver
    utils._botocore_resolver = functools.cache(original)
    try:
        yield
    finally:
        utils._botocore_resolver = original


def pytorch_regions() -> list[str]:
    """The regions of the SDK's PyTorch inference image: the endpoint needs it."""
    image_uris, _, _ = _sdk()
    config = image_uris.config_for_framework("pytorch")
    return sorted(config["inference"]["versions"][INFERENCE_FRAMEWORK_VERSION]["registries"])


def processor(instance_type: str) -> str:
    """The processor kind ("gpu" or "cpu") the SDK sees in an instance type."""
    image_uris, _, _ = _sdk()
    kind: str = image_uris._processor(instance_type, ["cpu", "gpu"])
    return kind


def ecr_hostname(utils: Any, region: str) -> str:
    """ECR's host name in a region, computed as image_uris.retrieve does (``ecr.<region>.amazonaws.com.cn`` in
    China), from botocore's endpoint data."""
    endpoint = utils._botocore_resolver().construct_endpoint("ecr", region)
    if region == "il-central-1" and not endpoint:  # the SDK's own fallback: older botocore data lacks the region
        endpoint = {"hostname": f"ecr.{region}.amazonaws.com"}
    hostname: str = endpoint["hostname"]
    return hostname


def training_image(utils: Any, region: str) -> str:
    if region not in dlc_training_image.region_accounts():
        return UNAVAILABLE
    return dlc_training_image.training_image_uri(region, ecr_hostname(utils, region))


def expected_mapping(
    inference_instance: str = CPU_INSTANCE, regions: list[str] | None = None
) -> dict[str, dict[str, str]]:
    image_uris, rule_image, utils = _sdk()
    mapping = {}
    with _one_endpoint_resolver(utils):
        for region in pytorch_regions() if regions is None else regions:
            try:
                rules = rule_image("DebuggerRules", region)
            except ValueError:
                rules = UNAVAILABLE
            mapping[region] = {
                "TrainingImage": training_image(utils, region),
                "InferenceImage": image_uris.retrieve(
                    framework="pytorch",
                    region=region,
                    version=INFERENCE_FRAMEWORK_VERSION,
                    py_version=PY_VERSION,
                    instance_type=inference_instance,
                    image_scope="inference",
                ),
                "RuleImage": rules,
            }
    return mapping


def as_yaml(mapping: dict[str, dict[str, str]]) -> str:
    lines = ["  RegionImages:"]
    for region, images in mapping.items():
        lines.append(f"    {region}:")
        lines.extend(f"      {name}: {uri}" for name, uri in images.items())
    return "\n".join(lines)


if __name__ == "__main__":
    print(as_yaml(expected_mapping()))
