"""The executor with the project's real code: the smdebug hook built from the job's DebugHookConfig, and the
project's Debugger rules (training_code/debug_rules.py) evaluated in their own process afterwards.

Slow (torch and smdebug imports, a few seconds of CPU) but still offline.
"""

from __future__ import annotations

import json
import re
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from offline_moto_builders import REGION, tarball

from offline.local_sagemaker import LocalSageMaker, ProgressEvent
from offline.synthetic_dataset import write_dataset_zip
from pipeline.common.metric_definitions import METRIC_DEFINITIONS
from pipeline.common.sagemaker_requests import (
    DEBUGGER_RULES,
    HOOK_COLLECTIONS,
    PROFILER_RULES,
    hook_parameters,
    rule_configurations,
)
from pipeline.common.training_code_bundle import build_bundle

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("aws")]

TRAINING_CODE = Path(__file__).resolve().parents[2] / "training_code"
BUCKET = "data"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"

# A tiny network trained with the project's hook wrapper, so the tensors are what the real training writes.
TINY_TRAINING = """
    import os
    from collections import OrderedDict

    import torch
    from torch import nn
    import debug_hook

    torch.manual_seed(0)
    hook = debug_hook.create_debug_hook(None)
    assert hook.source == "sagemaker", hook.reason
    # Named like torchvision's blocks ("layer1.relu"), so the pipeline's ".*relu_input" collection matches.
    def block(width_in):
        return nn.Sequential(OrderedDict(fc=nn.Linear(width_in, 16), relu=nn.ReLU()))

    model = nn.Sequential(OrderedDict(layer1=block(12), layer2=block(16), head=nn.Linear(16, 2)))
    loss_fn = nn.CrossEntropyLoss()
    hook.register(model, loss_fn)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    inputs = torch.randn(96, 12)
    labels = (inputs[:, 0] > 0).long()
    for epoch in range(1, 8):  # more epochs than Overtraining's patience_train (5): every rule can judge
        hook.set_mode("train")
        for start in range(0, 64, 16):
            optimizer.zero_grad()
            loss = loss_fn(model(inputs[start : start + 16]), labels[start : start + 16])
            loss.backward()
            optimizer.step()
        hook.set_mode("eval")
        with torch.no_grad():
            valid_loss = loss_fn(model(inputs[64:]), labels[64:])
            accuracy = (model(inputs[64:]).argmax(1) == labels[64:]).float().mean()
        print(f"epoch={epoch} train_loss={loss.item():.4f} valid_loss={valid_loss.item():.4f}")
        print(f"valid_accuracy={accuracy:.4f}")
    hook.close()
    torch.save(model.state_dict(), os.path.join(os.environ["SM_MODEL_DIR"], "model.pth"))
"""


def _run_job_with_rules(tmp_path: Path, name: str, debug_rules: str, rule_timeout_seconds: float = 900) -> Any:
    """A job shaped like StartTraining's (the pipeline's collections and rule configurations) training the tiny
    network with the project's hook; the rule jobs load ``debug_rules`` from the job's source."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="validated/dogs.zip", Body=b"unused")
    source = {
        "train.py": textwrap.dedent(TINY_TRAINING),
        "debug_hook.py": (TRAINING_CODE / "debug_hook.py").read_text(),
        "debug_rules.py": debug_rules,
    }
    s3.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=tarball(source))
    hyperparameters = {
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": f"s3://{BUCKET}/code/sourcedir.tar.gz",
    }
    with LocalSageMaker(tmp_path / "work", rule_timeout_seconds=rule_timeout_seconds) as local:
        boto3.client("sagemaker", region_name=REGION).create_training_job(
            TrainingJobName=name,
            HyperParameters={name: json.dumps(value) for name, value in hyperparameters.items()},
            AlgorithmSpecification={
                "TrainingImage": "pytorch",
                "TrainingInputMode": "File",
                "MetricDefinitions": [dict(d) for d in METRIC_DEFINITIONS],
            },
            RoleArn="arn:aws:iam::123456789012:role/sagemaker",
            InputDataConfig=[
                {
                    "ChannelName": "training",
                    "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/validated/"}},
                }
            ],
            OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/jobs"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
            StoppingCondition={"MaxRuntimeInSeconds": 300},
            DebugHookConfig={
                "S3OutputPath": f"s3://{BUCKET}/jobs",
                "HookParameters": {"train.save_interval": "1", "eval.save_interval": "1"},
                "CollectionConfigurations": [dict(c) for c in HOOK_COLLECTIONS],
            },
            DebugRuleConfigurations=rule_configurations(DEBUGGER_RULES, "rules-image"),
        )
        local.wait_idle(300)
        return boto3.client("sagemaker", region_name=REGION).describe_training_job(TrainingJobName=name)


def test_real_hook_tensors_are_judged_by_the_projects_rules(tmp_path: Path) -> None:
    job = _run_job_with_rules(tmp_path, "train-real-rules", (TRAINING_CODE / "debug_rules.py").read_text())
    s3 = boto3.client("s3", region_name=REGION)
    # THEN training completed and every rule was evaluated on real tensors (no Error: each found what it reads)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert {m["MetricName"] for m in job["FinalMetricDataList"]} >= {"train:loss", "validation:loss"}
    statuses = {s["RuleConfigurationName"]: s for s in job["DebugRuleEvaluationStatuses"]}
    assert set(statuses) == set(DEBUGGER_RULES)
    for name, status in statuses.items():
        assert status["RuleEvaluationStatus"] in {"NoIssuesFound", "IssuesFound"}, (name, status.get("StatusDetails"))
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="jobs/train-real-rules/debug-output/")
    assert listed["KeyCount"] > 0


@pytest.mark.parametrize(
    ("debug_rules", "timeout", "expected"),
    [
        ("raise RuntimeError('rules module broken')", 900, "exit code 1: "),
        ("import time\ntime.sleep(120)\n", 3, "rule evaluation ran past 3 s and was stopped"),
    ],
    ids=["fails", "hangs"],
)
def test_a_rule_job_that_fails_or_hangs_ends_every_rule_in_error_saying_why(
    tmp_path: Path, debug_rules: str, timeout: float, expected: str
) -> None:
    job = _run_job_with_rules(tmp_path, "train-broken-rules", debug_rules, rule_timeout_seconds=timeout)
    # THEN the training itself completed, and each rule says its evaluation failed, and why
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    statuses = {s["RuleConfigurationName"]: s for s in job["DebugRuleEvaluationStatuses"]}
    assert set(statuses) == set(DEBUGGER_RULES)
    for status in statuses.values():
        assert status["RuleEvaluationStatus"] == "Error"
        details = status["StatusDetails"]
        assert details.startswith("Local rule evaluation failed: RuleEvaluationError: ") and expected in details
        if timeout == 900:
            assert "RuntimeError: rules module broken" in details


def test_real_tiny_training_job_then_its_model_served_by_a_local_endpoint(tmp_path: Path) -> None:
    # GIVEN a 2-class, 32 px dataset zip and the training code bundled as StartTuning uploads it
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    dataset = write_dataset_zip(tmp_path / "dogs.zip", num_classes=2, counts=(8, 4, 4), image_size=32)
    s3.upload_file(str(dataset), BUCKET, "validated/dogs.zip")
    s3.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=build_bundle(TRAINING_CODE).archive)
    hyperparameters = {
        "sagemaker_program": "train_model.py",
        "sagemaker_submit_directory": f"s3://{BUCKET}/code/sourcedir.tar.gz",
        "epochs": 1,
        "batch_size": 4,
        "learning_rate": 0.01,
        "image_size": 32,
        "weights": "random",
    }
    sm = boto3.client("sagemaker", region_name=REGION)
    progress: list[ProgressEvent] = []
    with LocalSageMaker(tmp_path / "work", progress=progress.append) as local:
        # WHEN the real train_model.py runs as a training job with the pipeline's Debugger configuration
        sm.create_training_job(
            TrainingJobName="train-real-tiny",
            HyperParameters={name: json.dumps(value) for name, value in hyperparameters.items()},
            AlgorithmSpecification={
                "TrainingImage": "pytorch",
                "TrainingInputMode": "File",
                "MetricDefinitions": [dict(d) for d in METRIC_DEFINITIONS],
            },
            RoleArn=ROLE,
            InputDataConfig=[
                {
                    "ChannelName": "training",
                    "DataSource": {
                        "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/validated/dogs.zip"}
                    },
                }
            ],
            OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/jobs"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
            StoppingCondition={"MaxRuntimeInSeconds": 600},
            DebugHookConfig={
                "S3OutputPath": f"s3://{BUCKET}/jobs",
                "HookParameters": hook_parameters(train_images=8, batch_size=4, epochs=1),
                "CollectionConfigurations": [dict(c) for c in HOOK_COLLECTIONS],
            },
            DebugRuleConfigurations=rule_configurations(DEBUGGER_RULES, "rules-image"),
            ProfilerConfig={"S3OutputPath": f"s3://{BUCKET}/jobs", "DisableProfiler": False},
            ProfilerRuleConfigurations=rule_configurations(PROFILER_RULES, "rules-image"),
        )
        local.wait_idle(600)
        job = sm.describe_training_job(TrainingJobName="train-real-tiny")
        # (ProfilerReport judged the samples the training code's own profiler recorded, sub-rule by sub-rule)
        (profiler_report,) = job["ProfilerRuleEvaluationStatuses"]
        assert "MaxInitializationTime" in profiler_report["StatusDetails"], profiler_report
        sub_rule = "jobs/train-real-tiny/rule-output/ProfilerReport/profiler-output/profiler-reports/Dataloader.json"
        assert json.loads(s3.get_object(Bucket=BUCKET, Key=sub_rule)["Body"].read())["status"] in {
            "NoIssuesFound",
            "IssuesFound",
            "NotEvaluated",
        }
        # THEN it completed with the metrics the tuner and the audit read, and every rule reached a verdict
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        metrics = {m["MetricName"] for m in job["FinalMetricDataList"]}
        assert {"train:loss", "validation:accuracy", "test:accuracy"} <= metrics
        assert any(e.kind == "metrics" and e.epoch == 1 for e in progress)
        rule_statuses = job["DebugRuleEvaluationStatuses"] + job["ProfilerRuleEvaluationStatuses"]
        assert len(rule_statuses) == len(DEBUGGER_RULES) + len(PROFILER_RULES)
        assert all(s["RuleEvaluationStatus"] in {"NoIssuesFound", "IssuesFound", "Error"} for s in rule_statuses)
        artifact = job["ModelArtifacts"]["S3ModelArtifacts"]
        # WHEN its artifact is deployed as DeployEndpoint does
        sm.create_model(
            ModelName="dogs-tiny",
            ExecutionRoleArn=ROLE,
            PrimaryContainer={
                "Image": "pytorch-inference",
                "ModelDataUrl": artifact,
                "Environment": {
                    "SAGEMAKER_PROGRAM": "inference.py",
                    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                },
            },
        )
        variant = {"VariantName": "AllTraffic", "ModelName": "dogs-tiny", "InitialInstanceCount": 1}
        sm.create_endpoint_config(
            EndpointConfigName="ec-tiny", ProductionVariants=[variant | {"InstanceType": "ml.m5.large"}]
        )
        sm.create_endpoint(EndpointName="dogs", EndpointConfigName="ec-tiny")
        local.wait_idle(300)
        assert sm.describe_endpoint(EndpointName="dogs")["EndpointStatus"] == "InService"
        # THEN a test image gets a prediction naming one of the two classes
        with zipfile.ZipFile(dataset) as archive:
            image_name = next(n for n in archive.namelist() if "/test/" in n and n.endswith(".jpg"))
            image = archive.read(image_name)
        response = boto3.client("sagemaker-runtime", region_name=REGION).invoke_endpoint(
            EndpointName="dogs", Body=image, ContentType="image/jpeg"
        )
        predictions = json.loads(response["Body"].read())["predictions"]
    classes = {name.split("/")[2] for name in zipfile.ZipFile(dataset).namelist() if name.count("/") == 3}
    assert {p["label"] for p in predictions} <= classes
    # AND the server's log says which precision model_fn chose (int8 when the job's int8 check allowed it)
    server_log = "\n".join(path.read_text() for path in (tmp_path / "work").rglob("server.log"))
    assert re.search(r"serving 2 classes at 32 px on cpu in (int8|bfloat16|float32)", server_log), server_log
    assert sum(p["probability"] for p in predictions) == pytest.approx(1.0, abs=1e-3)
