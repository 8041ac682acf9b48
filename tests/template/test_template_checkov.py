"""checkov, an independent IaC scanner, finds nothing in template.yaml that is not suppressed with a reason.

A suppression is checkov's own syntax next to the resource (``Metadata: checkov: skip: [{id, comment}]``), so the
next reviewer reads the reason where the finding would be. checkov lives in .venv-checkov (``make checkov``; its
pins conflict with .venv's) and runs here without network: no platform download, no version check.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest
from template_loading import REPO_ROOT, TEMPLATE_PATH, load_sam_template

CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"
COMMAND = ("--file", str(TEMPLATE_PATH), "--framework", "cloudformation", "--skip-download", "--output", "json")
OFFLINE = {"BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE"}


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    assert CHECKOV.exists(), f"{CHECKOV} is missing: `make checkov` (part of `make test`) installs it"
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("BC_", "CKV_"))}
    completed = subprocess.run(
        [str(CHECKOV), *COMMAND],
        capture_output=True,
        text=True,
        env=environment | OFFLINE,
        cwd=REPO_ROOT,
        timeout=300,
        check=False,
    )
    # Exit status 1 means findings; anything else that leaves no JSON is checkov failing to run.
    assert completed.stdout.strip(), completed.stderr[-2000:]
    return json.loads(completed.stdout)  # type: ignore[no-any-return]


def test_checkov_evaluated_every_resource(report: dict[str, Any]) -> None:
    summary = report["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] == len(load_sam_template()["Resources"])
    assert summary["passed"] > 0


def test_checkov_finds_nothing_unsuppressed(report: dict[str, Any]) -> None:
    findings = [
        f"{check['check_id']} {check['resource']}: {check['check_name']}"
        for check in report["results"]["failed_checks"]
    ]
    assert findings == [], "fix it, or suppress it next to the resource with checkov's skip syntax and a reason"


def test_every_suppression_gives_a_reason(report: dict[str, Any]) -> None:
    unexplained = [
        f"{check['check_id']} {check['resource']}"
        for check in report["results"]["skipped_checks"]
        if len(check["check_result"].get("suppress_comment", "").split()) < 5
    ]
    assert unexplained == []
