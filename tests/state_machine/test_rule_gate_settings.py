"""The rule gate as the template configures it: which rules block, and the evidence when Debugger is off."""

from __future__ import annotations

import boto3
import pytest
from state_machine_harness import (
    HAPPY_PATH,
    REGION,
    TEMPLATE_PARAMETERS,
    WITH_RULE_CONTAINERS,
    Pipeline,
    assert_failed_in,
)


@pytest.mark.parametrize(
    "template_parameters",
    [WITH_RULE_CONTAINERS | {"BlockingRules": "VanishingGradient,LossNotDecreasing"}],
    ids=["two-blocking-rules"],
    indirect=True,
)
def test_issues_of_a_non_blocking_rule_are_reported_and_the_model_deploys(
    pipeline: Pipeline, dataset_zip: bytes
) -> None:
    # GIVEN a template where only VanishingGradient and LossNotDecreasing block, and SageMaker's Overfit finds issues
    pipeline.rules.issues["Overfit"] = "validation loss rose for 2 evaluations"
    # WHEN a dataset is uploaded
    run = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    # THEN the gate let the model through with the issue as a warning, and the endpoint serves it
    assert run.status == "SUCCEEDED", run.cause
    assert run.path == HAPPY_PATH
    assert run.output is not None
    rules = run.output["rules"]
    assert rules["sagemaker_rules"]["Overfit"] == "IssuesFound"
    assert rules["rules"]["Overfit"] == "NoIssuesFound"  # our own Overfit, in the training job's report
    assert any("Overfit" in warning for warning in rules["warnings"]), rules["warnings"]
    assert pipeline.ask_endpoint()["model"] == run.output["training"]["job_name"]


def test_with_the_template_defaults_the_gate_judges_the_training_codes_own_reports(
    pipeline: Pipeline, dataset_zip: bytes
) -> None:
    # GIVEN the template's defaults (no SageMaker rule container), and training code whose own checks find
    # vanishing gradients
    pipeline.code.behave(report_issues={"VanishingGradient": "gradients of layer1 below 1e-07 at step 20"})
    # WHEN a dataset is uploaded
    run = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    # THEN the training job ran without Debugger rules, and no rule job was evaluated
    (job,) = pipeline.training_jobs()
    description = boto3.client("sagemaker", region_name=REGION).describe_training_job(TrainingJobName=job)
    assert "DebugRuleConfigurations" not in description and "ProfilerRuleConfigurations" not in description
    assert pipeline.rules.calls == []
    # AND the gate read rule_report.json from the job's output and failed the run naming the rule
    assert run.error == "RuleIssuesFound", run.cause
    assert_failed_in(run, "CheckRules")
    assert "VanishingGradient IssuesFound (gradients of layer1 below 1e-07 at step 20)" in run.cause_message
    assert f"{job}/output/output.tar.gz" in run.cause_message
    assert pipeline.endpoint() is None
    ((subject, _),) = pipeline.notifications()
    assert subject.startswith("Retraining failed: RuleIssuesFound (")


@pytest.mark.parametrize(
    "template_parameters",
    [TEMPLATE_PARAMETERS | {"BlockingRules": "VanishingGradient,LossNotDecreasing,Dataloader"}],
    ids=["dataloader-blocks"],
    indirect=True,
)
def test_a_profiler_rule_named_in_blocking_rules_stops_the_model(pipeline: Pipeline, dataset_zip: bytes) -> None:
    # GIVEN a team that blocks on a starved data path, and a job whose profiler found one
    pipeline.code.behave(report_issues={"Dataloader": "the training loop waited for data 38% of step time"})
    # WHEN a dataset is uploaded
    run = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    # THEN the gate failed the run on the profiler's finding, and nothing was deployed
    assert run.error == "RuleIssuesFound", run.cause
    assert_failed_in(run, "CheckRules")
    assert "Dataloader IssuesFound (the training loop waited for data 38% of step time)" in run.cause_message
    assert pipeline.endpoint() is None


def test_profiler_findings_of_non_blocking_rules_are_warnings_in_the_run_output(
    pipeline: Pipeline, dataset_zip: bytes
) -> None:
    # GIVEN the template's defaults and a job whose profiler found the cores idle
    pipeline.code.behave(report_issues={"BatchSize": "CPU p95 41% at batch 32"})
    # WHEN a dataset is uploaded
    run = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    # THEN the model deploys, and the run's output and record carry the finding
    assert run.status == "SUCCEEDED", run.cause
    assert run.output is not None
    rules = run.output["rules"]
    assert rules["rules"]["BatchSize"] == "IssuesFound"
    assert rules["details"]["BatchSize"] == "CPU p95 41% at batch 32"
    assert "non-blocking rule BatchSize IssuesFound (CPU p95 41% at batch 32)" in rules["warnings"]
