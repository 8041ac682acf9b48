"""functions/vendor_training_wheels.py and its wiring: the training code installs without a network.

The download itself needs PyPI and is not run here; what is checked offline: the rewrite of requirements.txt, that
pip really installs from the rewritten file's relative ``wheels`` folder whatever the working directory, the
closure check, and that functions/Makefile vendors the wheels into exactly the bundles that upload the code.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from dlc_training_image import IMAGE_DATA_YML
from template_loading import REPO_ROOT

MAKEFILE = REPO_ROOT / "functions" / "Makefile"
TRAINING_REQUIREMENTS = REPO_ROOT / "training_code" / "requirements.txt"


def _load_helper() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "vendor_training_wheels", MAKEFILE.parent / "vendor_training_wheels.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


helper = _load_helper()


# -- the rewrite of requirements.txt ---------------------------------------------------------------------------------


def test_rewrite_puts_the_offline_options_first_and_keeps_every_line() -> None:
    original = TRAINING_REQUIREMENTS.read_text()
    rewritten = helper.offline_requirements(original)
    statements = [line for line in rewritten.splitlines() if line.strip() and not line.startswith("#")]
    assert statements[:2] == ["--no-index", "--find-links wheels"]
    assert rewritten.endswith(original)
    assert helper.requirement_lines(rewritten) == helper.requirement_lines(original)
    assert "smdebug==1.0.34" in helper.requirement_lines(rewritten)


def test_rewrite_refuses_requirements_that_already_choose_an_index() -> None:
    with pytest.raises(ValueError, match="already choose"):
        helper.offline_requirements(helper.offline_requirements("numpy\n"))
    with pytest.raises(ValueError, match="already choose"):
        helper.offline_requirements("--index-url=https://example.invalid/simple\nnumpy\n")


def test_requirement_lines_leave_out_comments_blank_lines_and_options() -> None:
    text = "# a comment\n\n-r other.txt\nnumpy<2.3  # inline\nprotobuf>=3.20.0,<=3.20.3\n  pandas\n"
    assert helper.requirement_lines(text) == ["numpy<2.3", "protobuf>=3.20.0,<=3.20.3", "pandas"]
    assert helper.requirement_lines(text, options=True) == ["-r other.txt"]


def _write_wheel(directory: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal pure-Python wheel (one module, METADATA, WHEEL, RECORD): enough for pip to install."""
    dist_info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {line}\n" for line in requires)
    files = {
        f"{name}.py": "",
        f"{dist_info}/METADATA": metadata,
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{dist_info}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{dist_info}/RECORD"])
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, content in files.items():
            wheel.writestr(member, content)
    return path


@pytest.mark.parametrize("cwd", ["code_dir", "elsewhere"], ids=["cwd is the code dir (the toolkit)", "other cwd"])
def test_pip_installs_from_the_relative_wheels_folder_only(tmp_path: Path, cwd: str) -> None:
    code_dir = tmp_path / "code"
    (code_dir / helper.WHEEL_DIR).mkdir(parents=True)
    _write_wheel(code_dir / helper.WHEEL_DIR, "vendored_demo", "1.0", requires=("vendored_dep>=2",))
    _write_wheel(code_dir / helper.WHEEL_DIR, "vendored_dep", "2.1")
    (code_dir / "requirements.txt").write_text(helper.offline_requirements("vendored_demo==1.0\n"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # This machine's pip configuration (indexes, find-links) must not help; an unreachable index proves nothing is
    # fetched: --no-index in the file is what keeps pip off it.
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    environment |= {"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/", "PIP_NO_INPUT": "1"}
    target = tmp_path / "target"
    requirements = "requirements.txt" if cwd == "code_dir" else str(code_dir / "requirements.txt")
    pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-cache-dir"]
    result = subprocess.run(
        [*pip, "--target", str(target), "-r", requirements],
        cwd=code_dir if cwd == "code_dir" else elsewhere,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert {path.name for path in target.glob("*.dist-info")} == {
        "vendored_demo-1.0.dist-info",
        "vendored_dep-2.1.dist-info",
    }


# -- the closure check -----------------------------------------------------------------------------------------------

TARGET = helper.target_environment("3.12", "manylinux_2_28_x86_64")


def test_target_environment_is_cpython_on_linux_of_the_platform_tag() -> None:
    assert TARGET["python_version"] == "3.12"
    assert TARGET["python_full_version"] == "3.12.0"
    assert (TARGET["sys_platform"], TARGET["platform_machine"]) == ("linux", "x86_64")
    assert helper.target_environment("3.12", "manylinux2014_aarch64")["platform_machine"] == "aarch64"
    with pytest.raises(ValueError, match="Linux"):
        helper.target_environment("3.12", "macosx_11_0_arm64")


def _distribution(name: str, version: str, *requires: str, build: tuple[str, ...] = ()) -> Any:
    return helper.Distribution(name=name, version=version, requires=requires, build_requires=build)


def test_closure_is_complete_when_every_applicable_requirement_is_there() -> None:
    distributions = [
        _distribution(
            "smdebug", "1.0.34", "numpy>=1.16", 'backport; python_version < "3.12"', 'winlib; sys_platform == "win32"'
        ),
        _distribution("NumPy", "2.2.6"),
    ]
    assert helper.unmet_requirements(["smdebug==1.0.34", "numpy<2.3"], distributions, TARGET) == []


def test_closure_reports_what_the_target_needs_and_pip_resolved_away() -> None:
    # A resolution run on Python 3.11 skips a dependency that only 3.12 needs: the check evaluates for the target.
    distributions = [_distribution("pandas", "3.1.1", 'numpy>=1.26; python_version >= "3.12"', "dateutil[tz]")]
    distributions.append(_distribution("dateutil", "2.9", 'tzdata; extra == "tz"'))
    unmet = helper.unmet_requirements(["pandas"], distributions, TARGET)
    assert unmet == ['numpy>=1.26; python_version >= "3.12" (for pandas)', 'tzdata; extra == "tz" (for dateutil)']
    assert helper.unmet_requirements(
        ["pandas"], distributions[:1], helper.target_environment("3.11", "manylinux2014_x86_64")
    ) == ["dateutil[tz] (for pandas)"]


def test_closure_reports_wrong_versions_and_missing_build_backends() -> None:
    distributions = [_distribution("numpy", "2.4.3"), _distribution("cext", "0.2.4", build=("setuptools>=40.8.0",))]
    assert helper.unmet_requirements(["numpy<2.3", "cext"], distributions, TARGET) == [
        "numpy<2.3 (for requirements.txt)",
        "setuptools>=40.8.0 (for cext (to build))",
    ]


def test_read_distribution_of_a_wheel_and_of_sdists(tmp_path: Path) -> None:
    wheel = helper.read_distribution(_write_wheel(tmp_path, "demo", "1.2", requires=("numpy>=1.16",)))
    assert (wheel.name, wheel.version, wheel.requires, wheel.build_requires) == ("demo", "1.2", ("numpy>=1.16",), ())

    def sdist(name: str, files: dict[str, str]) -> Path:
        path = tmp_path / f"{name}-0.2.4.tar.gz"
        with tarfile.open(path, "w:gz") as archive:
            for member, content in files.items():
                info = tarfile.TarInfo(f"{name}-0.2.4/{member}")
                info.size = len(content.encode())
                archive.addfile(info, io.BytesIO(content.encode()))
        return path

    pkg_info = "Metadata-Version: 1.1\nName: {}\nVersion: 0.2.4\n"
    legacy = helper.read_distribution(sdist("legacy", {"PKG-INFO": pkg_info.format("legacy"), "setup.py": ""}))
    assert (legacy.name, legacy.version, legacy.requires) == ("legacy", "0.2.4", ())
    assert legacy.build_requires == helper.DEFAULT_BUILD_REQUIREMENTS
    pyproject = '[build-system]\nrequires = ["hatchling>=1.2"]\nbuild-backend = "hatchling.build"\n'
    modern = helper.read_distribution(
        sdist("modern", {"PKG-INFO": pkg_info.format("modern"), "pyproject.toml": pyproject})
    )
    assert modern.build_requires == ("hatchling>=1.2",)


# -- functions/Makefile ----------------------------------------------------------------------------------------------


def _makefile_settings() -> dict[str, str]:
    lines = [
        line for line in MAKEFILE.read_text().splitlines() if ":=" in line and not line.startswith(("\t", "build-"))
    ]
    return {name.strip(): value.strip() for name, value in (line.split(":=", 1) for line in lines)}


def _uploads_training_code(function: dict[str, Any]) -> bool:
    module = function["Properties"]["Handler"].rsplit(".", 1)[0]
    source = REPO_ROOT / "functions" / Path(*module.split(".")).with_suffix(".py")
    return "ensure_uploaded(" in source.read_text()


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_makefile_vendors_the_wheels_into_exactly_the_bundles_that_upload_the_training_code(
    sam_functions: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    uploaders = {name for name, function in sam_functions.items() if _uploads_training_code(function)}
    assert uploaders == {"StartTuningFunction", "StartTrainingFunction"}
    artifacts = tmp_path / "artifacts"
    for name in sam_functions:
        # -n prints the commands and runs none of them (no download, nothing written).
        printed = subprocess.run(
            ["make", "--no-print-directory", "-n", "-f", str(MAKEFILE), f"build-{name}", f"ARTIFACTS_DIR={artifacts}"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        vendoring = [line for line in printed.splitlines() if "vendor_training_wheels.py" in line]
        if name not in uploaders:
            assert vendoring == [], name
            continue
        (command,) = vendoring
        assert f'"{artifacts}/training_code"' in command, command
        copy = printed.index(f'cp -R "{REPO_ROOT / "training_code"}" "{artifacts}/training_code"')
        assert copy < printed.index("vendor_training_wheels.py"), "vendors into the fresh copy"
        settings = _makefile_settings()
        arguments = re.findall(r"--(python-version|platform|sdist) (\S+)", command)
        assert arguments == [
            ("python-version", settings["TRAINING_PYTHON_VERSION"]),
            ("platform", settings["TRAINING_PLATFORM"]),
            ("platform", settings["TRAINING_PLATFORM_GLIBC_2_28"]),
            *[("sdist", name) for name in settings["TRAINING_SDISTS"].split()],
        ]
    assert not artifacts.exists()


def test_vendored_platform_is_the_default_training_images() -> None:
    settings = _makefile_settings()
    image = yaml.safe_load(IMAGE_DATA_YML)
    assert image["python"] == "py" + settings["TRAINING_PYTHON_VERSION"].replace(".", "")
    # AWS's PyTorch SageMaker training images are x86_64 only (no Graviton training instances).
    for setting in ("TRAINING_PLATFORM", "TRAINING_PLATFORM_GLIBC_2_28"):
        assert settings[setting].endswith("_x86_64"), setting
    assert settings["TRAINING_PLATFORM"].startswith("manylinux2014")
    assert settings["TRAINING_PLATFORM_GLIBC_2_28"].startswith("manylinux_2_28")
