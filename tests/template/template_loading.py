"""template.yaml and the ASL, loaded once per session and transformed offline the way `sam validate` does.

SAM's own tools never read the ASL file, so the transformed CloudFormation gets the ASL inlined as a literal
``DefinitionString``: cfn-lint then checks the state machine too (see shared research, sam-tooling.md).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
STATE_MACHINE = "RetrainStateMachine"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
LOCAL_URI_PROPERTIES = ("CodeUri", "ContentUri", "DefinitionUri")


def load_sam_template() -> dict[str, Any]:
    return yaml_parse(TEMPLATE_PATH.read_text())  # type: ignore[no-any-return]


def _no_iam_lookup() -> dict[str, str]:
    raise AssertionError("a Policies entry is neither a bundled SAM policy nor an ARN: the transform would call IAM")


def transform(sam_template: dict[str, Any]) -> dict[str, Any]:
    """SAM → CloudFormation without AWS: local paths become s3:// URIs, as `sam package` would make them."""
    sam_template = copy.deepcopy(sam_template)
    for resource in sam_template["Resources"].values():
        properties = resource.get("Properties", {})
        for name in LOCAL_URI_PROPERTIES:
            if isinstance(properties.get(name), str) and not properties[name].startswith("s3://"):
                properties[name] = f"s3://artifacts-bucket/{properties[name]}"
    translator = Translator(
        managed_policy_map={},
        sam_parser=Parser(),
        boto_session=boto3.session.Session(region_name=REGION),  # the region only; nothing is called
    )
    return translator.translate(  # type: ignore[no-any-return]
        sam_template, parameter_values={"AWS::AccountId": ACCOUNT_ID}, get_managed_policy_map=_no_iam_lookup
    )


def policy_statements(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement of a SAM resource's inline policies; one under ``!If [condition, statement, NoValue]``
    (granted only with that condition, such as HasKmsKey) is returned as its statement."""
    found = []
    for policy in resource.get("Properties", {}).get("Policies") or []:
        assert isinstance(policy, dict) and "Statement" in policy, "only inline statements: they say what is granted"
        for statement in policy["Statement"]:
            if "Fn::If" in statement:
                _, statement, otherwise = statement["Fn::If"]
                assert otherwise == {"Ref": "AWS::NoValue"}, "a conditional statement is granted or absent"
            found.append(statement)
    return found


def all_states(states: dict[str, Any]) -> dict[str, Any]:
    """Every state, including those nested in Parallel branches and Map iterators."""
    found: dict[str, Any] = {}
    for name, state in states.items():
        found[name] = state
        for branch in state.get("Branches", []):
            found.update(all_states(branch["States"]))
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                found.update(all_states(state[key]["States"]))
    return found
