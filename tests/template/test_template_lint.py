"""The offline linters on what `sam deploy` would create: cfn-lint on the transformed template, statelint on the ASL.

cfn-lint runs on the samtranslator output with the ASL inlined as a literal DefinitionString, because neither
`sam validate --lint` nor cfn-lint on the SAM template reads the ASL file (research: sam-tooling.md).
"""

from __future__ import annotations

import json
import re
from typing import Any

from cfnlint.api import ManualArgs, lint
from statelint.config import Config
from statelint.linter import Linter
from statelint.problem import ProblemType
from template_loading import ACCOUNT_ID, PLACEHOLDER, REGION, STATE_MACHINE

# W1020: samtranslator leaves Fn::Sub around strings it already resolved; harmless and documented in the research.
IGNORED_CFN_LINT_RULES = ["W1020"]


def _fake_values(substitutions: dict[str, Any]) -> dict[str, str]:
    """A plausible literal for every placeholder: Lambda ARNs for functions, the parameter's default for numbers."""
    values = {}
    for key, value in substitutions.items():
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            function = value["Fn::GetAtt"][0] if isinstance(value["Fn::GetAtt"], list) else value["Fn::GetAtt"]
            values[key] = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{str(function).split('.')[0]}"
        else:
            values[key] = "60"
    return values


def test_cfn_lint_finds_nothing_in_the_transformed_template(cloudformation: dict[str, Any]) -> None:
    # Informational rules too: they flag stateful resources without an explicit deletion policy.
    matches = lint(
        json.dumps(cloudformation),
        config=ManualArgs(regions=[REGION], ignore_checks=IGNORED_CFN_LINT_RULES, include_checks=["I"]),
    )
    assert [f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path))})" for m in matches] == []


def test_cfn_lint_does_check_the_inlined_state_machine(cloudformation: dict[str, Any], asl: dict[str, Any]) -> None:
    # GIVEN the state machine alone, its ASL with a ResultPath that is not a path
    state_machine = json.loads(json.dumps(cloudformation["Resources"][STATE_MACHINE]))
    definition = json.loads(json.dumps(asl))
    first_task = next(name for name, state in definition["States"].items() if state["Type"] == "Task")
    definition["States"][first_task]["ResultPath"] = "dataset"
    state_machine["Properties"]["DefinitionString"] = json.dumps(definition)
    # WHEN it is linted THEN cfn-lint reports the state machine error, so the clean result above means something
    matches = lint(
        json.dumps({"Resources": {STATE_MACHINE: state_machine}}),
        config=ManualArgs(regions=[REGION], ignore_checks=IGNORED_CFN_LINT_RULES),
    )
    assert any(m.rule.id == "E3601" and first_task in "/".join(map(str, m.path)) for m in matches)


def test_statelint_finds_nothing_with_placeholders_replaced_by_arns(
    asl_text: str, substitutions: dict[str, Any]
) -> None:
    values = _fake_values(substitutions)
    definition = PLACEHOLDER.sub(lambda match: values[match.group(1)], asl_text)
    # Only FLOAT is ignored: statelint wants BackoffRate written as a float, which JSON does not preserve.
    problems = Linter.validate(json.loads(definition), Config({ProblemType.FLOAT}))
    assert problems == []


def test_statelint_reports_a_missing_next_target(asl_text: str, substitutions: dict[str, Any]) -> None:
    values = _fake_values(substitutions)
    definition = json.loads(PLACEHOLDER.sub(lambda match: values[match.group(1)], asl_text))
    state = next(s for s in definition["States"].values() if "Next" in s)
    state["Next"] = "NoSuchState"
    problems = Linter.validate(definition, Config({ProblemType.FLOAT}))
    assert any(re.search(r'No state found named "NoSuchState"', problem) for problem in problems)
