"""The template's RegionImages mapping as the SageMaker Python SDK 2.x computes it (offline, bundled JSON).

Run ``python tests/template/image_mapping.py`` to print the YAML block to paste into template.yaml after an SDK
upgrade or a framework version change; test_template_image_uris.py compares the template with
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

# The v2 SDK warns about its own deprecation on import; the 2.x line is the one that still resolves images.
os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
# It also logs, at INFO on stdout, that it found no defaults file.
logging.getLogger("sagemaker.config").setLevel(logging.WARNING)

FRAMEWORK_VERSION = "2.6.0"
PY_VERSION = "py312"
UNAVAILABLE = "unavailable"
# Any instance types of the right processor kind: the image only depends on gpu vs cpu.
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
    image_uris, _, _ = _sdk()
    config = image_uris.config_for_framework("pytorch")
    training = set(config["training"]["versions"][FRAMEWORK_VERSION]["registries"])
    inference = set(config["inference"]["versions"][FRAMEWORK_VERSION]["registries"])
    return sorted(training & inference)


def expected_mapping(
    training_instance: str = GPU_INSTANCE, inference_instance: str = CPU_INSTANCE, regions: list[str] | None = None
) -> dict[str, dict[str, str]]:
    image_uris, rule_image, utils = _sdk()
    mapping = {}
    with _one_endpoint_resolver(utils):
        for region in pytorch_regions() if regions is None else regions:
            common = {"framework": "pytorch", "region": region, "version": FRAMEWORK_VERSION, "py_version": PY_VERSION}
            try:
                rules = rule_image("DebuggerRules", region)
            except ValueError:
                rules = UNAVAILABLE
            mapping[region] = {
                "TrainingImage": image_uris.retrieve(**common, instance_type=training_instance, image_scope="training"),
                "InferenceImage": image_uris.retrieve(
                    **common, instance_type=inference_instance, image_scope="inference"
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
