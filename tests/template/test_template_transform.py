"""template.yaml transforms offline into the CloudFormation a user gets from `sam deploy`."""

from __future__ import annotations

from typing import Any

from template_loading import REPO_ROOT, STATE_MACHINE

# The ASL's Task states, by placeholder, and the module each state's handler lives in.
STATE_MODULES = {
    "ValidateDatasetFunction": "validate_dataset",
    "StartTuningFunction": "start_tuning",
    "TuningStatusFunction": "tuning_status",
    "PickBestJobFunction": "pick_best_job",
    "StartTrainingFunction": "start_training",
    "TrainingStatusFunction": "training_status",
    "CheckRulesFunction": "check_rules",
    "DeployEndpointFunction": "deploy_endpoint",
    "EndpointStatusFunction": "endpoint_status",
    "NotifyFailureFunction": "notify_failure",
    "EvaluateModelFunction": "evaluate_model",
    "RejectModelFunction": "reject_model",
    "ApproveModelFunction": "approve_model",
    "ClaimPipelineFunction": "claim_pipeline",
    "CheckAlreadyTrainedFunction": "check_already_trained",
    "RecordRunFunction": "record_run",
    "WriteRunReportFunction": "write_run_report",
    "RequestApprovalFunction": "request_approval",
    "ResumeApprovalFunction": "resume_approval",
    "NotifyApprovalTimeoutFunction": "notify_approval_timeout",
    "ReleasePipelineFunction": "release_pipeline",
}


def _of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def test_transform_gives_one_python312_function_per_state_with_tracing(cloudformation: dict[str, Any]) -> None:
    functions = _of_type(cloudformation, "AWS::Lambda::Function")
    assert set(functions) == set(STATE_MODULES)
    for name, function in functions.items():
        properties = function["Properties"]
        assert properties["Handler"] == f"pipeline.{STATE_MODULES[name]}.lambda_handler"
        assert properties["Runtime"] == "python3.12"
        assert properties["TracingConfig"] == {"Mode": "Active"}
        assert properties["LoggingConfig"]["LogFormat"] == "JSON"
        # One shared CodeUri: every function is built from the same folder (functions/Makefile adds the report's
        # plotting libraries to WriteRunReport's bundle only).
        assert properties["Code"] == {"S3Bucket": "artifacts-bucket", "S3Key": "functions/"}


def test_every_function_is_built_by_the_bundle_makefile(sam_functions: dict[str, dict[str, Any]]) -> None:
    for name, function in sam_functions.items():
        assert function["Metadata"]["BuildMethod"] == "makefile", name
        assert function["Properties"]["CodeUri"] == "functions/", name


def test_state_machine_is_standard_logged_and_traced(cloudformation: dict[str, Any]) -> None:
    properties = cloudformation["Resources"][STATE_MACHINE]["Properties"]
    assert properties["StateMachineType"] == "STANDARD"
    assert properties["TracingConfiguration"] == {"Enabled": True}
    logging = properties["LoggingConfiguration"]
    assert logging["Level"] == "ALL"
    assert logging["IncludeExecutionData"] is True
    assert logging["Destinations"] == [
        {"CloudWatchLogsLogGroup": {"LogGroupArn": {"Fn::GetAtt": ["StateMachineLogGroup", "Arn"]}}}
    ]


def test_state_machine_has_the_upload_rule_and_a_disableable_schedule(cloudformation: dict[str, Any]) -> None:
    rules = _of_type(cloudformation, "AWS::Events::Rule")
    upload = rules[f"{STATE_MACHINE}DatasetUploaded"]["Properties"]
    assert upload["EventPattern"]["detail-type"] == ["Object Created"]
    assert upload["Targets"][0]["Arn"] == {"Ref": STATE_MACHINE}
    schedule = rules[f"{STATE_MACHINE}Scheduled"]["Properties"]
    assert schedule["ScheduleExpression"] == {"Ref": "ScheduleExpression"}
    assert schedule["State"] == {"Fn::If": ["ScheduleOn", "ENABLED", "DISABLED"]}
    assert schedule["Targets"][0]["Input"] == '{"trigger": "schedule"}'


def test_data_bucket_is_private_encrypted_versioned_and_tls_only(cloudformation: dict[str, Any]) -> None:
    bucket = cloudformation["Resources"]["DataBucket"]
    properties = bucket["Properties"]
    assert properties["NotificationConfiguration"]["EventBridgeConfiguration"] == {"EventBridgeEnabled": True}
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(properties["PublicAccessBlockConfiguration"].values())
    assert len(properties["PublicAccessBlockConfiguration"]) == 4
    assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert bucket["DeletionPolicy"] == "Retain"
    (statement,) = cloudformation["Resources"]["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_rollback_alarms_watch_the_endpoint_and_reach_the_functions(sam_template: dict[str, Any]) -> None:
    alarms = _of_type(sam_template, "AWS::CloudWatch::Alarm")
    metrics = {a["Properties"]["MetricName"] for a in alarms.values()}
    assert metrics == {"Invocation5XXErrors", "ModelLatency"}
    for alarm in alarms.values():
        dimensions = {d["Name"]: d["Value"] for d in alarm["Properties"]["Dimensions"]}
        assert dimensions == {"EndpointName": {"Ref": "EndpointName"}, "VariantName": "AllTraffic"}
    variables = sam_template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["ROLLBACK_ALARMS"] == {"Fn::Sub": ",".join(f"${{{name}}}" for name in sorted(alarms))}


def test_variant_name_of_the_alarms_is_the_one_the_deployment_uses(sam_template: dict[str, Any]) -> None:
    from pipeline.common.sagemaker_requests import VARIANT_NAME

    for alarm in _of_type(sam_template, "AWS::CloudWatch::Alarm").values():
        dimensions = {d["Name"]: d["Value"] for d in alarm["Properties"]["Dimensions"]}
        assert dimensions["VariantName"] == VARIANT_NAME


def test_email_subscription_exists_only_when_an_address_is_given(sam_template: dict[str, Any]) -> None:
    subscription = sam_template["Resources"]["FailureEmailSubscription"]
    assert subscription["Condition"] == "HasNotificationEmail"
    assert sam_template["Conditions"]["HasNotificationEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "NotificationEmail"}, ""]}]
    }


def test_outputs_name_bucket_state_machine_topic_and_endpoint(sam_template: dict[str, Any]) -> None:
    outputs = sam_template["Outputs"]
    assert outputs["DataBucketName"]["Value"] == {"Ref": "DataBucket"}
    assert outputs["StateMachineArn"]["Value"] == {"Ref": STATE_MACHINE}
    assert outputs["FailureTopicArn"]["Value"] == {"Ref": "FailureTopic"}
    assert outputs["EndpointName"]["Value"] == {"Ref": "EndpointName"}


def test_parameter_defaults_are_the_documented_ones(sam_template: dict[str, Any]) -> None:
    defaults = {name: spec.get("Default") for name, spec in sam_template["Parameters"].items()}
    assert defaults["ExpectedClasses"] == 133
    assert (defaults["ExpectedTrainImages"], defaults["ExpectedValidImages"], defaults["ExpectedTestImages"]) == (
        6680,
        835,
        836,
    )
    assert defaults["MaxTuningJobs"] == 5
    assert defaults["TuningEpochs"] == 4
    assert defaults["TrainingEpochs"] == 10
    assert defaults["TrainingInstanceType"] == "ml.g4dn.xlarge"
    assert defaults["EndpointInstanceType"] == "ml.m5.large"
    assert sam_template["Parameters"]["DeploymentStrategy"]["AllowedValues"] == [
        "AUTO",
        "ALL_AT_ONCE",
        "CANARY",
        "LINEAR",
    ]


def test_every_parameter_is_documented_in_the_deploy_guide(sam_template: dict[str, Any]) -> None:
    guide = (REPO_ROOT / "docs" / "deploy.md").read_text()
    assert [name for name in sam_template["Parameters"] if f"`{name}`" not in guide] == []


def test_console_parameter_groups_list_every_parameter_once(sam_template: dict[str, Any]) -> None:
    groups = sam_template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    grouped = [name for group in groups for name in group["Parameters"]]
    assert sorted(grouped) == sorted(sam_template["Parameters"])
