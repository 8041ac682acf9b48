"""Fixtures of the template tests: template.yaml, the ASL and the offline transform, loaded once per session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from template_loading import REPO_ROOT, STATE_MACHINE, load_sam_template, transform


@pytest.fixture(scope="session")
def sam_template() -> dict[str, Any]:
    return load_sam_template()


@pytest.fixture(scope="session")
def definition_path(sam_template: dict[str, Any]) -> Path:
    return REPO_ROOT / sam_template["Resources"][STATE_MACHINE]["Properties"]["DefinitionUri"]


@pytest.fixture(scope="session")
def asl_text(definition_path: Path) -> str:
    return definition_path.read_text()


@pytest.fixture(scope="session")
def asl(asl_text: str) -> dict[str, Any]:
    return json.loads(asl_text)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def cloudformation(sam_template: dict[str, Any], asl_text: str) -> dict[str, Any]:
    """The transformed template with the ASL inlined as a literal DefinitionString."""
    template = transform(sam_template)
    state_machine = template["Resources"][STATE_MACHINE]["Properties"]
    assert "DefinitionS3Location" in state_machine, "the state machine must come from DefinitionUri"
    del state_machine["DefinitionS3Location"]
    state_machine["DefinitionString"] = asl_text
    return template


@pytest.fixture(scope="session")
def sam_functions(sam_template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in sam_template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


@pytest.fixture(scope="session")
def substitutions(sam_template: dict[str, Any]) -> dict[str, Any]:
    return sam_template["Resources"][STATE_MACHINE]["Properties"]["DefinitionSubstitutions"]  # type: ignore[no-any-return]
