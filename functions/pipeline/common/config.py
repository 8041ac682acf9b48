"""Settings of the pipeline, read from the environment that template.yaml gives every function.

Read lazily through :func:`load_settings` (never at import time) so tests can set the environment with
``monkeypatch.setenv``. The variable names here are the ones in template.yaml's ``Globals``; a test keeps
the two in step.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.common.champion_gate import PER_BREED_OFF, parse_per_breed_tolerance


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise KeyError(f"environment variable {name} is not set; template.yaml must define it")
    return value


APPROVAL_MODES = ("automatic", "manual")


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = _env(name, default)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _env_int(name: str, default: int, *, at_least: int | None = None, parameter: str = "") -> int:
    """An integer; with ``at_least``, one below it is refused, naming the template ``parameter`` that sets it
    (CloudFormation's MinValue guards the stack, this a variable set by hand or by the offline run)."""
    value = int(_env(name, str(default)))
    if at_least is not None and value < at_least:
        raise ValueError(f"{name} is {value}: set the template parameter {parameter} to {at_least} or more")
    return value


def _env_bool(name: str, default: bool) -> bool:
    return _env(name, "true" if default else "false").strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str, default: str = "") -> tuple[str, ...]:
    return tuple(item.strip() for item in _env(name, default).split(",") if item.strip())


def _vpc_security_groups() -> tuple[str, ...]:
    # A VpcConfig needs both lists; one without the other is refused by SageMaker when the first job starts.
    subnets, groups = _env_list("SUBNET_IDS"), _env_list("SECURITY_GROUP_IDS")
    if bool(subnets) != bool(groups):
        raise ValueError("SUBNET_IDS and SECURITY_GROUP_IDS must both be set (private networking) or both be empty")
    return groups


def _default_training_code_dir() -> Path:
    # In the Lambda bundle training_code/ sits beside the pipeline package; in the repository it is one level up.
    package_parent = Path(__file__).resolve().parents[2]
    for candidate in (package_parent / "training_code", package_parent.parent / "training_code"):
        if candidate.is_dir():
            return candidate
    return package_parent / "training_code"


@dataclass(frozen=True)
class Settings:
    bucket: str
    incoming_prefix: str
    validated_prefix: str
    code_prefix: str
    output_prefix: str
    expected_classes: int
    expected_train: int
    expected_valid: int
    expected_test: int
    sagemaker_role_arn: str
    # Encryption and private networking of the SageMaker jobs and model (sagemaker_requests.job_security):
    # "" / () / False leave today's AWS-managed keys and AWS-managed network.
    kms_key_arn: str
    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]
    network_isolation: bool
    inter_container_encryption: bool
    training_image_uri: str
    inference_image_uri: str
    rule_image_uri: str
    training_instance_type: str
    training_instance_count: int
    tuning_instance_type: str
    # Instances of every tuning trial; above 1 (or on a multi-GPU type) each trial is a torchrun DDP job.
    tuning_instance_count: int
    max_tuning_jobs: int
    max_parallel_tuning_jobs: int
    tuning_epochs: int
    training_epochs: int
    training_volume_gb: int
    max_training_seconds: int
    endpoint_name: str
    endpoint_instance_type: str
    endpoint_instance_count: int
    inference_precision: str  # the endpoint's INFERENCE_PRECISION (training_code/inference.py)
    deployment_strategy: str
    bake_time_seconds: int
    rollback_alarms: tuple[str, ...]
    debugger_rules_enabled: bool
    profiler_rules_enabled: bool
    blocking_rules: tuple[str, ...]
    failure_topic_arn: str
    max_polls: int
    extra_hyperparameters: dict[str, str]
    training_code_dir: Path
    # Champion/challenger gate and model registry (EvaluateModel, RejectModel, ApproveModel).
    model_package_group: str
    accuracy_floor: float
    champion_tolerance: float
    per_breed_tolerance: float | None  # None: the per-breed guard is off
    approval_mode: str  # "automatic": deploy what passes the gates; "manual": a person approves in the registry
    approval_timeout_seconds: int  # ApprovalTimeoutHours, in the seconds Step Functions' TimeoutSeconds takes
    # Cost controls: managed spot (tuning trials, final training), its wait bound, warm pools for trials.
    spot_tuning: bool
    spot_training: bool
    max_wait_seconds: int
    warm_pool_seconds: int
    # One run at a time, no double training, run records and their cost estimate (pipeline_state, run_record).
    pipeline_table: str
    lease_seconds: int
    always_retrain_on_schedule: bool
    runs_prefix: str
    instance_prices: dict[str, float]
    # The pinned ImageNet ResNet18 file in the bucket (torchvision's name: resnet18-<SHA-256 prefix>.pth), given to
    # every job as its pretrained channel; staged once with `make stage-weights` (offline/stage_weights.py).
    pretrained_weights_key: str
    # Endpoint autoscaling (pipeline.common.endpoint_autoscaling): target tracking on invocations per instance
    # between endpoint_instance_count and endpoint_max_instance_count; 0 (or the instance count itself) is off.
    endpoint_max_instance_count: int
    target_invocations_per_instance: float  # per minute, averaged over the variant's instances
    scale_in_cooldown_seconds: int
    scale_out_cooldown_seconds: int

    def run_record_key(self, execution_name: str) -> str:
        return f"{self.runs_prefix}{execution_name}.json"

    def run_report_uri(self, execution_name: str) -> str:
        """Where WriteRunReport puts the run's HTML page, next to its record (notices link to it beforehand)."""
        return f"s3://{self.bucket}/{self.runs_prefix}{execution_name}.html"


def load_settings() -> Settings:
    return Settings(
        bucket=_env("DATA_BUCKET"),
        incoming_prefix=_env("INCOMING_PREFIX", "incoming/"),
        validated_prefix=_env("VALIDATED_PREFIX", "validated/"),
        code_prefix=_env("CODE_PREFIX", "code/"),
        output_prefix=_env("OUTPUT_PREFIX", "jobs/"),
        expected_classes=_env_int("EXPECTED_CLASSES", 133),
        expected_train=_env_int("EXPECTED_TRAIN_IMAGES", 6680),
        expected_valid=_env_int("EXPECTED_VALID_IMAGES", 835),
        expected_test=_env_int("EXPECTED_TEST_IMAGES", 836),
        sagemaker_role_arn=_env("SAGEMAKER_ROLE_ARN", ""),
        kms_key_arn=_env("KMS_KEY_ARN", ""),
        subnet_ids=_env_list("SUBNET_IDS"),
        security_group_ids=_vpc_security_groups(),
        network_isolation=_env_bool("NETWORK_ISOLATION", False),
        inter_container_encryption=_env_bool("INTER_CONTAINER_TRAFFIC_ENCRYPTION", False),
        training_image_uri=_env("TRAINING_IMAGE_URI", ""),
        inference_image_uri=_env("INFERENCE_IMAGE_URI", ""),
        rule_image_uri=_env("RULE_IMAGE_URI", ""),
        training_instance_type=_env("TRAINING_INSTANCE_TYPE", "ml.g4dn.xlarge"),
        training_instance_count=_env_int("TRAINING_INSTANCE_COUNT", 1, at_least=1, parameter="TrainingInstanceCount"),
        tuning_instance_type=_env("TUNING_INSTANCE_TYPE", "ml.g4dn.xlarge"),
        tuning_instance_count=_env_int("TUNING_INSTANCE_COUNT", 1, at_least=1, parameter="TuningInstanceCount"),
        max_tuning_jobs=_env_int("MAX_TUNING_JOBS", 5),
        max_parallel_tuning_jobs=_env_int("MAX_PARALLEL_TUNING_JOBS", 2),
        tuning_epochs=_env_int("TUNING_EPOCHS", 4),
        training_epochs=_env_int("TRAINING_EPOCHS", 10),
        training_volume_gb=_env_int("TRAINING_VOLUME_GB", 30),
        max_training_seconds=_env_int("MAX_TRAINING_SECONDS", 4 * 3600),
        endpoint_name=_env("ENDPOINT_NAME", "dog-breed-classifier"),
        endpoint_instance_type=_env("ENDPOINT_INSTANCE_TYPE", "ml.m5.large"),
        endpoint_instance_count=_env_int("ENDPOINT_INSTANCE_COUNT", 1),
        inference_precision=_env("INFERENCE_PRECISION", "auto"),
        deployment_strategy=_env("DEPLOYMENT_STRATEGY", "AUTO"),
        bake_time_seconds=_env_int("BAKE_TIME_SECONDS", 600),
        rollback_alarms=_env_list("ROLLBACK_ALARMS"),
        debugger_rules_enabled=_env_bool("DEBUGGER_RULES_ENABLED", False),
        profiler_rules_enabled=_env_bool("PROFILER_RULES_ENABLED", False),
        blocking_rules=_env_list("BLOCKING_RULES", "VanishingGradient,LossNotDecreasing"),
        failure_topic_arn=_env("FAILURE_TOPIC_ARN", ""),
        max_polls=_env_int("MAX_POLLS", 500),
        # Static hyperparameters added to every job (the offline run uses it for small images and few batches).
        extra_hyperparameters={str(k): str(v) for k, v in json.loads(_env("EXTRA_HYPERPARAMETERS", "{}")).items()},
        training_code_dir=Path(_env("TRAINING_CODE_DIR", str(_default_training_code_dir()))),
        model_package_group=_env("MODEL_PACKAGE_GROUP", "dog-breed-classifier"),
        accuracy_floor=float(_env("ACCURACY_FLOOR", "0.60")),
        champion_tolerance=float(_env("CHAMPION_TOLERANCE", "0.03")),
        per_breed_tolerance=parse_per_breed_tolerance(_env("PER_BREED_TOLERANCE", PER_BREED_OFF)),
        approval_mode=_choice("APPROVAL_MODE", "automatic", APPROVAL_MODES),
        approval_timeout_seconds=max(1, round(float(_env("APPROVAL_TIMEOUT_HOURS", "72")) * 3600)),
        spot_tuning=_env_bool("SPOT_TUNING", True),
        spot_training=_env_bool("SPOT_TRAINING", False),
        max_wait_seconds=_env_int("MAX_WAIT_SECONDS", 2 * 4 * 3600),
        warm_pool_seconds=_env_int("WARM_POOL_SECONDS", 0),
        pipeline_table=_env("PIPELINE_TABLE", ""),
        lease_seconds=_env_int("LEASE_SECONDS", 12 * 3600),
        always_retrain_on_schedule=_env_bool("ALWAYS_RETRAIN_ON_SCHEDULE", False),
        runs_prefix=_env("RUNS_PREFIX", "runs/"),
        # On-demand USD per instance-hour by instance type, for the run record's cost estimate.
        instance_prices={str(k): float(v) for k, v in json.loads(_env("INSTANCE_PRICES", "{}")).items()},
        pretrained_weights_key=_env("PRETRAINED_WEIGHTS_KEY", "weights/resnet18-f37072fd.pth"),
        endpoint_max_instance_count=_env_int("ENDPOINT_MAX_INSTANCE_COUNT", 0),
        target_invocations_per_instance=float(_env("TARGET_INVOCATIONS_PER_INSTANCE", "600")),
        scale_in_cooldown_seconds=_env_int("SCALE_IN_COOLDOWN_SECONDS", 600),
        scale_out_cooldown_seconds=_env_int("SCALE_OUT_COOLDOWN_SECONDS", 300),
    )
