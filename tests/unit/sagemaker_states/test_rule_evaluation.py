"""The verdict on rule statuses, whether they come from SageMaker or from the training code's report."""

from __future__ import annotations

from pipeline.common.rule_evaluation import (
    RuleResult,
    any_rule_running,
    evaluate,
    results_from_report,
    results_from_training_job,
)

BLOCKING = ("VanishingGradient", "LossNotDecreasing", "Overfit")
EXPECTED = ["VanishingGradient", "LossNotDecreasing", "Overfit", "ProfilerReport"]


def _results(**statuses: str) -> dict[str, RuleResult]:
    return {name: RuleResult(name, status, f"{name} details") for name, status in statuses.items()}


def test_all_clear_passes_without_warnings() -> None:
    verdict = evaluate(
        _results(
            VanishingGradient="NoIssuesFound",
            LossNotDecreasing="NoIssuesFound",
            Overfit="NoIssuesFound",
            ProfilerReport="NoIssuesFound",
        ),
        EXPECTED,
        BLOCKING,
    )

    assert verdict.passed
    assert verdict.warnings == []
    assert verdict.statuses == dict.fromkeys(EXPECTED, "NoIssuesFound")


def test_issues_on_a_blocking_rule_fail_and_name_the_rule() -> None:
    verdict = evaluate(
        _results(
            VanishingGradient="NoIssuesFound",
            LossNotDecreasing="IssuesFound",
            Overfit="NoIssuesFound",
            ProfilerReport="NoIssuesFound",
        ),
        EXPECTED,
        BLOCKING,
    )

    assert not verdict.passed
    assert [result.describe() for result in verdict.blocking_issues] == [
        "LossNotDecreasing IssuesFound (LossNotDecreasing details)"
    ]


def test_issues_on_a_non_blocking_rule_are_a_warning() -> None:
    verdict = evaluate(
        _results(
            VanishingGradient="NoIssuesFound",
            LossNotDecreasing="NoIssuesFound",
            Overfit="NoIssuesFound",
            ProfilerReport="IssuesFound",
        ),
        EXPECTED,
        BLOCKING,
    )

    assert verdict.passed
    assert verdict.warnings == ["non-blocking rule ProfilerReport IssuesFound (ProfilerReport details)"]


def test_error_or_stopped_on_a_blocking_rule_is_an_evaluation_failure() -> None:
    verdict = evaluate(
        _results(
            VanishingGradient="Error", LossNotDecreasing="Stopped", Overfit="NoIssuesFound", ProfilerReport="Error"
        ),
        EXPECTED,
        BLOCKING,
    )

    assert [result.name for result in verdict.evaluation_failures] == ["VanishingGradient", "LossNotDecreasing"]
    assert verdict.warnings == ["non-blocking rule ProfilerReport Error (ProfilerReport details)"]
    assert not verdict.passed


def test_expected_rule_without_a_status_is_not_reported_and_fails_when_blocking() -> None:
    verdict = evaluate(_results(LossNotDecreasing="NoIssuesFound", Overfit="NoIssuesFound"), EXPECTED, BLOCKING)

    assert verdict.statuses["VanishingGradient"] == "NotReported"
    assert [result.name for result in verdict.evaluation_failures] == ["VanishingGradient"]
    assert verdict.warnings == ["non-blocking rule ProfilerReport NotReported (no evaluation status was reported)"]


def test_running_rules_keep_the_poll_loop_alive_until_terminal() -> None:
    assert any_rule_running(_results(Overfit="InProgress", VanishingGradient="NoIssuesFound"), EXPECTED)
    assert any_rule_running(_results(Overfit="Stopping"), EXPECTED)
    assert not any_rule_running(_results(Overfit="Stopped", VanishingGradient="IssuesFound"), EXPECTED)
    # A rule SageMaker never listed must not hold the loop until the poll bound; the gate reports it instead.
    assert not any_rule_running({}, EXPECTED)


def test_statuses_are_read_from_both_debugger_and_profiler_lists() -> None:
    description = {
        "DebugRuleEvaluationStatuses": [
            {"RuleConfigurationName": "Overfit", "RuleEvaluationStatus": "IssuesFound", "StatusDetails": "gap 0.4"}
        ],
        "ProfilerRuleEvaluationStatuses": [
            {"RuleConfigurationName": "ProfilerReport", "RuleEvaluationStatus": "InProgress"}
        ],
    }

    assert results_from_training_job(description) == {
        "Overfit": RuleResult("Overfit", "IssuesFound", "gap 0.4"),
        "ProfilerReport": RuleResult("ProfilerReport", "InProgress", ""),
    }


def test_training_code_report_is_read_in_the_same_terms() -> None:
    report = {"rules": {"Overfit": {"status": "IssuesFound", "details": "valid loss rose 3 epochs"}}, "epochs": 10}

    assert results_from_report(report) == {"Overfit": RuleResult("Overfit", "IssuesFound", "valid loss rose 3 epochs")}
