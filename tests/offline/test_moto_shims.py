"""The moto 5.2.5 patches, each on its own: in-process Lambda, Step Functions fixes, EventBridge routing,
the SageMaker actions moto lacks."""

from __future__ import annotations

import json
import os
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import moto
import pytest
from botocore.exceptions import ClientError
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sagemaker.models import sagemaker_backends
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser, ASLParserException
from offline_moto_builders import REGION, create_function, create_state_machine, finished_execution

from offline.moto_shims import (
    EventBridgeRouter,
    ExecutionNameFix,
    FastStepFunctionsTimers,
    InProcessLambda,
    ModelPackageEvents,
    MotoVersionMismatch,
    ParsedDefinitions,
    ReusedTaskClients,
    SageMakerMissingActions,
    SharedServiceModels,
    fire_schedule,
    offline_aws_patches,
)

pytestmark = pytest.mark.usefixtures("aws")

PASS_MACHINE = {"StartAt": "Echo", "States": {"Echo": {"Type": "Pass", "End": True}}}


def test_patch_refuses_to_install_on_another_moto_version(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a moto whose internals the patches were not verified against
    monkeypatch.setattr(moto, "__version__", "5.3.0")
    # WHEN a patch is installed THEN it refuses, naming both versions
    with pytest.raises(MotoVersionMismatch, match=r"5\.2\.5.*5\.3\.0"):
        InProcessLambda().install()


# --- in-process Lambda ---------------------------------------------------------------------------------------


@pytest.fixture
def handler_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "shim_handlers.py").write_text(
        textwrap.dedent(
            """
            import os

            class DatasetInvalid(Exception):
                pass

            def report(event, context):
                return {
                    "stage": os.environ["STAGE"],
                    "function": context.function_name,
                    "time_left_ms": context.get_remaining_time_in_millis(),
                    "echo": event,
                }

            def reject(event, context):
                raise DatasetInvalid("train/ has 3 classes, expected 5")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "shim_handlers"


def test_invoke_runs_the_handler_string_with_the_function_environment(handler_module: str) -> None:
    # GIVEN a function whose Handler names a module on the path and whose Environment sets STAGE
    create_function("reporter", f"{handler_module}.report", environment={"STAGE": "offline"}, timeout=60)
    with InProcessLambda() as shim:
        # WHEN it is invoked through boto3
        response = boto3.client("lambda", region_name=REGION).invoke(
            FunctionName="reporter", Payload=json.dumps({"n": 1})
        )
    # THEN the handler ran here with the environment and a context with time left under the 60 s timeout
    result = json.loads(response["Payload"].read())
    assert "FunctionError" not in response
    assert result["stage"] == "offline"
    assert result["function"] == "reporter"
    assert 0 < result["time_left_ms"] <= 60_000
    assert result["echo"] == {"n": 1}
    assert [(i.function_name, i.error_type) for i in shim.invocations] == [("reporter", None)]


def test_handler_exception_becomes_a_lambda_error_payload(handler_module: str) -> None:
    create_function("rejecter", f"{handler_module}.reject")
    with InProcessLambda():
        response = boto3.client("lambda", region_name=REGION).invoke(FunctionName="rejecter", Payload=b"{}")
    error = json.loads(response["Payload"].read())
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "DatasetInvalid"
    assert error["errorMessage"] == "train/ has 3 classes, expected 5"
    assert error["stackTrace"]


def test_handler_that_does_not_import_fails_like_the_lambda_runtime(handler_module: str) -> None:
    create_function("no-module", "pipeline.no_such_state.lambda_handler")
    create_function("no-function", f"{handler_module}.no_such_function")
    client = boto3.client("lambda", region_name=REGION)
    with InProcessLambda():
        missing_module = json.loads(client.invoke(FunctionName="no-module", Payload=b"{}")["Payload"].read())
        missing_function = json.loads(client.invoke(FunctionName="no-function", Payload=b"{}")["Payload"].read())
    assert missing_module["errorType"] == "Runtime.ImportModuleError"
    assert "pipeline.no_such_state" in missing_module["errorMessage"]
    assert missing_function["errorType"] == "Runtime.HandlerNotFound"


def test_a_client_created_in_another_thread_waits_until_the_handlers_environment_is_restored() -> None:
    # GIVEN a handler running with its function's environment patched in, while another thread creates a client
    # (botocore iterates os.environ for proxies; doing so while the patch is undone raises KeyError)
    create_function("slow", "unused.handler", environment={"STAGE": "offline"})
    order: list[str] = []

    def create_client() -> None:
        boto3.session.Session().client("s3", region_name=REGION)
        order.append("client created" + (" while STAGE was set" if "STAGE" in os.environ else ""))

    def slow(event: Any, context: Any) -> None:
        creator = threading.Thread(target=create_client)
        creator.start()
        creator.join(timeout=1)  # long enough for a client creation that does not wait
        order.append("handler returned")
        return None

    with InProcessLambda({"slow": slow}):
        boto3.client("lambda", region_name=REGION).invoke(FunctionName="slow", Payload=b"{}")
        # THEN the client was created only after the handler ended and its environment was gone
        deadline = time.monotonic() + 30
        while len(order) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert order == ["handler returned", "client created"]


def test_override_replaces_the_handler_and_the_state_machine_catches_its_error_by_name() -> None:
    # GIVEN a state machine whose task catches DatasetInvalid, and an override that raises it
    class DatasetInvalid(Exception):
        pass

    def reject(event: dict, context: object) -> None:
        raise DatasetInvalid("no test/ split")

    function_arn = create_function("validate", "not.a.real.module")
    machine_arn = create_state_machine(
        {
            "StartAt": "Validate",
            "States": {
                "Validate": {
                    "Type": "Task",
                    "Resource": function_arn,
                    "Catch": [{"ErrorEquals": ["DatasetInvalid"], "Next": "Rejected"}],
                    "End": True,
                },
                "Rejected": {"Type": "Fail", "Error": "Rejected"},
            },
        }
    )
    with InProcessLambda({"validate": reject}):
        # WHEN the execution runs
        execution = boto3.client("stepfunctions", region_name=REGION).start_execution(
            stateMachineArn=machine_arn, name="run-1", input="{}"
        )
        result = finished_execution(execution["executionArn"])
    # THEN the Catch matched the exception's class name
    assert result["status"] == "FAILED"
    assert result["error"] == "Rejected"


# --- Step Functions ----------------------------------------------------------------------------------------


def test_start_execution_without_name_gets_a_unique_name() -> None:
    machine_arn = create_state_machine(PASS_MACHINE)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    with ExecutionNameFix():
        first = sfn.start_execution(stateMachineArn=machine_arn, input='{"a": 1}')["executionArn"]
        second = sfn.start_execution(stateMachineArn=machine_arn, input='{"a": 2}')["executionArn"]
    assert first != second
    assert not first.endswith(":None")


def test_lambda_tasks_of_an_execution_share_one_client(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN three Lambda tasks in a row, and moto's client factory counting what it creates
    created: list[str] = []
    create = lambda_eval_utils.boto_client_for

    def counting(region: str, service: str, state_credentials: Any = None) -> Any:
        created.append(service)
        return create(region=region, service=service, state_credentials=state_credentials)

    monkeypatch.setattr(lambda_eval_utils, "boto_client_for", counting)
    function_arn = create_function("step", "unused.handler")
    states = {f"Step{i}": {"Type": "Task", "Resource": function_arn, "Next": f"Step{i + 1}"} for i in range(3)}
    states["Step2"] = {"Type": "Task", "Resource": function_arn, "End": True}
    machine_arn = create_state_machine({"StartAt": "Step0", "States": states})
    with InProcessLambda({"step": lambda event, context: {"ran": True}}), ReusedTaskClients():
        # WHEN the execution runs
        sfn = boto3.client("stepfunctions", region_name=REGION)
        started = sfn.start_execution(stateMachineArn=machine_arn, name="first", input="{}")
        result = finished_execution(started["executionArn"])
    # THEN every task ran, through one Lambda client
    assert result["status"] == "SUCCEEDED" and json.loads(result["output"]) == {"ran": True}
    assert created == ["lambda"]
    # AND uninstalled, moto creates a client per task again
    with InProcessLambda({"step": lambda event, context: {"ran": True}}):
        finished_execution(sfn.start_execution(stateMachineArn=machine_arn, name="second", input="{}")["executionArn"])
    assert created == ["lambda"] * 4


def test_sessions_created_while_installed_load_each_service_model_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def loader(session: boto3.session.Session) -> Any:
        return session._session.get_component("data_loader")

    # (tests/conftest.py shares one loader for the whole test session: start from botocore's own behaviour)
    monkeypatch.setattr(botocore.session, "create_loader", botocore.loaders.create_loader)
    with SharedServiceModels():
        first, second = boto3.session.Session(), boto3.session.Session()
        first.client("sagemaker", region_name=REGION)
        # THEN a second session's client finds SageMaker's model already loaded, in the one shared loader
        assert loader(first) is loader(second)
        model = loader(second).load_service_model("sagemaker", "service-2")
        assert model is loader(first).load_service_model("sagemaker", "service-2")
        # AND a session with its own AWS_DATA_PATH keeps a loader of its own
        monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
        assert loader(boto3.session.Session()) is not loader(first)
        monkeypatch.delenv("AWS_DATA_PATH")
    assert loader(boto3.session.Session()) is not loader(first)


def test_a_definition_is_parsed_once_and_every_parse_gets_components_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    grammar_runs: list[str] = []
    full_parse = AmazonStateLanguageParser.parse

    def counted(definition: str) -> Any:
        grammar_runs.append(definition)
        return full_parse(definition)

    monkeypatch.setattr(AmazonStateLanguageParser, "parse", staticmethod(counted))
    sfn = boto3.client("stepfunctions", region_name=REGION)
    with ParsedDefinitions():
        # WHEN a machine is created and run twice, and the same definition parsed again
        machine_arn = create_state_machine(PASS_MACHINE)
        for number in range(2):
            execution = sfn.start_execution(stateMachineArn=machine_arn, name=f"run-{number}", input='{"a": 1}')
            assert finished_execution(execution["executionArn"])["status"] == "SUCCEEDED"
        first, tree = AmazonStateLanguageParser.parse(json.dumps(PASS_MACHINE))
        second, same_tree = AmazonStateLanguageParser.parse(json.dumps(PASS_MACHINE))
        # THEN the grammar ran once for it, yet each parse built its own components from the one tree
        assert grammar_runs == [json.dumps(PASS_MACHINE)]
        assert tree is same_tree and first is not second and type(first) is type(second)
        # AND an invalid definition is refused every time, as without the patch
        for _ in range(2):
            with pytest.raises(ASLParserException):
                AmazonStateLanguageParser.parse('{"StartAt": "Nowhere", "States": {"Echo": {"Type": "Nope"}}}')
        assert len(grammar_runs) == 3
    assert AmazonStateLanguageParser.parse is counted


def test_fast_timers_skip_an_hour_long_wait_and_retry_back_off() -> None:
    # GIVEN a one-hour Wait and a Retry with a one-hour interval around a task that fails once
    attempts: list[int] = []

    def flaky(event: dict, context: object) -> dict:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("transient")
        return {"ok": True}

    function_arn = create_function("flaky", "unused.handler")
    machine_arn = create_state_machine(
        {
            "StartAt": "Sleep",
            "States": {
                "Sleep": {"Type": "Wait", "Seconds": 3600, "Next": "Call"},
                "Call": {
                    "Type": "Task",
                    "Resource": function_arn,
                    "Retry": [{"ErrorEquals": ["RuntimeError"], "IntervalSeconds": 3600, "MaxAttempts": 2}],
                    "End": True,
                },
            },
        }
    )
    with InProcessLambda({"flaky": flaky}), FastStepFunctionsTimers():
        execution = boto3.client("stepfunctions", region_name=REGION).start_execution(
            stateMachineArn=machine_arn, name="fast", input="{}"
        )
        # WHEN it runs THEN it finishes well within the guard deadline, after one retry
        result = finished_execution(execution["executionArn"], deadline_seconds=60)
    assert result["status"] == "SUCCEEDED"
    assert len(attempts) == 2


# --- EventBridge -------------------------------------------------------------------------------------------

S3_PATTERN = {
    "source": ["aws.s3"],
    "detail-type": ["Object Created"],
    "detail": {"bucket": {"name": ["data"]}, "object": {"key": [{"wildcard": "incoming/*.zip"}]}},
}


def _bucket_with_eventbridge() -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="data")
    s3.put_bucket_notification_configuration(Bucket="data", NotificationConfiguration={"EventBridgeConfiguration": {}})


def _rule(name: str, target_arn: str, *, state: str = "ENABLED", **rule: object) -> None:
    events = boto3.client("events", region_name=REGION)
    events.put_rule(Name=name, State=state, **rule)  # type: ignore[arg-type]
    events.put_targets(Rule=name, Targets=[{"Id": "t", "Arn": target_arn}])


def _executions(machine_arn: str) -> list[dict]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arns = [e["executionArn"] for e in sfn.list_executions(stateMachineArn=machine_arn)["executions"]]
    return [finished_execution(arn) for arn in arns]


def test_s3_upload_matching_the_rule_starts_one_execution_with_the_event() -> None:
    # GIVEN the S3 rule targeting a state machine
    _bucket_with_eventbridge()
    machine_arn = create_state_machine(PASS_MACHINE)
    _rule("on-upload", machine_arn, EventPattern=json.dumps(S3_PATTERN))
    s3 = boto3.client("s3", region_name=REGION)
    with EventBridgeRouter() as router:
        # WHEN a zip lands under incoming/, other keys land elsewhere, and tags are added
        s3.put_object(Bucket="data", Key="incoming/dogs.zip", Body=b"zip")
        s3.put_object(Bucket="data", Key="other/dogs.zip", Body=b"zip")
        s3.put_object(Bucket="data", Key="incoming/notes.txt", Body=b"txt")
        s3.put_object_tagging(Bucket="data", Key="incoming/dogs.zip", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    # THEN exactly one execution started, with the raw Object Created event (ISO time) as input
    executions = _executions(machine_arn)
    assert len(executions) == 1
    event = json.loads(executions[0]["input"])
    assert event["detail-type"] == "Object Created"
    assert event["detail"]["object"]["key"] == "incoming/dogs.zip"
    datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ")
    assert [d.error for d in router.deliveries] == [None]


def test_disabled_rule_gets_nothing_and_schedule_only_rule_ignores_s3_events() -> None:
    _bucket_with_eventbridge()
    machine_arn = create_state_machine(PASS_MACHINE)
    _rule("disabled", machine_arn, state="DISABLED", EventPattern=json.dumps(S3_PATTERN))
    _rule("weekly", machine_arn, ScheduleExpression="rate(7 days)")
    with EventBridgeRouter() as router:
        boto3.client("s3", region_name=REGION).put_object(Bucket="data", Key="incoming/dogs.zip", Body=b"zip")
    assert router.deliveries == []
    assert _executions(machine_arn) == []


def test_fire_schedule_sends_the_constant_input_and_skips_a_disabled_schedule() -> None:
    machine_arn = create_state_machine(PASS_MACHINE)
    events = boto3.client("events", region_name=REGION)
    events.put_rule(Name="weekly", ScheduleExpression="rate(7 days)")
    events.put_targets(Rule="weekly", Targets=[{"Id": "t", "Arn": machine_arn, "Input": '{"trigger": "schedule"}'}])
    events.put_rule(Name="paused", ScheduleExpression="rate(1 day)", State="DISABLED")
    events.put_targets(Rule="paused", Targets=[{"Id": "t", "Arn": machine_arn}])
    with EventBridgeRouter():
        fire_schedule("weekly")
        fire_schedule("paused")
    executions = _executions(machine_arn)
    assert [json.loads(e["input"]) for e in executions] == [{"trigger": "schedule"}]


def test_fire_schedule_refuses_a_rule_without_schedule() -> None:
    boto3.client("events", region_name=REGION).put_rule(Name="pattern", EventPattern=json.dumps(S3_PATTERN))
    with EventBridgeRouter(), pytest.raises(ValueError, match="no ScheduleExpression"):
        fire_schedule("pattern")


def test_input_path_and_input_transformer_shape_the_payload_for_lambda_targets() -> None:
    # GIVEN two Lambda targets on the S3 rule, one with InputPath, one with an InputTransformer
    _bucket_with_eventbridge()
    received: dict[str, object] = {}
    path_arn = create_function("by-path", "unused.handler")
    transform_arn = create_function("by-transform", "unused.handler")
    events = boto3.client("events", region_name=REGION)
    events.put_rule(Name="on-upload", EventPattern=json.dumps(S3_PATTERN))
    events.put_targets(
        Rule="on-upload",
        Targets=[
            {"Id": "path", "Arn": path_arn, "InputPath": "$.detail.object"},
            {
                "Id": "transform",
                "Arn": transform_arn,
                "InputTransformer": {
                    "InputPathsMap": {"bucket": "$.detail.bucket.name", "key": "$.detail.object.key"},
                    "InputTemplate": '{"dataset": {"bucket": "<bucket>", "key": "<key>"}}',
                },
            },
        ],
    )
    overrides = {
        "by-path": lambda event, context: received.update(path=event),
        "by-transform": lambda event, context: received.update(transform=event),
    }
    with InProcessLambda(overrides), EventBridgeRouter():
        # WHEN a matching object is created
        boto3.client("s3", region_name=REGION).put_object(Bucket="data", Key="incoming/d.zip", Body=b"zip")
    # THEN each function got its shaped payload
    assert received["path"]["key"] == "incoming/d.zip"  # type: ignore[index]
    assert received["transform"] == {"dataset": {"bucket": "data", "key": "incoming/d.zip"}}


def test_a_failing_target_does_not_stop_delivery_to_later_rules() -> None:
    # GIVEN a first rule whose state machine does not exist, and a second valid rule
    _bucket_with_eventbridge()
    machine_arn = create_state_machine(PASS_MACHINE)
    _rule("broken", machine_arn.replace(":machine", ":missing"), EventPattern=json.dumps(S3_PATTERN))
    _rule("working", machine_arn, EventPattern=json.dumps(S3_PATTERN))
    with EventBridgeRouter() as router:
        boto3.client("s3", region_name=REGION).put_object(Bucket="data", Key="incoming/dogs.zip", Body=b"zip")
    assert len(_executions(machine_arn)) == 1
    assert [d.rule_name for d in router.deliveries if d.error] == ["broken"]


# --- SageMaker actions -------------------------------------------------------------------------------------


ROLE = "arn:aws:iam::123456789012:role/sm"


def _endpoint_with_two_configs() -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.create_model(
        ModelName="m", ExecutionRoleArn="arn:aws:iam::123456789012:role/sm", PrimaryContainer={"Image": "i"}
    )
    for config in ("ec-v1", "ec-v2"):
        sm.create_endpoint_config(
            EndpointConfigName=config,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "m",
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                }
            ],
        )
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="ec-v1")


BLUE_GREEN = {
    "BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
        "TerminationWaitInSeconds": 120,
    },
    "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "ep-5xx"}]},
}


def test_update_endpoint_switches_config_and_stores_last_deployment_config() -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    _endpoint_with_two_configs()
    with SageMakerMissingActions():
        sm.update_endpoint(EndpointName="ep", EndpointConfigName="ec-v2", DeploymentConfig=BLUE_GREEN)
        updated = sm.describe_endpoint(EndpointName="ep")
        sm.update_endpoint(EndpointName="ep", EndpointConfigName="ec-v1", RetainDeploymentConfig=True)
        retained = sm.describe_endpoint(EndpointName="ep")
    assert updated["EndpointConfigName"] == "ec-v2"
    assert updated["EndpointStatus"] == "InService"
    assert updated["LastDeploymentConfig"] == BLUE_GREEN
    assert retained["EndpointConfigName"] == "ec-v1"
    assert retained["LastDeploymentConfig"] == BLUE_GREEN


def test_update_endpoint_refuses_an_endpoint_not_in_service_and_a_missing_config() -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    _endpoint_with_two_configs()
    sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].endpoints["ep"].endpoint_status = "Updating"
    with SageMakerMissingActions():
        with pytest.raises(ClientError, match="Cannot update in-progress endpoint"):
            sm.update_endpoint(EndpointName="ep", EndpointConfigName="ec-v2")
        sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].endpoints["ep"].endpoint_status = "InService"
        with pytest.raises(ClientError, match="Could not find endpoint configuration"):
            sm.update_endpoint(EndpointName="ep", EndpointConfigName="ec-missing")
        with pytest.raises(ClientError, match="Could not find endpoint"):
            sm.update_endpoint(EndpointName="nope", EndpointConfigName="ec-v2")


def _tuning_job_with_summaries() -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="hpo",
        HyperParameterTuningJobConfig={
            "Strategy": "Random",
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 3, "MaxParallelTrainingJobs": 1},
        },
        TrainingJobDefinition={
            "AlgorithmSpecification": {"TrainingImage": "i", "TrainingInputMode": "File"},
            "RoleArn": "arn:aws:iam::123456789012:role/sm",
            "OutputDataConfig": {"S3OutputPath": "s3://data/jobs"},
            "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        },
    )
    start = datetime(2026, 1, 1, tzinfo=UTC)

    def summary(name: str, minute: int, status: str, accuracy: float | None) -> dict:
        item = {
            "TrainingJobName": name,
            "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:training-job/{name}",
            "CreationTime": start + timedelta(minutes=minute),
            "TrainingJobStatus": status,
            "TunedHyperParameters": {"lr": "0.01"},
        }
        if accuracy is not None:
            item["FinalHyperParameterTuningJobObjectiveMetric"] = {"MetricName": "acc", "Value": accuracy}
        return item

    backend = sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION]
    backend.hyper_parameter_tuning_jobs["hpo"].training_job_summaries = [
        summary("hpo-002", 1, "Completed", 0.9),
        summary("hpo-001", 0, "Completed", 0.7),
        summary("hpo-003", 2, "Failed", None),
        summary("hpo-004", 3, "Completed", 0.8),
    ]


def test_listing_a_tuning_jobs_training_jobs_honours_sort_filter_and_pages() -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    _tuning_job_with_summaries()
    list_jobs = sm.list_training_jobs_for_hyper_parameter_tuning_job
    with SageMakerMissingActions():
        by_name = list_jobs(HyperParameterTuningJobName="hpo")
        best_first = list_jobs(
            HyperParameterTuningJobName="hpo", SortBy="FinalObjectiveMetricValue", SortOrder="Descending"
        )
        failed = list_jobs(HyperParameterTuningJobName="hpo", StatusEquals="Failed")
        newest_first = list_jobs(HyperParameterTuningJobName="hpo", SortBy="CreationTime", SortOrder="Descending")
        page_one = list_jobs(HyperParameterTuningJobName="hpo", MaxResults=3)
        page_two = list_jobs(HyperParameterTuningJobName="hpo", MaxResults=3, NextToken=page_one["NextToken"])
        with pytest.raises(ClientError, match="can't find a tuning job"):
            list_jobs(HyperParameterTuningJobName="missing")

    def names(response: dict) -> list[str]:
        return [s["TrainingJobName"] for s in response["TrainingJobSummaries"]]

    assert names(by_name) == ["hpo-001", "hpo-002", "hpo-003", "hpo-004"]
    assert names(best_first) == ["hpo-002", "hpo-004", "hpo-001"]  # the job without a metric is left out
    assert names(failed) == ["hpo-003"]
    assert names(newest_first) == ["hpo-004", "hpo-003", "hpo-002", "hpo-001"]
    assert names(page_one) + names(page_two) == names(by_name)
    assert "NextToken" not in page_two


def test_stop_training_job_stops_only_a_running_job() -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.create_training_job(
        TrainingJobName="train-1",
        AlgorithmSpecification={"TrainingImage": "i", "TrainingInputMode": "File"},
        RoleArn="arn:aws:iam::123456789012:role/sm",
        OutputDataConfig={"S3OutputPath": "s3://data/jobs"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )
    with SageMakerMissingActions():
        with pytest.raises(ClientError, match="in status Completed"):
            sm.stop_training_job(TrainingJobName="train-1")
        sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].training_jobs["train-1"].training_job_status = "InProgress"
        sm.stop_training_job(TrainingJobName="train-1")
    assert sm.describe_training_job(TrainingJobName="train-1")["TrainingJobStatus"] == "Stopped"


def test_patches_are_removed_on_uninstall() -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    patches = offline_aws_patches().install()
    patches.uninstall()
    with pytest.raises(NotImplementedError):
        sm.stop_training_job(TrainingJobName="any")


def test_setting_a_packages_approval_emits_the_registry_event_and_keeps_its_metadata() -> None:
    # GIVEN a registered package with metadata, and a rule for this group's decisions on a function
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.create_model_package_group(ModelPackageGroupName="dogs")
    arn = sm.create_model_package(
        ModelPackageGroupName="dogs",
        ModelApprovalStatus="PendingManualApproval",
        CustomerMetadataProperties={"test_accuracy": "0.9"},
        InferenceSpecification={
            "Containers": [{"Image": "img", "ModelDataUrl": "s3://data/model.tar.gz"}],
            "SupportedContentTypes": ["image/jpeg"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
    )["ModelPackageArn"]
    received: list[dict[str, object]] = []
    events = boto3.client("events", region_name=REGION)
    pattern = {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Model Package State Change"],
        "detail": {"ModelPackageGroupName": ["dogs"], "ModelApprovalStatus": ["Approved", "Rejected"]},
    }
    events.put_rule(Name="decided", EventPattern=json.dumps(pattern))
    events.put_targets(Rule="decided", Targets=[{"Id": "f", "Arn": create_function("resume", "unused.handler")}])
    with InProcessLambda({"resume": lambda event, context: received.append(event)}), EventBridgeRouter():
        with ModelPackageEvents():
            # WHEN a person approves it, naming no metadata (as the CLI call does)
            sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved", ApprovalDescription="ok")
            kept = sm.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
        # (without the shim, moto emits nothing)
        sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Rejected", ApprovalDescription="no")
    # THEN the rule's function got the registry's event once, and the metadata survived
    ((event,),) = [received]
    assert event["detail"]["ModelPackageArn"] == arn  # type: ignore[index]
    assert event["detail"]["ModelApprovalStatus"] == "Approved"  # type: ignore[index]
    assert kept == {"test_accuracy": "0.9"}
