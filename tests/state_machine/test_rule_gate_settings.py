"""The rule gate as the template configures it: which rules block, and the evidence when Debugger is off."""

from __future__ import annotations

import boto3
import pytest
from state_machine_harness import HAPPY_PATH, REGION, TEMPLATE_PARAMETERS, Pipeline, assert_failed_in


@pytest.mark.parametrize(
    "template_parameters",
    [TEMPLATE_PARAMETERS | {"BlockingRules": "VanishingGradient,LossNotDecreasing"}],
    ids=["two-blocking-rules"],
    indirect=True,
)
def test_issues_of_a_non_blocking_rule_are_reported_and_the_model_deploys(
    pipeline: Pipeline, dataset_zip: bytes
) -> None:
    # GIVEN a template where only VanishingGradient and LossNotDecreasing block, and Overfit finds issues
    pipeline.rules.issues["Overfit"] = "validation loss rose for 2 evaluations"
    # WHEN a dataset is uploaded
    run = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    # THEN the gate let the model through with the issue as a warning, and the endpoint serves it
    assert run.status == "SUCCEEDED", run.cause
    assert run.path == HAPPY_PATH
    assert run.output is not None
    rules = run.output["rules"]
    assert rules["rules"]["Overfit"] == "IssuesFound"
    assert any("Overfit" in warning for warning in rules["warnings"]), rules["warnings"]
    assert pipeline.ask_endpoint()["model"] == run.output["training"]["job_name"]


@pytest.mark.parametrize(
    "template_parameters",
    [TEMPLATE_PARAMETERS | {"DebuggerRules": "false", "ProfilerRules": "false"}],
    ids=["debugger-off"],
    indirect=True,
)
def test_with_debugger_off_the_gate_judges_the_training_codes_own_rule_report(
    pipeline: Pipeline, dataset_zip: bytes
) -> None:
    # GIVEN Debugger and Profiler rules switched off, and training code whose own checks find vanishing gradients
    pipeline.code.behave(report_issues={"VanishingGradient": "gradients of layer1 below 1e-07 at step 20"})
    # WHEN a dataset is uploaded
    run = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    # THEN the training job ran without Debugger rules, and no rule job was evaluated
    (job,) = pipeline.training_jobs()
    description = boto3.client("sagemaker", region_name=REGION).describe_training_job(TrainingJobName=job)
    assert "DebugRuleConfigurations" not in description
    assert pipeline.rules.calls == []
    # AND the gate read rule_report.json from the job's output and failed the run naming the rule
    assert run.error == "RuleIssuesFound", run.cause
    assert_failed_in(run, "CheckRules")
    assert "VanishingGradient IssuesFound (gradients of layer1 below 1e-07 at step 20)" in run.cause_message
    assert f"{job}/output/output.tar.gz" in run.cause_message
    assert pipeline.endpoint() is None
    ((subject, _),) = pipeline.notifications()
    assert subject.startswith("Retraining failed: RuleIssuesFound (")
