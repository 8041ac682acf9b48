"""Make a copy of training_code/ installable without a network: its packages beside it, its requirements offline.

With ``NetworkIsolation=true`` the training jobs cannot reach PyPI, yet the SageMaker training toolkit still runs
``python -m pip install -r requirements.txt`` in the code directory before our entry point. ``functions/Makefile``
runs this script on the copy of training_code/ it puts in the StartTuning and StartTraining bundles (the two that
upload it as ``sourcedir.tar.gz``)::

    python vendor_training_wheels.py CODE_DIR --python-version 3.12 \\
        --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --sdist pyinstrument-cext

1. ``pip download`` resolves CODE_DIR/requirements.txt for the training image's interpreter and platform (wheels
   only) into CODE_DIR/wheels. A package that publishes no wheel for it (``--sdist``: pyinstrument-cext, which
   smdebug's pyinstrument==3.4.2 needs, has none for CPython >= 3.10) goes in as its sdist, with the wheels of
   its build backend: pip compiles it in the container, which has gcc and the Python headers, as it did online.
2. Every requirement of what was downloaded is checked against it, markers evaluated for the target (pip
   evaluates them for the interpreter running it, so a dependency needed only on the target would be missing).
3. CODE_DIR/requirements.txt gets ``--no-index`` and ``--find-links wheels`` in front of its own lines. pip takes
   a relative find-links in a requirements file relative to that file when the folder exists there, and relative
   to the working directory otherwise; both are CODE_DIR when the toolkit runs pip.

training_code/requirements.txt in the repository stays as people write it: the offline run and the tests use it.
"""

from __future__ import annotations

import argparse
import email.parser
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # an interpreter without packaging: pip carries its own copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

WHEEL_DIR = "wheels"
OFFLINE_HEADER = (
    "# Rewritten by functions/vendor_training_wheels.py at `sam build`: the training jobs may run without a network\n"
    "# (NetworkIsolation), so pip installs only from the packages vendored beside this file.\n"
)
# What pip builds an sdist without a pyproject.toml with (PEP 517's fallback; pips before 23.1 also want wheel).
DEFAULT_BUILD_REQUIREMENTS = ("setuptools>=40.8.0", "wheel")
_COMMENT = re.compile(r"(^|\s)#.*")  # pip's rule: a comment starts at a # at the line's start or after a space
_ARCHITECTURES = ("x86_64", "aarch64", "i686", "ppc64le", "s390x", "armv7l")


def offline_requirements(text: str, wheel_dir: str = WHEEL_DIR) -> str:
    """``text`` (a requirements file) made to install from ``wheel_dir`` only; its own lines kept as they are."""
    options = {line.split("=", 1)[0].split()[0] for line in requirement_lines(text, options=True)}
    if options & {"--no-index", "--find-links", "-f", "--index-url", "-i", "--extra-index-url"}:
        raise ValueError(f"the requirements already choose where packages come from ({sorted(options)})")
    return f"{OFFLINE_HEADER}--no-index\n--find-links {wheel_dir}\n\n{text}"


def target_environment(python_version: str, platform: str) -> dict[str, str]:
    """The PEP 508 marker variables of CPython ``python_version`` on a Linux ``platform`` tag (manylinux...)."""
    machine = next((arch for arch in _ARCHITECTURES if platform.endswith(arch)), None)
    if not platform.startswith(("manylinux", "musllinux", "linux")) or machine is None:
        raise ValueError(f"{platform}: only Linux platform tags are supported")
    full_version = python_version if python_version.count(".") == 2 else f"{python_version}.0"
    return {
        "implementation_name": "cpython",
        "implementation_version": full_version,
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": full_version,
        "python_version": ".".join(python_version.split(".")[:2]),
        "sys_platform": "linux",
    }


@dataclass(frozen=True)
class Distribution:
    """What the check needs of one downloaded wheel or sdist."""

    name: str
    version: str
    requires: tuple[str, ...]  # an old sdist's PKG-INFO may list none (pip resolved them from its built metadata)
    build_requires: tuple[str, ...] = ()  # sdists only: what pip needs to build it


def unmet_requirements(
    requirements: Iterable[str], distributions: Iterable[Distribution], environment: Mapping[str, str]
) -> list[str]:
    """Each requirement, of ``requirements`` or of a distribution, that applies on ``environment`` and no
    distribution satisfies (with what asked for it); empty when ``pip install --no-index`` has all it needs."""
    available = {canonicalize_name(d.name): d for d in distributions}
    # (requirement, what asked for it, the extras that asker is installed with: its markers may test `extra`)
    pending = [(Requirement(line), "requirements.txt", frozenset({""})) for line in requirements]
    for distribution in available.values():
        pending += [
            (Requirement(line), f"{distribution.name} (to build)", frozenset({""}))
            for line in distribution.build_requires
        ]
    unmet, seen = [], set()
    while pending:
        requirement, wanted_by, extras = pending.pop()
        if requirement.marker is not None and not any(
            requirement.marker.evaluate({**environment, "extra": extra}) for extra in extras
        ):
            continue
        key = (str(requirement), frozenset(extras))
        if key in seen:
            continue
        seen.add(key)
        found = available.get(canonicalize_name(requirement.name))
        if found is None or not requirement.specifier.contains(found.version, prereleases=True):
            unmet.append(f"{requirement} (for {wanted_by})")
            continue
        pending += [(Requirement(line), found.name, frozenset({"", *requirement.extras})) for line in found.requires]
    return sorted(unmet)


def _metadata_distribution(metadata_text: str, build_requires: tuple[str, ...] = ()) -> Distribution:
    metadata = email.parser.Parser().parsestr(metadata_text)
    return Distribution(
        name=metadata["Name"],
        version=metadata["Version"],
        requires=tuple(metadata.get_all("Requires-Dist") or ()),
        build_requires=build_requires,
    )


def read_distribution(path: Path) -> Distribution:
    """The name, version and requirements of a downloaded ``.whl`` or ``.tar.gz`` sdist."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            (metadata,) = (n for n in wheel.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
            return _metadata_distribution(wheel.read(metadata).decode())
    with tarfile.open(path) as sdist:
        top_level = {m.name.split("/", 1)[1]: m for m in sdist.getmembers() if m.name.count("/") == 1 and m.isfile()}

        def read(name: str) -> str:
            member = sdist.extractfile(top_level[name])
            assert member is not None
            return member.read().decode()

        build_requires = DEFAULT_BUILD_REQUIREMENTS
        if "pyproject.toml" in top_level:
            import tomllib  # Python 3.11+, only for sdists that declare their build backend

            build_system = tomllib.loads(read("pyproject.toml")).get("build-system", {})
            build_requires = tuple(build_system.get("requires", DEFAULT_BUILD_REQUIREMENTS))
        return _metadata_distribution(read("PKG-INFO"), build_requires)


def requirement_lines(text: str, options: bool = False) -> list[str]:
    """The requirement specifiers of a requirements file, or with ``options`` its option lines (``--x``, ``-r``)."""
    lines = (_COMMENT.sub("", line).strip() for line in text.splitlines())
    return [line for line in lines if line and line.startswith("-") == options]


def _pip_download(*arguments: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "download", "--quiet", *arguments]
    subprocess.run(command, check=True)


def vendor(code_dir: Path, python_version: str, platforms: list[str], sdists: list[str]) -> list[Path]:
    """Download the packages of ``code_dir``/requirements.txt into ``code_dir``/wheels, check them, rewrite it."""
    requirements_file = code_dir / "requirements.txt"
    text = requirements_file.read_text()
    offline_text = offline_requirements(text)  # fails before downloading anything if it is already offline
    wheel_dir = code_dir / WHEEL_DIR
    shutil.rmtree(wheel_dir, ignore_errors=True)
    wheel_dir.mkdir()
    target = ["--only-binary=:all:", "--implementation", "cp", "--python-version", python_version]
    target += [option for platform in platforms for option in ("--platform", platform)]
    direct_references, build_requirements = [], []
    with tempfile.TemporaryDirectory() as sdist_dir:
        for requirement in sdists:
            _pip_download("--no-deps", "--no-binary=:all:", "--dest", sdist_dir, requirement)
        for sdist in sorted(Path(sdist_dir).iterdir()):
            distribution = read_distribution(sdist)
            direct_references.append(f"{distribution.name} @ {sdist.resolve().as_uri()}")
            build_requirements += distribution.build_requires
        # One resolution: the sdists enter it by path (pip accepts them despite --only-binary), with what builds them.
        _pip_download(
            *target, "--dest", str(wheel_dir), "-r", str(requirements_file), *direct_references, *build_requirements
        )
    downloaded = sorted(wheel_dir.iterdir())
    unmet = unmet_requirements(
        requirement_lines(text),
        [read_distribution(path) for path in downloaded],
        target_environment(python_version, platforms[0]),
    )
    if unmet:
        raise SystemExit(f"{wheel_dir} lacks what the target needs: {', '.join(unmet)}")
    requirements_file.write_text(offline_text)
    return downloaded


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("code_dir", type=Path, help="the copy of training_code/ to make installable offline")
    parser.add_argument("--python-version", required=True, help="the training image's Python, e.g. 3.12")
    parser.add_argument("--platform", action="append", required=True, help="a wheel platform tag it runs")
    parser.add_argument("--sdist", action="append", default=[], help="a requirement with no wheel for the target")
    arguments = parser.parse_args(argv)
    downloaded = vendor(arguments.code_dir, arguments.python_version, arguments.platform, arguments.sdist)
    size = sum(path.stat().st_size for path in downloaded)
    print(f"{arguments.code_dir / WHEEL_DIR}: {len(downloaded)} packages, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
