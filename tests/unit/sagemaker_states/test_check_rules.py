"""CheckRules: the gate, on the training code's own rule and profiler reports (every account), and on SageMaker's
rule statuses when the account still runs its rule containers."""

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
PROFILER_RULES = ["ProfilerReport", "LowGPUUtilization", "CPUBottleneck", "Dataloader", "BatchSize"]
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


def _put_reports(rules: dict[str, str] | None = None, profiler: dict[str, str] | None = None) -> None:
    """output.tar.gz with both reports: every rule NoIssuesFound unless the test says otherwise."""
    _put_output_archive(
        {
            "metrics.json": b"{}",
            "rule_report.json": _report(**(dict.fromkeys(DEBUGGER_RULES, "NoIssuesFound") | (rules or {}))),
            "profiler_report.json": _report(**(dict.fromkeys(PROFILER_RULES, "NoIssuesFound") | (profiler or {}))),
            "profiler/system-metrics.jsonl": b"",
        }
    )


def test_all_rules_clear_passes_on_the_training_codes_reports(trained: Any, lambda_context: Any) -> None:
    # GIVEN the template's defaults (no SageMaker rule container) and both reports clear
    _put_reports()

    result = check_rules.lambda_handler(load_event("check_rules_debugger_off"), lambda_context)

    assert result["passed"] is True
    assert result["rules"] == dict.fromkeys(DEBUGGER_RULES + PROFILER_RULES, "NoIssuesFound")
    assert result["details"]["Dataloader"] == "Dataloader says NoIssuesFound"
    assert result["sagemaker_rules"] == {} and result["warnings"] == []
    assert result["reports_uri"] == f"s3://{BUCKET}/{OUTPUT_ARCHIVE_KEY}"
    assert result["evidence"] == "rule_report.json, profiler_report.json"


def test_issues_on_a_blocking_rule_fail_the_run_naming_rule_and_details(trained: Any, lambda_context: Any) -> None:
    _put_reports(rules={"VanishingGradient": "IssuesFound"})

    with pytest.raises(
        RuleIssuesFound, match=r"VanishingGradient IssuesFound \(VanishingGradient says IssuesFound\)"
    ) as raised:
        check_rules.lambda_handler(load_event("check_rules_debugger_off"), lambda_context)

    assert "LossNotDecreasing" not in str(raised.value)
    assert "BlockingRules" in str(raised.value) and OUTPUT_ARCHIVE_KEY in str(raised.value)


def test_non_blocking_issues_and_unevaluated_rules_pass_with_warnings(trained: Any, lambda_context: Any) -> None:
    _put_reports(rules={"Overtraining": "IssuesFound"}, profiler={"LowGPUUtilization": "NotEvaluated"})

    result = check_rules.lambda_handler(load_event("check_rules_debugger_off"), lambda_context)

    assert result["passed"] is True
    assert result["rules"]["LowGPUUtilization"] == "NotEvaluated"  # shown as such, never as a pass
    assert result["warnings"] == [
        "non-blocking rule Overtraining IssuesFound (Overtraining says IssuesFound)",
        "non-blocking rule LowGPUUtilization NotEvaluated (LowGPUUtilization says NotEvaluated)",
    ]


@pytest.mark.parametrize("status", ["NotEvaluated", "Error"])
def test_blocking_rule_that_could_not_judge_fails_the_run(trained: Any, status: str, lambda_context: Any) -> None:
    _put_reports(rules={"LossNotDecreasing": status})

    with pytest.raises(
        RuleEvaluationFailed, match=rf"could not be evaluated .*: LossNotDecreasing {status} \(LossNotDecreasing says"
    ):
        check_rules.lambda_handler(load_event("check_rules_debugger_off"), lambda_context)


def test_blocking_rule_missing_from_the_reports_fails_the_run(trained: Any, lambda_context: Any) -> None:
    _put_output_archive(
        {
            "rule_report.json": _report(VanishingGradient="NoIssuesFound", Overfit="NoIssuesFound"),
            "profiler_report.json": _report(ProfilerReport="NoIssuesFound"),
        }
    )

    with pytest.raises(RuleEvaluationFailed, match="LossNotDecreasing NotReported") as raised:
        check_rules.lambda_handler(load_event("check_rules_debugger_off"), lambda_context)

    # (the message names what the reports do hold, so a typo in BlockingRules is found at once)
    assert "they hold ['Overfit', 'ProfilerReport', 'VanishingGradient']); check BlockingRules" in str(raised.value)


def test_a_profiler_rule_named_in_blocking_rules_blocks(
    trained: Any, monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    # GIVEN a team that blocks on a data path starving the training
    monkeypatch.setenv("BLOCKING_RULES", "VanishingGradient,LossNotDecreasing,Dataloader")
    _put_output_archive(
        {
            "rule_report.json": _report(**dict.fromkeys(DEBUGGER_RULES, "NoIssuesFound")),
            "profiler_report.json": json.dumps(
                {
                    "rules": {
                        "Dataloader": {
                            "status": "IssuesFound",
                            "details": "the training loop waited for data 38% of step time",
                            "recommendation": "prefetch batches in worker processes",
                        }
                    }
                }
            ).encode(),
        }
    )

    with pytest.raises(
        RuleIssuesFound,
        match=r"Dataloader IssuesFound \(the training loop waited for data 38% of step time\. Recommendation: "
        r"prefetch batches in worker processes\)",
    ):
        check_rules.lambda_handler(load_event("check_rules_debugger_off"), lambda_context)


def test_issues_are_reported_before_evaluation_failures(trained: Any, lambda_context: Any) -> None:
    _put_reports(rules={"VanishingGradient": "Error", "LossNotDecreasing": "IssuesFound"})

    with pytest.raises(RuleIssuesFound, match="LossNotDecreasing IssuesFound"):
        check_rules.lambda_handler(load_event("check_rules_debugger_off"), lambda_context)


def test_unfinished_job_is_refused(trained: Any, lambda_context: Any) -> None:
    trained.training_job_status = "Stopped"

    with pytest.raises(TrainingFailed, match="is Stopped, not Completed"):
        check_rules.lambda_handler(load_event("check_rules_debugger_off"), lambda_context)


def test_without_output_archive_fails_clearly(trained: Any, lambda_context: Any) -> None:
    with pytest.raises(
        RuleEvaluationFailed, match=r"output\.tar\.gz does not exist.*must write them to SM_OUTPUT_DATA_DIR"
    ):
        check_rules.lambda_handler(load_event("check_rules_debugger_off"), lambda_context)


def test_archive_without_profiler_report_fails_clearly(trained: Any, lambda_context: Any) -> None:
    _put_output_archive({"metrics.json": b"{}", "rule_report.json": _report(VanishingGradient="NoIssuesFound")})

    with pytest.raises(RuleEvaluationFailed, match=r"holds no profiler_report\.json, so the model is unchecked"):
        check_rules.lambda_handler(load_event("check_rules_debugger_off"), lambda_context)


# --- accounts that still run SageMaker's rule containers: both verdicts are judged and recorded ------------------


def test_sagemaker_rule_statuses_are_judged_and_recorded_beside_ours(trained: Any, lambda_context: Any) -> None:
    _put_reports()
    _set_statuses(trained, Overfit="IssuesFound")

    result = check_rules.lambda_handler(load_event("check_rules_debugger_on"), lambda_context)

    assert result["rules"] == dict.fromkeys(DEBUGGER_RULES + PROFILER_RULES, "NoIssuesFound")
    assert result["sagemaker_rules"] == dict.fromkeys([*DEBUGGER_RULES, "ProfilerReport"], "NoIssuesFound") | {
        "Overfit": "IssuesFound"
    }
    assert result["warnings"] == [
        "SageMaker's non-blocking rule Overfit IssuesFound (Overfit: details from the rule job)"
    ]
    assert result["evidence"] == "rule_report.json, profiler_report.json and SageMaker's rule jobs"


def test_sagemaker_issues_on_a_blocking_rule_fail_the_run_though_ours_passed(trained: Any, lambda_context: Any) -> None:
    _put_reports()
    _set_statuses(trained, VanishingGradient="IssuesFound")

    with pytest.raises(
        RuleIssuesFound,
        match=r"\(SageMaker's rule jobs\): VanishingGradient IssuesFound \(VanishingGradient: details from the rule",
    ) as raised:
        check_rules.lambda_handler(load_event("check_rules_debugger_on"), lambda_context)

    assert "rule-output/" in str(raised.value)


@pytest.mark.parametrize("status", ["Error", "Stopped"])
def test_sagemaker_rule_that_could_not_run_fails_the_run(trained: Any, status: str, lambda_context: Any) -> None:
    _put_reports()
    _set_statuses(trained, VanishingGradient=status)

    with pytest.raises(
        RuleEvaluationFailed, match=rf"could not be evaluated \(SageMaker's rule jobs\): VanishingGradient {status}"
    ):
        check_rules.lambda_handler(load_event("check_rules_debugger_on"), lambda_context)


def test_our_reports_gate_even_when_sagemaker_rules_are_on(trained: Any, lambda_context: Any) -> None:
    # GIVEN SageMaker's rule jobs all clear but our LossNotDecreasing found the loss flat
    _set_statuses(trained)
    _put_reports(rules={"LossNotDecreasing": "IssuesFound"})

    with pytest.raises(RuleIssuesFound, match=r"\(the training job's reports\): LossNotDecreasing IssuesFound"):
        check_rules.lambda_handler(load_event("check_rules_debugger_on"), lambda_context)
