"""functions/requirements.txt (what `sam build` bundles) is the tested environment's Lambda dependencies, pinned."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from template_loading import REPO_ROOT

REQUIREMENTS = REPO_ROOT / "functions" / "requirements.txt"
# The python3.12 Lambda runtime provides the AWS SDK and its dependencies; bundling them would shadow it.
PROVIDED_BY_THE_RUNTIME = {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
NEVER_BUNDLED = {"torch", "torchvision", "sagemaker", "boto3", "botocore", "smdebug", "numpy", "pandas"}


REPORT_REQUIREMENTS = REPO_ROOT / "functions" / "report_requirements.txt"


def _bundle_requirements(path: Path = REQUIREMENTS) -> dict[str, Requirement]:
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    requirements = [Requirement(line) for line in lines if line]
    return {canonicalize_name(r.name): r for r in requirements}


def _pinned_version(requirement: Requirement) -> str:
    (specifier,) = requirement.specifier
    assert specifier.operator == "==", f"{requirement} is not pinned exactly"
    return specifier.version


def test_bundle_pins_the_project_dependencies_exactly_as_pyproject() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    bundle = _bundle_requirements()
    for line in project["dependencies"]:
        declared = Requirement(line)
        bundled = bundle.get(canonicalize_name(declared.name))
        assert bundled is not None, f"{declared.name} is a project dependency but not in functions/requirements.txt"
        assert (bundled.extras, str(bundled.specifier)) == (declared.extras, str(declared.specifier))


@pytest.mark.parametrize("path", [REQUIREMENTS, REPORT_REQUIREMENTS], ids=["bundle", "report bundle"])
def test_every_bundled_version_is_the_one_the_tests_run_with(path: Path) -> None:
    for name, requirement in _bundle_requirements(path).items():
        assert _pinned_version(requirement) == metadata.version(name), name


@pytest.mark.parametrize("path", [REQUIREMENTS, REPORT_REQUIREMENTS], ids=["bundle", "report bundle"])
def test_bundle_is_the_whole_dependency_closure_without_the_runtime_sdk(path: Path) -> None:
    # functions/Makefile installs with --no-deps, so a dependency missing here would be missing on Lambda.
    bundle = _bundle_requirements(REQUIREMENTS) | _bundle_requirements(path)
    for name, requirement in bundle.items():
        for dependency_line in metadata.requires(name) or []:
            dependency = Requirement(dependency_line)
            needed = dependency.marker is None or any(
                dependency.marker.evaluate({"extra": extra, "python_version": "3.12", "sys_platform": "linux"})
                for extra in requirement.extras | {""}
            )
            dependency_name = canonicalize_name(dependency.name)
            if needed and dependency_name not in PROVIDED_BY_THE_RUNTIME:
                assert dependency_name in bundle, f"{name} needs {dependency_name}, which the bundle lacks"


def test_bundle_leaves_out_the_sdk_and_the_training_stack() -> None:
    assert set(_bundle_requirements()) & NEVER_BUNDLED == set()


def test_report_bundle_pins_the_report_group_exactly_as_pyproject() -> None:
    group = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["dependency-groups"]["report"]
    bundle = _bundle_requirements(REPORT_REQUIREMENTS)
    for line in group:
        declared = Requirement(line)
        assert str(bundle[canonicalize_name(declared.name)].specifier) == str(declared.specifier), declared.name
    assert set(bundle) & (NEVER_BUNDLED - {"numpy"}) == set()  # numpy is matplotlib's; torch and the SDK never
