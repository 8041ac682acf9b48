"""Our own checks of what no linter sees: the template, the ASL, the handlers and config.py agree."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from moto.events.models import EventPattern
from template_loading import PLACEHOLDER, REPO_ROOT, STATE_MACHINE, all_states, load_sam_template

from pipeline.common import errors

PIPELINE_DIR = REPO_ROOT / "functions" / "pipeline"
EVENTS_DIR = REPO_ROOT / "tests" / "events"
# Step Functions' and Lambda's own error names; every other ErrorEquals is one of our exception classes.
BUILT_IN_ERROR_PREFIXES = ("States.", "Lambda.")
ENV_READERS = {"_env", "_env_int", "_env_bool", "_env_list", "_choice", "getenv"}
# A Task that waits for a callback names its function in Parameters.FunctionName (the Lambda service integration).
CALLBACK_RESOURCE = "arn:aws:states:::lambda:invoke.waitForTaskToken"
# Read by config.py but deliberately left out of the template: the code finds training_code/ beside the pipeline
# package in the bundle by itself, and a fixed /var/task path would break the offline run of the same template.
ENV_LEFT_TO_CODE_DEFAULTS = {"TRAINING_CODE_DIR"}
# Powertools reads its own variables; they are configuration of the library, not of config.py.
LIBRARY_ENV_PREFIX = "POWERTOOLS_"


def _task_placeholders(asl: dict[str, Any]) -> dict[str, str]:
    """Task state name → the DefinitionSubstitutions key its Resource names."""
    tasks = {}
    for name, state in all_states(asl["States"]).items():
        if state["Type"] == "Task":
            resource = (
                state["Parameters"]["FunctionName"] if state["Resource"] == CALLBACK_RESOURCE else state["Resource"]
            )
            match = PLACEHOLDER.fullmatch(resource)
            assert match, f"{name}: Resource {resource!r} must be a ${{...}}FunctionArn placeholder"
            tasks[name] = match.group(1)
    return tasks


def _get_att_target(value: Any) -> str:
    target = value["Fn::GetAtt"]
    return str(target[0] if isinstance(target, list) else target.split(".")[0])


def _error_names(asl: dict[str, Any], kind: str) -> set[str]:
    return {
        name
        for state in all_states(asl["States"]).values()
        for handler in state.get(kind, [])
        for name in handler["ErrorEquals"]
        if not name.startswith(BUILT_IN_ERROR_PREFIXES)
    }


# -- state machine ↔ template ---------------------------------------------------------------------------------------


def test_placeholders_and_definition_substitutions_match_both_ways(
    asl_text: str, substitutions: dict[str, Any]
) -> None:
    used = set(PLACEHOLDER.findall(asl_text))
    assert used - set(substitutions) == set(), "placeholders without a DefinitionSubstitutions value"
    assert set(substitutions) - used == set(), "DefinitionSubstitutions the ASL never uses"


def test_poll_interval_substitution_is_the_parameter(substitutions: dict[str, Any]) -> None:
    assert substitutions["PollIntervalSeconds"] == {"Ref": "PollIntervalSeconds"}


def test_every_choice_has_a_default(asl: dict[str, Any]) -> None:
    choices = {name: s for name, s in all_states(asl["States"]).items() if s["Type"] == "Choice"}
    assert choices
    assert [name for name, state in choices.items() if "Default" not in state] == []


def test_every_task_calls_a_function_of_the_template_and_every_function_is_called(
    asl: dict[str, Any], substitutions: dict[str, Any], sam_functions: dict[str, Any]
) -> None:
    called = set()
    for state, key in _task_placeholders(asl).items():
        value = substitutions[key]
        assert isinstance(value, dict) and "Fn::GetAtt" in value, f"{state}: {key} must be a function's GetAtt Arn"
        function = _get_att_target(value)
        assert value["Fn::GetAtt"] in ([function, "Arn"], f"{function}.Arn"), f"{state}: {key} is not an Arn"
        assert function in sam_functions, f"{state}: {key} names no AWS::Serverless::Function"
        called.add(function)
    # ResumeApproval is the one function an event calls instead of a state: it answers AwaitApproval's token.
    event_driven = {name for name, f in sam_functions.items() if f["Properties"].get("Events")}
    assert event_driven == {"ResumeApprovalFunction"}
    assert set(sam_functions) - called == event_driven, "functions no state calls"


def test_state_machine_role_may_invoke_exactly_the_functions_it_calls(
    asl: dict[str, Any], substitutions: dict[str, Any], cloudformation: dict[str, Any]
) -> None:
    role = cloudformation["Resources"][f"{STATE_MACHINE}Role"]["Properties"]
    invocable = []
    for policy in role.get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if statement["Effect"] == "Allow" and any(a.startswith("lambda:") for a in actions):
                assert actions == ["lambda:InvokeFunction"]
                invocable.extend(statement["Resource"])
    called = [substitutions[key] for key in _task_placeholders(asl).values()]
    assert sorted(map(json.dumps, invocable)) == sorted({json.dumps(value) for value in called})
    # No managed policy may widen it (the X-Ray policy SAM adds for Tracing is the only one).
    assert all("Lambda" not in json.dumps(arn) for arn in role.get("ManagedPolicyArns", []))


def test_custom_error_names_are_exception_classes_of_errors_py(asl: dict[str, Any]) -> None:
    defined = {name for name, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, Exception)}
    caught_or_retried = _error_names(asl, "Retry") | _error_names(asl, "Catch")
    assert caught_or_retried - defined == set()


def test_only_retryable_errors_are_retried(asl: dict[str, Any]) -> None:
    for name in _error_names(asl, "Retry"):
        assert issubclass(getattr(errors, name), errors.RetryableError), f"{name} is terminal but retried"


# -- functions ↔ handler code ---------------------------------------------------------------------------------------


def _handler_cases() -> list[Any]:
    resources = load_sam_template()["Resources"]
    return [
        pytest.param(resource["Properties"]["Handler"], id=name)
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::Function"
    ]


@pytest.mark.parametrize("handler", _handler_cases())
def test_handler_string_imports_and_resolves_to_a_callable(handler: str) -> None:
    module_name, _, attribute = handler.rpartition(".")
    if importlib.util.find_spec(module_name) is None:
        pytest.skip(f"{module_name} is not written yet (functions/{module_name.replace('.', '/')}.py)")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, attribute, None)), f"{handler}: {module_name} has no callable {attribute}"


def test_bundle_makefile_builds_for_the_runtime_and_architecture_of_the_template(sam_template: dict[str, Any]) -> None:
    makefile = (REPO_ROOT / "functions" / "Makefile").read_text()
    settings = dict(line.split(":=", 1) for line in makefile.splitlines() if ":=" in line and not line.startswith("\t"))
    settings = {name.strip(): value.strip() for name, value in settings.items()}
    globals_ = sam_template["Globals"]["Function"]
    assert globals_["Runtime"] == f"python{settings['LAMBDA_PYTHON_VERSION']}"
    platform_architecture = {
        "manylinux2014_aarch64": "arm64",
        "manylinux2014_x86_64": "x86_64",
        "manylinux_2_28_aarch64": "arm64",
        "manylinux_2_28_x86_64": "x86_64",
    }
    for setting in ("LAMBDA_PLATFORM", "LAMBDA_PLATFORM_GLIBC_2_28"):
        assert globals_["Architectures"] == [platform_architecture[settings[setting]]], setting


# -- environment ↔ config.py ----------------------------------------------------------------------------------------


def _first_string_argument(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def environment_variables_read_by(package_dir: Path) -> set[str]:
    """Every variable name the package reads: ``_env*("X")``, ``os.getenv("X")``, ``os.environ.get("X")``/``["X"]``."""
    names = set()
    for path in package_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call):
                function = node.func
                called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
                is_environ_get = (
                    isinstance(function, ast.Attribute)
                    and function.attr == "get"
                    and isinstance(function.value, ast.Attribute)
                    and function.value.attr == "environ"
                )
                name = _first_string_argument(node)
                if name and (called in ENV_READERS or is_environ_get):
                    names.add(name)
            elif (
                isinstance(node, ast.Subscript)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "environ"
                and isinstance(node.slice, ast.Constant)
            ):
                names.add(str(node.slice.value))
    return names


def test_environment_reader_scan_sees_config_py() -> None:
    # The scan below is only as good as its patterns: it must find the variables config.py is known to read.
    assert {"DATA_BUCKET", "ROLLBACK_ALARMS", "DEBUGGER_RULES_ENABLED"} <= environment_variables_read_by(PIPELINE_DIR)


def test_template_environment_is_exactly_what_the_code_reads(sam_template: dict[str, Any]) -> None:
    defined = set(sam_template["Globals"]["Function"]["Environment"]["Variables"])
    read = environment_variables_read_by(PIPELINE_DIR)
    ours_defined = {name for name in defined if not name.startswith(LIBRARY_ENV_PREFIX)}
    ours_read = {name for name in read if not name.startswith(LIBRARY_ENV_PREFIX)}
    assert ours_read - ours_defined - ENV_LEFT_TO_CODE_DEFAULTS == set(), "read by the code, missing in template.yaml"
    assert ours_defined - ours_read == set(), "defined in template.yaml, read by no code"
    assert ours_read >= ENV_LEFT_TO_CODE_DEFAULTS, "an exemption for a variable the code no longer reads"


def test_no_function_overrides_the_global_environment(sam_functions: dict[str, Any]) -> None:
    # One environment for all: the offline run and config.py both assume every function sees the same settings.
    assert [name for name, f in sam_functions.items() if "Environment" in f["Properties"]] == []


def test_settings_load_from_the_template_environment(
    sam_template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.common.config import load_settings

    # GIVEN the template's literal values, with deploy-time references replaced by plausible strings
    for name, value in sam_template["Globals"]["Function"]["Environment"]["Variables"].items():
        monkeypatch.setenv(name, value if isinstance(value, str) else _plausible(name, value, sam_template))
    # WHEN config.py reads them THEN every value parses (numbers are numbers, JSON is JSON, lists split)
    settings = load_settings()
    assert settings.expected_classes == 133
    assert settings.incoming_prefix == "incoming/"
    assert settings.extra_hyperparameters == {}


def _plausible(name: str, value: dict[str, Any], sam_template: dict[str, Any]) -> str:
    if "Ref" in value and value["Ref"] in sam_template["Parameters"]:
        return str(sam_template["Parameters"][value["Ref"]].get("Default", ""))
    if "Fn::If" in value:
        return "true" if name.endswith("_ENABLED") else "image"
    return f"{name.lower()}-value"


# -- triggers ---------------------------------------------------------------------------------------------------------


def _upload_rule_pattern(sam_template: dict[str, Any], bucket: str) -> EventPattern:
    event = sam_template["Resources"][STATE_MACHINE]["Properties"]["Events"]["DatasetUploaded"]
    assert event["Type"] == "EventBridgeRule"
    pattern = json.loads(
        json.dumps(event["Properties"]["Pattern"]).replace('{"Ref": "DataBucket"}', json.dumps(bucket))
    )
    return EventPattern.load(json.dumps(pattern))


def _object_created(key: str, bucket: str = "dog-breed-data-test", detail_type: str = "Object Created") -> dict:
    event = json.loads((EVENTS_DIR / "validate_dataset_s3_object_created.json").read_text())
    event["detail-type"] = detail_type
    event["detail"]["bucket"]["name"] = bucket
    event["detail"]["object"]["key"] = key
    return event  # type: ignore[no-any-return]


@pytest.mark.parametrize("key", ["incoming/dogImages.zip", "incoming/2026/11/dogImages-v2.zip"])
def test_upload_rule_starts_a_run_for_a_zip_under_incoming(sam_template: dict[str, Any], key: str) -> None:
    pattern = _upload_rule_pattern(sam_template, "dog-breed-data-test")
    assert pattern.matches_event(_object_created(key))


@pytest.mark.parametrize(
    ("key", "bucket", "detail_type"),
    [
        pytest.param("other/dogImages.zip", "dog-breed-data-test", "Object Created", id="outside-incoming"),
        pytest.param("incoming/dogImages.txt", "dog-breed-data-test", "Object Created", id="not-a-zip"),
        pytest.param("incoming/dogImages.zip.part", "dog-breed-data-test", "Object Created", id="zip-not-suffix"),
        pytest.param("validated/incoming/x.zip", "dog-breed-data-test", "Object Created", id="incoming-not-prefix"),
        pytest.param("incoming/dogImages.zip", "dog-breed-data-test", "Object Tags Added", id="tag-event"),
        pytest.param("incoming/dogImages.zip", "someone-elses-bucket", "Object Created", id="other-bucket"),
    ],
)
def test_upload_rule_ignores_everything_else(
    sam_template: dict[str, Any], key: str, bucket: str, detail_type: str
) -> None:
    pattern = _upload_rule_pattern(sam_template, "dog-breed-data-test")
    assert not pattern.matches_event(_object_created(key, bucket, detail_type))


def test_upload_rule_prefix_is_the_incoming_prefix_the_functions_use(sam_template: dict[str, Any]) -> None:
    event = sam_template["Resources"][STATE_MACHINE]["Properties"]["Events"]["DatasetUploaded"]
    (key_filter,) = event["Properties"]["Pattern"]["detail"]["object"]["key"]
    incoming = sam_template["Globals"]["Function"]["Environment"]["Variables"]["INCOMING_PREFIX"]
    assert key_filter == {"wildcard": f"{incoming}*.zip"}


def test_schedule_input_is_the_event_the_validate_handler_is_tested_with(sam_template: dict[str, Any]) -> None:
    schedule = sam_template["Resources"][STATE_MACHINE]["Properties"]["Events"]["Scheduled"]["Properties"]
    tested = json.loads((EVENTS_DIR / "validate_dataset_schedule.json").read_text())
    assert json.loads(schedule["Input"]) == tested == {"trigger": "schedule"}
