"""CheckRules: the gate between training and deployment.

Input: ``{"training": $.training}``.
Output ($.rules): ``{"passed": true, "rules": {name: status}, "warnings": [...], "reports_uri", "evidence"}``.

With SageMaker Debugger rules on, the evidence is the job's rule evaluation statuses. With them off (Debugger
no longer takes new customers) it is the ``rule_report.json`` the training code writes into the job's
``output.tar.gz``, judged by the same logic. A blocking rule with IssuesFound raises RuleIssuesFound; a blocking
rule that could not be evaluated raises RuleEvaluationFailed; anything a non-blocking rule says is a warning.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import PurePosixPath
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from pipeline.common.clients import get_client
from pipeline.common.config import Settings, load_settings
from pipeline.common.errors import RuleEvaluationFailed, RuleIssuesFound, TrainingFailed
from pipeline.common.observability import logger, metrics, tracer
from pipeline.common.rule_evaluation import Verdict, evaluate, results_from_report, results_from_training_job
from pipeline.common.sagemaker_gateway import SageMakerGateway, sagemaker_gateway
from pipeline.common.sagemaker_requests import DEBUGGER_RULES
from pipeline.common.state_models import Training

RULE_REPORT_NAME = "rule_report.json"


def _split_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def job_artifact_uri(description: dict[str, Any], artifact: str) -> str:
    output_path = description["OutputDataConfig"]["S3OutputPath"].rstrip("/")
    return f"{output_path}/{description['TrainingJobName']}/{artifact}"


def read_rule_report(s3: Any, output_archive_uri: str) -> dict[str, Any]:
    """The training code's rule report, streamed out of the job's output.tar.gz."""
    bucket, key = _split_s3_uri(output_archive_uri)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            raise RuleEvaluationFailed(
                f"Debugger rules are off and the job wrote no output data ({output_archive_uri} does not exist), so "
                f"there is no {RULE_REPORT_NAME} to judge the model by. The training code must write it to "
                "SM_OUTPUT_DATA_DIR."
            ) from error
        raise
    # Streaming mode reads the archive once, front to back, without holding it in memory.
    with tarfile.open(fileobj=body, mode="r|gz") as archive:
        for member in archive:
            if member.isfile() and PurePosixPath(member.name).name == RULE_REPORT_NAME:
                extracted = archive.extractfile(member)
                if extracted is not None:
                    report: dict[str, Any] = json.loads(extracted.read())
                    return report
    raise RuleEvaluationFailed(
        f"Debugger rules are off and {output_archive_uri} holds no {RULE_REPORT_NAME}, so the model is unchecked. "
        "The training code must write it to SM_OUTPUT_DATA_DIR."
    )


def _raise_if_failed(verdict: Verdict, job_name: str, reports_uri: str) -> None:
    if verdict.blocking_issues:
        issues = "; ".join(result.describe() for result in verdict.blocking_issues)
        raise RuleIssuesFound(
            f"training job {job_name} failed the rule gate: {issues}. The model was not deployed. Reports: "
            f"{reports_uri}. Fix the training (data, learning rate, epochs) or remove the rule from BLOCKING_RULES."
        )
    if verdict.evaluation_failures:
        failures = "; ".join(result.describe() for result in verdict.evaluation_failures)
        raise RuleEvaluationFailed(
            f"blocking rules of training job {job_name} could not be evaluated: {failures}. The model is unchecked "
            f"and was not deployed. Rule job logs: /aws/sagemaker/ProcessingJobs; reports: {reports_uri}."
        )


@tracer.capture_method
def check_rules(training: Training, settings: Settings, sagemaker: SageMakerGateway, s3: Any) -> dict[str, Any]:
    description = sagemaker.call("describe_training_job", TrainingJobName=training.job_name)
    if description["TrainingJobStatus"] != "Completed":
        raise TrainingFailed(f"training job {training.job_name} is {description['TrainingJobStatus']}, not Completed.")
    results = results_from_training_job(description)
    expected = list(training.rules)
    warnings: list[str] = []
    if any(rule in DEBUGGER_RULES for rule in training.rules):
        evidence, reports_uri = "sagemaker-rules", job_artifact_uri(description, "rule-output/")
    else:
        evidence, reports_uri = RULE_REPORT_NAME, job_artifact_uri(description, "output/output.tar.gz")
        report_results = results_from_report(read_rule_report(s3, reports_uri))
        results |= report_results
        expected += [rule for rule in report_results if rule not in expected]
        warnings += [
            f"blocking rule {rule} is not in {RULE_REPORT_NAME}"
            for rule in settings.blocking_rules
            if rule not in results and rule in DEBUGGER_RULES
        ]
    verdict = evaluate(results, expected, settings.blocking_rules)
    _raise_if_failed(verdict, training.job_name, reports_uri)
    warnings += verdict.warnings
    if warnings:
        logger.warning("rule gate passed with warnings", extra={"warnings": warnings})
    return {
        "passed": True,
        "rules": verdict.statuses,
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
