"""CheckRules: the gate between training and deployment.

Input: ``{"training": $.training}``.
Output ($.rules): ``{"passed": true, "rules": {name: status}, "details": {name: text}, "sagemaker_rules":
{name: status}, "warnings": [...], "reports_uri", "evidence"}``.

The evidence is always the training code's own reports in the job's ``output.tar.gz``: ``rule_report.json``
(our Debugger rule equivalents on the job's smdebug trial) and ``profiler_report.json`` (our profiler's rules on
the system and step metrics it recorded). They exist on every account, and none of their rules passes without
judging. When the account still runs SageMaker's Debugger/Profiler rule containers (DebuggerRules/ProfilerRules),
their statuses are judged too, under ``sagemaker_rules``: a blocking rule stops the model when either evaluation
finds issues or could not evaluate. A blocking rule with IssuesFound raises RuleIssuesFound; a blocking rule that
could not be evaluated (NotEvaluated, Error, missing) raises RuleEvaluationFailed; anything a non-blocking rule
says is a warning.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.common.clients import get_client
from pipeline.common.config import Settings, load_settings
from pipeline.common.errors import RuleEvaluationFailed, RuleIssuesFound, TrainingFailed
from pipeline.common.job_outputs import job_artifact_uri, output_archive_uri, read_output_files
from pipeline.common.observability import logger, metrics, tracer
from pipeline.common.rule_evaluation import (
    NOT_REPORTED,
    RuleResult,
    Verdict,
    evaluate,
    results_from_report,
    results_from_training_job,
)
from pipeline.common.sagemaker_gateway import SageMakerGateway, sagemaker_gateway
from pipeline.common.state_models import Training

RULE_REPORT_NAME = "rule_report.json"
PROFILER_REPORT_NAME = "profiler_report.json"
REPORT_NAMES = (RULE_REPORT_NAME, PROFILER_REPORT_NAME)


def read_job_reports(s3: Any, output_archive_uri: str) -> dict[str, dict[str, Any]]:
    """The training code's rule and profiler reports, streamed out of the job's output.tar.gz."""
    reports = read_output_files(s3, output_archive_uri, REPORT_NAMES)
    if reports is None:
        raise RuleEvaluationFailed(
            f"the training job wrote no output data ({output_archive_uri} does not exist), so there is no "
            f"{RULE_REPORT_NAME} or {PROFILER_REPORT_NAME} to judge the model by. The training code must write "
            "them to SM_OUTPUT_DATA_DIR."
        )
    missing = [name for name in REPORT_NAMES if name not in reports]
    if missing:
        raise RuleEvaluationFailed(
            f"{output_archive_uri} holds no {' or '.join(missing)}, so the model is unchecked. The training code "
            "(train_model.py) must write both reports to SM_OUTPUT_DATA_DIR."
        )
    return reports


def _raise_if_failed(verdict: Verdict, source: str, job_name: str, reports_uri: str) -> None:
    if verdict.blocking_issues:
        issues = "; ".join(result.describe() for result in verdict.blocking_issues)
        raise RuleIssuesFound(
            f"training job {job_name} failed the rule gate ({source}): {issues}. The model was not deployed. "
            f"Reports: {reports_uri}. Fix the training (data, learning rate, epochs) or remove the rule from "
            "BlockingRules."
        )
    if verdict.evaluation_failures:
        failures = "; ".join(result.describe() for result in verdict.evaluation_failures)
        raise RuleEvaluationFailed(
            f"blocking rules of training job {job_name} could not be evaluated ({source}): {failures}. The model is "
            f"unchecked and was not deployed. Reports: {reports_uri}."
        )


@tracer.capture_method
def check_rules(training: Training, settings: Settings, sagemaker: SageMakerGateway, s3: Any) -> dict[str, Any]:
    description = sagemaker.call("describe_training_job", TrainingJobName=training.job_name)
    if description["TrainingJobStatus"] != "Completed":
        raise TrainingFailed(f"training job {training.job_name} is {description['TrainingJobStatus']}, not Completed.")
    reports_uri = output_archive_uri(description)
    reports = read_job_reports(s3, reports_uri)
    ours: dict[str, RuleResult] = {}
    for name in REPORT_NAMES:
        ours |= results_from_report(reports[name])
    for name in settings.blocking_rules:
        if name not in ours:
            details = (
                f"no rule of this name in the training job's reports (they hold {sorted(ours)}); check BlockingRules"
            )
            ours[name] = RuleResult(name, NOT_REPORTED, details)
    verdict = evaluate(ours, list(settings.blocking_rules), settings.blocking_rules)
    _raise_if_failed(verdict, "the training job's reports", training.job_name, reports_uri)
    warnings = list(verdict.warnings)
    sagemaker_statuses: dict[str, str] = {}
    evidence = ", ".join(REPORT_NAMES)
    if training.rules:
        rule_jobs_uri = job_artifact_uri(description, "rule-output/")
        # Only the rules SageMaker ran are judged here; ours are the ones that must cover every blocking rule.
        sagemaker_verdict = evaluate(
            results_from_training_job(description),
            training.rules,
            [r for r in settings.blocking_rules if r in training.rules],
        )
        _raise_if_failed(sagemaker_verdict, "SageMaker's rule jobs", training.job_name, rule_jobs_uri)
        sagemaker_statuses = sagemaker_verdict.statuses
        warnings += [f"SageMaker's {warning}" for warning in sagemaker_verdict.warnings]
        evidence += " and SageMaker's rule jobs"
    if warnings:
        logger.warning("rule gate passed with warnings", extra={"warnings": warnings})
    return {
        "passed": True,
        "rules": verdict.statuses,
        "details": {name: ours[name].details for name in verdict.statuses},
        "sagemaker_rules": sagemaker_statuses,
        "warnings": warnings,
        "reports_uri": reports_uri,
        "evidence": evidence,
    }


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        result = check_rules(
            Training.model_validate(event["training"]), load_settings(), sagemaker_gateway(), get_client("s3")
        )
    except (RuleIssuesFound, RuleEvaluationFailed):
        metrics.add_metric(name="RuleGateFailed", unit=MetricUnit.Count, value=1)
        raise
    metrics.add_metric(name="RuleGatePassed", unit=MetricUnit.Count, value=1)
    return result
