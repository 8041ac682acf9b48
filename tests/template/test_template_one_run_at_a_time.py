"""The pipeline table, the lease functions' grants on the state machine, and the dashboard agree with the code."""

from __future__ import annotations

import json
from typing import Any

from template_loading import STATE_MACHINE, policy_statements

from offline.stack import Template
from pipeline.common import pipeline_state, run_record
from pipeline.record_run import NAMESPACE


def test_pipeline_table_is_on_demand_recoverable_and_expires_by_the_code_ttl_attribute(
    sam_template: dict[str, Any],
) -> None:
    table = sam_template["Resources"]["PipelineTable"]
    properties = table["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": pipeline_state.TTL_ATTRIBUTE, "Enabled": True}
    assert table["DeletionPolicy"] == "Retain"


def test_lease_functions_name_the_state_machine_by_its_fixed_name(sam_template: dict[str, Any]) -> None:
    # A reference to the state machine from the functions it calls would be circular: its name is fixed instead.
    resources = sam_template["Resources"]
    assert resources[STATE_MACHINE]["Properties"]["Name"] == {"Fn::Sub": "${AWS::StackName}-retrain"}
    granted = {}
    for function in ("ClaimPipelineFunction", "ReleasePipelineFunction"):
        for statement in policy_statements(resources[function]):
            if str(statement["Action"]).startswith("states:"):
                granted[statement["Action"]] = statement["Resource"]["Fn::Sub"]
    assert granted == {
        "states:DescribeExecution": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:"
        "${AWS::StackName}-retrain:*",
        "states:StartExecution": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:"
        "${AWS::StackName}-retrain",
    }
    # And only the pipeline table, nothing else in DynamoDB.
    for function in (
        "ClaimPipelineFunction",
        "CheckAlreadyTrainedFunction",
        "RecordRunFunction",
        "ReleasePipelineFunction",
    ):
        for statement in policy_statements(resources[function]):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if any(a.startswith("dynamodb:") for a in actions):
                assert statement["Resource"] == {"Fn::GetAtt": ["PipelineTable", "Arn"]}


def test_dashboard_is_valid_json_and_charts_the_metrics_record_run_publishes() -> None:
    template = Template()
    body = json.loads(template.resolve(template.properties("PipelineDashboard")["DashboardBody"]))
    charted = {
        (metric[0], metric[1])
        for widget in body["widgets"]
        for metric in widget["properties"]["metrics"]
        if metric[0] != "..."
    }
    assert {(NAMESPACE, name) for name in ("RunOutcome", "RunDurationSeconds", "TestAccuracy", "RunCostUSD")} <= charted
    assert {("AWS/SageMaker", "Invocation5XXErrors"), ("AWS/SageMaker", "ModelLatency")} <= charted
    (outcomes,) = [w for w in body["widgets"] if w["properties"]["metrics"][0][1] == "RunOutcome"]
    shown = {row[0] if row[0] != "..." else row[1] for row in outcomes["properties"]["metrics"]}
    assert shown - {"DogBreedRetraining"} | {outcomes["properties"]["metrics"][0][3]} == {
        run_record.SUCCEEDED,
        run_record.FAILED,
        run_record.REJECTED,
        run_record.ALREADY_TRAINED,
        run_record.QUEUED,
    }
    service = template.body["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    assert all(
        metric[metric.index("service") + 1] == service
        for widget in body["widgets"]
        for metric in widget["properties"]["metrics"]
        if "service" in metric
    )


def test_only_resume_approval_may_answer_a_task_token_and_only_for_this_state_machine(
    sam_template: dict[str, Any],
) -> None:
    answering = {}
    for name, resource in sam_template["Resources"].items():
        for statement in policy_statements(resource) if resource["Type"].startswith("AWS::Serverless::") else []:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if any(a.startswith(("states:SendTask", "states:*")) for a in actions):
                answering[name] = (sorted(actions), statement["Resource"])
    assert answering == {
        "ResumeApprovalFunction": (
            ["states:SendTaskSuccess"],
            {"Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:"
             "${AWS::StackName}-retrain"},
        )
    }  # fmt: skip
    # And the registry's decisions of this package group only reach it
    (event,) = sam_template["Resources"]["ResumeApprovalFunction"]["Properties"]["Events"].values()
    assert event["Properties"]["Pattern"]["detail"] == {
        "ModelPackageGroupName": [{"Ref": "ModelPackageGroupName"}],
        "ModelApprovalStatus": ["Approved", "Rejected"],
    }
