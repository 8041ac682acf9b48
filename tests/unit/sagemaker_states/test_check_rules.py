"""CheckRules: the gate, on SageMaker rule statuses and on the training code's own rule_report.json."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from sagemaker_states_support import BUCKET, REGION, load_event

from pipeline import check_rules, start_training
from pipeline.common.errors import RuleEvaluationFailed, RuleIssuesFound, TrainingFailed

JOB = "train-251125-015343-3f9a1c"
DEBUGGER_RULES = ["VanishingGradient", "LossNotDecreasing", "Overfit", "Overtraining", "PoorWeightInitialization"]
OUTPUT_ARCHIVE_KEY = f"jobs/251125-015343-3f9a1c/{JOB}/output/output.tar.gz"


@pytest.fixture
def trained(sagemaker_backend: Any, pipeline_env: Path, lambda_context: Any) -> Any:
    """The final training job in moto, Completed; tests set its rule statuses."""
    start_training.lambda_handler(load_event("start_training_best_trial"), lambda_context)
    return sagemaker_backend.training_jobs[JOB]


def _set_statuses(job: Any, profiler: str = "NoIssuesFound", **debugger: str) -> None:
    job.debug_rule_evaluation_statuses = [
        {
            "RuleConfigurationName": name,
            "RuleEvaluationStatus": debugger.get(name, "NoIssuesFound"),
            "StatusDetails": f"{name}: details from the rule job" if name in debugger else "",
        }
        for name in DEBUGGER_RULES
    ]
    job.profiler_rule_evaluation_statuses = [
        {"RuleConfigurationName": "ProfilerReport", "RuleEvaluationStatus": profiler}
    ]


def _put_output_archive(files: dict[str, bytes]) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key=OUTPUT_ARCHIVE_KEY, Body=buffer.getvalue())


def _report(**statuses: str) -> bytes:
    return json.dumps(
        {"rules": {name: {"status": status, "details": f"{name} says {status}"} for name, status in statuses.items()}}
    ).encode()


def test_all_rules_clear_passes(trained: Any, lambda_context: Any) -> None:
    _set_statuses(trained)

    result = check_rules.lambda_handler(load_event("check_rules_debugger_on"), lambda_context)

    assert result == {
        "passed": True,
        "rules": dict.fromkeys([*DEBUGGER_RULES, "ProfilerReport"], "NoIssuesFound"),
        "warnings": [],
        "reports_uri": f"s3://dog-data/jobs/251125-015343-3f9a1c/{JOB}/rule-output/",
        "evidence": "sagemaker-rules",
    }


def test_issues_on_a_blocking_rule_fail_the_run_naming_rule_and_details(trained: Any, lambda_context: Any) -> None:
    _set_statuses(trained, VanishingGradient="IssuesFound")

    with pytest.raises(
        RuleIssuesFound, match=r"VanishingGradient IssuesFound \(VanishingGradient: details from the rule job\)"
    ) as raised:
        check_rules.lambda_handler(load_event("check_rules_debugger_on"), lambda_context)

    assert "LossNotDecreasing" not in str(raised.value)
    assert "BLOCKING_RULES" in str(raised.value)


def test_non_blocking_issues_pass_with_a_warning(
    trained: Any, monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    monkeypatch.setenv("BLOCKING_RULES", "VanishingGradient,LossNotDecreasing")
    _set_statuses(trained, profiler="IssuesFound", Overtraining="IssuesFound")

    result = check_rules.lambda_handler(load_event("check_rules_debugger_on"), lambda_context)

    assert result["passed"] is True
    assert result["warnings"] == [
        "non-blocking rule Overtraining IssuesFound (Overtraining: details from the rule job)",
        "non-blocking rule ProfilerReport IssuesFound",
    ]


@pytest.mark.parametrize("status", ["Error", "Stopped"])
def test_blocking_rule_that_could_not_run_fails_the_run(trained: Any, status: str, lambda_context: Any) -> None:
    _set_statuses(trained, VanishingGradient=status)

    with pytest.raises(RuleEvaluationFailed, match=rf"could not be evaluated: VanishingGradient {status}"):
        check_rules.lambda_handler(load_event("check_rules_debugger_on"), lambda_context)


def test_issues_are_reported_before_evaluation_failures(trained: Any, lambda_context: Any) -> None:
    _set_statuses(trained, VanishingGradient="Error", LossNotDecreasing="IssuesFound")

    with pytest.raises(RuleIssuesFound, match="LossNotDecreasing IssuesFound"):
        check_rules.lambda_handler(load_event("check_rules_debugger_on"), lambda_context)


def test_unfinished_job_is_refused(trained: Any, lambda_context: Any) -> None:
    trained.training_job_status = "Stopped"

    with pytest.raises(TrainingFailed, match="is Stopped, not Completed"):
        check_rules.lambda_handler(load_event("check_rules_debugger_on"), lambda_context)


def test_debugger_off_judges_the_training_codes_report(trained: Any, lambda_context: Any) -> None:
    # GIVEN Debugger rules off and the training code's report inside output.tar.gz
    _put_output_archive(
        {"metrics.json": b"{}", "rule_report.json": _report(**dict.fromkeys(DEBUGGER_RULES, "NoIssuesFound"))}
    )

    result = check_rules.lambda_handler(load_event("check_rules_debugger_off"), lambda_context)

    assert result["passed"] is True
    assert result["evidence"] == "rule_report.json"
    assert result["reports_uri"] == f"s3://{BUCKET}/{OUTPUT_ARCHIVE_KEY}"
    assert result["rules"] == dict.fromkeys(DEBUGGER_RULES, "NoIssuesFound")


def test_debugger_off_report_with_issues_fails_the_run(trained: Any, lambda_context: Any) -> None:
    _put_output_archive(
        {"./rule_report.json": _report(VanishingGradient="NoIssuesFound", LossNotDecreasing="IssuesFound")}
    )

    with pytest.raises(RuleIssuesFound, match=r"LossNotDecreasing IssuesFound \(LossNotDecreasing says IssuesFound\)"):
        check_rules.lambda_handler(load_event("check_rules_debugger_off"), lambda_context)


def test_overfitting_is_reported_but_does_not_block_by_default(trained: Any, lambda_context: Any) -> None:
    # GIVEN the template's default blocking rules and rule jobs that find over-fitting and over-training
    _set_statuses(trained, Overfit="IssuesFound", Overtraining="IssuesFound")

    result = check_rules.lambda_handler(load_event("check_rules_debugger_on"), lambda_context)

    # THEN the gate passes, and the run's output says what was found
    assert result["passed"] is True
    assert result["rules"]["Overfit"] == result["rules"]["Overtraining"] == "IssuesFound"
    assert result["warnings"] == [
        "non-blocking rule Overfit IssuesFound (Overfit: details from the rule job)",
        "non-blocking rule Overtraining IssuesFound (Overtraining: details from the rule job)",
    ]


def test_debugger_off_report_missing_blocking_rules_passes_with_warnings(trained: Any, lambda_context: Any) -> None:
    _put_output_archive({"rule_report.json": _report(VanishingGradient="NoIssuesFound", Overfit="NoIssuesFound")})

    result = check_rules.lambda_handler(load_event("check_rules_debugger_off"), lambda_context)

    assert result["warnings"] == ["blocking rule LossNotDecreasing is not in rule_report.json"]


def test_debugger_off_without_output_archive_fails_clearly(trained: Any, lambda_context: Any) -> None:
    with pytest.raises(
        RuleEvaluationFailed, match=r"output\.tar\.gz does not exist.*must write it to SM_OUTPUT_DATA_DIR"
    ):
        check_rules.lambda_handler(load_event("check_rules_debugger_off"), lambda_context)


def test_debugger_off_archive_without_report_fails_clearly(trained: Any, lambda_context: Any) -> None:
    _put_output_archive({"metrics.json": b"{}"})

    with pytest.raises(RuleEvaluationFailed, match=r"holds no rule_report\.json, so the model is unchecked"):
        check_rules.lambda_handler(load_event("check_rules_debugger_off"), lambda_context)
