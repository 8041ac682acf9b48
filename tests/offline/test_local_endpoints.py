"""Local endpoints: models served from their artifacts, blue/green updates that swap only a healthy model."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from offline_moto_builders import REGION, tarball

from offline.local_sagemaker import EndpointInvocationError, LocalSageMaker

pytestmark = pytest.mark.usefixtures("aws")

BUCKET = "data"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
HEALTH_CHECK = (b'{"probe": true}', "application/json")

INFERENCE = """
    import json, os

    def model_fn(model_dir):
        with open(os.path.join(model_dir, "model.json")) as f:
            model = json.load(f)
        if model.get("broken"):
            raise RuntimeError("weights do not match the architecture")
        return model

    def input_fn(body, content_type):
        if content_type != "application/json":
            error = ValueError(f"unsupported content type {content_type}")
            error.status_code = 415
            raise error
        return json.loads(body)

    def predict_fn(data, model):
        return {"version": model["version"], "echo": data}

    def output_fn(prediction, accept):
        return json.dumps(prediction)
"""


def _model(name: str, model: dict[str, object]) -> None:
    key = f"models/{name}/model.tar.gz"
    artifact = tarball({"model.json": json.dumps(model), "code/inference.py": textwrap.dedent(INFERENCE)})
    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key=key, Body=artifact)
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": "pytorch-inference",
            "ModelDataUrl": f"s3://{BUCKET}/{key}",
            "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"},
        },
    )
    sm.create_endpoint_config(
        EndpointConfigName=f"ec-{name}",
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
    )


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[LocalSageMaker]:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    with LocalSageMaker(tmp_path / "work", health_check_request=HEALTH_CHECK) as local:
        yield local
    assert local.errors == []


def _invoke(payload: dict[str, object]) -> dict[str, object]:
    response = boto3.client("sagemaker-runtime", region_name=REGION).invoke_endpoint(
        EndpointName="dogs", Body=json.dumps(payload), ContentType="application/json"
    )
    assert response["InvokedProductionVariant"] == "AllTraffic"
    return dict(json.loads(response["Body"].read()))


def _describe() -> dict[str, object]:
    return dict(boto3.client("sagemaker", region_name=REGION).describe_endpoint(EndpointName="dogs"))


def _serving_v1(executor: LocalSageMaker) -> None:
    _model("v1", {"version": 1})
    boto3.client("sagemaker", region_name=REGION).create_endpoint(EndpointName="dogs", EndpointConfigName="ec-v1")
    assert _describe()["EndpointStatus"] == "Creating"
    executor.wait_idle(60)
    assert _describe()["EndpointStatus"] == "InService"


def test_created_endpoint_serves_the_artifact_through_boto3_and_directly(executor: LocalSageMaker) -> None:
    _serving_v1(executor)
    assert _invoke({"image": "x"}) == {"version": 1, "echo": {"image": "x"}}
    direct = executor.invoke_endpoint("dogs", b'{"n": 2}', "application/json")
    assert json.loads(direct.body) == {"version": 1, "echo": {"n": 2}}


def test_invocation_errors_carry_the_model_status(executor: LocalSageMaker) -> None:
    _serving_v1(executor)
    runtime = boto3.client("sagemaker-runtime", region_name=REGION)
    with pytest.raises(ClientError) as raised:
        runtime.invoke_endpoint(EndpointName="dogs", Body=b"\xff\xd8\xff\xe0 not utf-8", ContentType="image/jpeg")
    assert raised.value.response["Error"]["Code"] == "ModelError"
    assert raised.value.response["OriginalStatusCode"] == 415
    with pytest.raises(EndpointInvocationError, match="415"):
        executor.invoke_endpoint("dogs", b"jpeg", "image/jpeg")
    with pytest.raises(ClientError, match="not found"):
        runtime.invoke_endpoint(EndpointName="missing", Body=b"{}", ContentType="application/json")


def test_endpoint_whose_model_cannot_load_fails_to_create(executor: LocalSageMaker) -> None:
    _model("broken", {"version": 0, "broken": True})
    boto3.client("sagemaker", region_name=REGION).create_endpoint(EndpointName="dogs", EndpointConfigName="ec-broken")
    executor.wait_idle(60)
    described = _describe()
    assert described["EndpointStatus"] == "Failed"
    assert "weights do not match the architecture" in str(described["FailureReason"])


def test_healthy_blue_green_update_swaps_the_model(executor: LocalSageMaker) -> None:
    # GIVEN an endpoint serving v1
    _serving_v1(executor)
    _model("v2", {"version": 2})
    deployment = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
            "TerminationWaitInSeconds": 0,
        }
    }
    # WHEN it is updated to v2
    boto3.client("sagemaker", region_name=REGION).update_endpoint(
        EndpointName="dogs", EndpointConfigName="ec-v2", DeploymentConfig=deployment
    )
    updating = _describe()
    executor.wait_idle(60)
    # THEN it was Updating (still on v1), then InService on v2, and v2 answers
    assert updating["EndpointStatus"] == "Updating"
    assert updating["EndpointConfigName"] == "ec-v1"
    assert updating["PendingDeploymentSummary"]["EndpointConfigName"] == "ec-v2"  # type: ignore[index]
    updated = _describe()
    assert updated["EndpointStatus"] == "InService"
    assert updated["EndpointConfigName"] == "ec-v2"
    assert updated["LastDeploymentConfig"] == deployment
    assert "FailureReason" not in updated
    assert _invoke({})["version"] == 2


def test_unhealthy_update_rolls_back_and_the_old_model_keeps_answering(executor: LocalSageMaker) -> None:
    # GIVEN an endpoint serving v1 and a new model that cannot load
    _serving_v1(executor)
    _model("broken", {"version": 3, "broken": True})
    # WHEN the endpoint is updated to it
    boto3.client("sagemaker", region_name=REGION).update_endpoint(EndpointName="dogs", EndpointConfigName="ec-broken")
    executor.wait_idle(60)
    # THEN it is back InService on the old config with the reason, and v1 still answers
    described = _describe()
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == "ec-v1"
    assert "rolled back" in str(described["FailureReason"])
    assert "weights do not match the architecture" in str(described["FailureReason"])
    assert _invoke({})["version"] == 1


def test_update_rolls_back_when_a_rollback_alarm_is_in_alarm(executor: LocalSageMaker) -> None:
    _serving_v1(executor)
    _model("v2", {"version": 2})
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    cloudwatch.put_metric_alarm(
        AlarmName="dogs-5xx",
        MetricName="Invocation5XXErrors",
        Namespace="AWS/SageMaker",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName="dogs-5xx", StateValue="ALARM", StateReason="test")
    boto3.client("sagemaker", region_name=REGION).update_endpoint(
        EndpointName="dogs",
        EndpointConfigName="ec-v2",
        DeploymentConfig={
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
            },
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "dogs-5xx"}]},
        },
    )
    executor.wait_idle(60)
    described = _describe()
    assert described["EndpointConfigName"] == "ec-v1"
    assert "dogs-5xx" in str(described["FailureReason"])
    assert _invoke({})["version"] == 1


def test_update_of_an_endpoint_still_creating_is_refused(executor: LocalSageMaker) -> None:
    _model("v1", {"version": 1})
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.create_endpoint(EndpointName="dogs", EndpointConfigName="ec-v1")
    with pytest.raises(ClientError, match="Cannot update in-progress endpoint"):
        sm.update_endpoint(EndpointName="dogs", EndpointConfigName="ec-v1")
    with pytest.raises(ClientError, match="Cannot create already existing endpoint"):
        sm.create_endpoint(EndpointName="dogs", EndpointConfigName="ec-v1")
