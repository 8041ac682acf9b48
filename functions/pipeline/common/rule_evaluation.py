"""From rule evaluation statuses to a verdict on the trained model (pure; no AWS).

The same logic judges SageMaker Debugger/Profiler statuses and the training code's own reports
(``rule_report.json``, ``profiler_report.json``). A rule that blocks the deployment when it finds issues also blocks
it when it could not be evaluated (Error, Stopped, NotEvaluated, or never reported); a non-blocking rule only ever
produces warnings. No status but NoIssuesFound counts as a pass.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NO_ISSUES = "NoIssuesFound"
ISSUES = "IssuesFound"
# Our reports' status for a rule that had too little data, or nothing to judge (a GPU rule on a CPU-only job).
NOT_EVALUATED = "NotEvaluated"
NOT_REPORTED = "NotReported"
TERMINAL_RULE_STATUSES = frozenset({NO_ISSUES, ISSUES, NOT_EVALUATED, "Error", "Stopped"})
EVALUATION_FAILED_STATUSES = frozenset({"Error", "Stopped", NOT_EVALUATED, NOT_REPORTED})


@dataclass(frozen=True)
class RuleResult:
    name: str
    status: str
    details: str = ""

    def describe(self) -> str:
        return f"{self.name} {self.status}" + (f" ({self.details})" if self.details else "")


def results_from_training_job(description: Mapping[str, Any]) -> dict[str, RuleResult]:
    """Debugger and Profiler rule statuses of a DescribeTrainingJob response, by rule name."""
    entries: Iterable[Mapping[str, Any]] = [
        *description.get("DebugRuleEvaluationStatuses", []),
        *description.get("ProfilerRuleEvaluationStatuses", []),
    ]
    return {
        entry["RuleConfigurationName"]: RuleResult(
            entry["RuleConfigurationName"],
            entry.get("RuleEvaluationStatus", NOT_REPORTED),
            entry.get("StatusDetails", ""),
        )
        for entry in entries
    }


def results_from_report(report: Mapping[str, Any]) -> dict[str, RuleResult]:
    """A report of the training code (``rule_report.json``, ``profiler_report.json``):
    ``{"rules": {name: {"status", "details", "recommendation"?}}}``; a recommendation follows the details."""
    rules: Mapping[str, Mapping[str, Any]] = report.get("rules", {})
    return {
        name: RuleResult(name, str(entry.get("status", NOT_REPORTED)), _details(entry)) for name, entry in rules.items()
    }


def _details(entry: Mapping[str, Any]) -> str:
    details, recommendation = str(entry.get("details") or ""), str(entry.get("recommendation") or "")
    return f"{details}. Recommendation: {recommendation}" if recommendation else details


def any_rule_running(results: Mapping[str, RuleResult], expected: Sequence[str]) -> bool:
    """True while a reported evaluation is not terminal; rules never reported do not keep the loop alive."""
    return any(results[name].status not in TERMINAL_RULE_STATUSES for name in expected if name in results)


@dataclass(frozen=True)
class Verdict:
    statuses: dict[str, str]
    blocking_issues: list[RuleResult] = field(default_factory=list)
    evaluation_failures: list[RuleResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.blocking_issues and not self.evaluation_failures


def evaluate(results: Mapping[str, RuleResult], expected: Sequence[str], blocking: Collection[str]) -> Verdict:
    """Judges every expected rule; ``results`` may hold more rules than expected (they are judged too)."""
    judged = {
        name: results.get(name, RuleResult(name, NOT_REPORTED, "no evaluation status was reported"))
        for name in expected
    }
    judged |= {name: result for name, result in results.items() if name not in judged}
    verdict = Verdict(statuses={name: result.status for name, result in judged.items()})
    for result in judged.values():
        if result.status == NO_ISSUES:
            continue
        is_blocking = result.name in blocking
        if result.status == ISSUES and is_blocking:
            verdict.blocking_issues.append(result)
        elif (
            result.status in EVALUATION_FAILED_STATUSES or result.status not in TERMINAL_RULE_STATUSES
        ) and is_blocking:
            verdict.evaluation_failures.append(result)
        else:
            verdict.warnings.append(f"non-blocking rule {result.describe()}")
    return verdict
