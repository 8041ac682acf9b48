"""Request bodies for every SageMaker resource the pipeline creates, built from Settings and the state.

Pure functions: no AWS call happens here, so tests pin the exact bodies and compare them with what the
SageMaker Python SDK 2.x would send for the same estimator, tuner and rules.

Hyperparameters follow the SDK's framework-estimator encoding: every value is JSON-encoded into a string
(``64`` → ``"64"``, ``"train_model.py"`` → ``"\\"train_model.py\\""``); the training toolkit in the container
decodes them before it passes them to the script as ``--name value``.

Distributed jobs: the training code (training_code/distributed_training.py) runs as N torchrun ranks with
DistributedDataParallel. SageMaker's PyTorch training container starts ``torchrun --nnodes <hosts>
--nproc_per_node <GPUs of a host, or 1>`` on every host only when the hyperparameters carry the SDK's
``distribution={"torch_distributed": {"enabled": True}}`` encoding (``distribution_hyperparameters``); without it
the container runs one plain ``python <program>`` per host, and a job of several hosts or GPUs would not be
distributed. The SDK's other option, ``pytorchddp``, now means the SageMaker distributed data parallel library
(SMDDP), which this code does not use. The ``batch_size`` that tuning searched and training uses is per rank: the
global batch is ``batch_size x world size``, and the training code scales the learning rate linearly by the world
size (its ``learning_rate_scaling`` hyperparameter: ``linear`` by default, ``none`` to keep it as given, settable
through ExtraHyperparameters).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any

from pipeline.common.config import Settings
from pipeline.common.metric_definitions import METRIC_DEFINITIONS, OBJECTIVE_METRIC
from pipeline.common.state_models import BestJob, Dataset

TRAINING_CHANNEL = "training"
# The serving model's artifact, scored by the final job on the same test images (SM_CHANNEL_CHAMPION).
CHAMPION_CHANNEL = "champion"
# The pinned ImageNet ResNet18 file staged in the bucket, which every job starts from (SM_CHANNEL_PRETRAINED): no
# job downloads weights, so jobs under network isolation train the same way (training_code/dog_model.py).
PRETRAINED_CHANNEL = "pretrained"
# Values of the jobs' ``weights`` hyperparameter that load that channel (dog_model.PRETRAINED_WEIGHTS; the first is
# the default); random init, the in-process stand-in or a file of the job's own need none.
PRETRAINED_WEIGHTS = ("pretrained", "imagenet")
TUNING_PROGRAM = "hpo.py"
TRAINING_PROGRAM = "train_model.py"
INFERENCE_PROGRAM = "inference.py"
# Where the PyTorch inference container finds code/ inside the extracted model.tar.gz.
INFERENCE_CODE_DIR = "/opt/ml/model/code"
VARIANT_NAME = "AllTraffic"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
LOG_LEVEL_INFO = 20

BATCH_SIZES = (32, 64, 128, 256)
LEARNING_RATE_MIN = 0.001
LEARNING_RATE_MAX = 0.1
TUNED_HYPERPARAMETERS = ("batch_size", "learning_rate")

DEBUGGER_RULES = ("VanishingGradient", "LossNotDecreasing", "Overfit", "Overtraining", "PoorWeightInitialization")
PROFILER_RULES = ("ProfilerReport",)
# Weights and gradients are saved this many times over the job whatever its step count: every rule reading them
# (VanishingGradient) sees the whole job, and S3 holds a bounded number of full tensors.
TENSOR_SAVES_PER_JOB = 25
# Losses are scalars, saved at every step in both modes: LossNotDecreasing compares windows of num_steps (10)
# training steps at both ends of the job, Overfit and Overtraining read every validation loss.
LOSS_COLLECTION: dict[str, Any] = {
    "CollectionName": "losses",
    "CollectionParameters": {"train.save_interval": "1", "eval.save_interval": "1"},
}
# relu_input is not a built-in smdebug collection: without the regex it would capture nothing, and
# PoorWeightInitialization reads it (the SDK merges the same regex in from the rule's own config).
HOOK_COLLECTIONS: list[dict[str, Any]] = [
    {"CollectionName": "weights"},
    {"CollectionName": "gradients"},
    LOSS_COLLECTION,
    {"CollectionName": "relu_input", "CollectionParameters": {"include_regex": ".*relu_input"}},
]


def training_steps(train_images: int, batch_size: int, epochs: int, world_size: int = 1) -> int:
    """Optimizer steps of a job: the training code's loop keeps the last, partial batch.

    Under ``world_size`` ranks each rank owns a strided shard of the training images and every rank trains, each
    epoch, on as many images as the smallest shard holds (``train_images // world_size``: training_job.py's
    ``min_across_ranks``), at the per-rank batch size; every rank takes the same steps.
    """
    per_rank = train_images // max(1, world_size)
    return -(-per_rank // max(1, batch_size)) * max(1, epochs)


def hook_parameters(train_images: int, batch_size: int, epochs: int, world_size: int = 1) -> dict[str, str]:
    """HookParameters for the job's step count, instead of a fixed interval that saves 3 points of a short job
    and thousands of a long one (the collections' own parameters, such as the losses', take precedence).
    The hook runs on rank 0, which counts the per-rank steps of a ``world_size``-rank job."""
    interval = max(1, training_steps(train_images, batch_size, epochs, world_size) // TENSOR_SAVES_PER_JOB)
    return {"train.save_interval": str(interval), "eval.save_interval": str(interval)}


# GPUs of the ml.* training instance types (the EC2 accelerated-computing specifications; the same counts as the
# INSTANCE_RESOURCES table of aws/sagemaker-hyperpod-cli). A GPU type missing here counts as unknown (None).
GPUS_PER_INSTANCE: dict[str, int] = {
    **{f"ml.g4dn.{size}": 1 for size in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "ml.g4dn.12xlarge": 4,
    **{
        f"ml.{family}.{size}": gpus
        for family in ("g5", "g6", "g6e")
        for size, gpus in (
            ("xlarge", 1),
            ("2xlarge", 1),
            ("4xlarge", 1),
            ("8xlarge", 1),
            ("16xlarge", 1),
            ("12xlarge", 4),
            ("24xlarge", 4),
            ("48xlarge", 8),
        )
    },
    "ml.p3.2xlarge": 1,
    "ml.p3.8xlarge": 4,
    "ml.p3.16xlarge": 8,
    "ml.p3dn.24xlarge": 8,
    "ml.p4d.24xlarge": 8,
    "ml.p4de.24xlarge": 8,
    "ml.p5.48xlarge": 8,
    "ml.p5e.48xlarge": 8,
    "ml.p5en.48xlarge": 8,
}
# General purpose, compute and memory optimized, burstable: m5, m5d, m6i, m7i, c5, c5n, c6i, c7i, r5, r6i, t3 …
_CPU_FAMILY = re.compile(r"^[mcrt]\d+[a-z-]*$")


def gpus_per_instance(instance_type: str) -> int | None:
    """The GPUs of one ``ml.<family>.<size>`` instance: 0 for the CPU families, None when it is not known."""
    if instance_type in GPUS_PER_INSTANCE:
        return GPUS_PER_INSTANCE[instance_type]
    family = instance_type.removeprefix("ml.").split(".")[0]
    return 0 if _CPU_FAMILY.match(family) else None


def distribution_hyperparameters(instance_type: str, instance_count: int) -> dict[str, str]:
    """What the SDK's ``distribution={"torch_distributed": {"enabled": True}}`` adds to a job's hyperparameters,
    when the job needs more than one process: several instances, a type with several GPUs, or one whose GPU count
    is unknown (torchrun then starts one rank per GPU it finds; with one GPU that is world size 1, harmless).
    {} otherwise, so one single-GPU or CPU instance keeps a plain ``python <program>`` and today's request."""
    gpus = gpus_per_instance(instance_type)
    if instance_count <= 1 and gpus is not None and gpus <= 1:
        return {}
    return encode_hyperparameters(
        {"sagemaker_torch_distributed_enabled": True, "sagemaker_instance_type": instance_type}
    )


def world_size(instance_type: str, instance_count: int) -> int:
    """The ranks of a job: instances x GPUs per instance (1 per CPU instance). A type whose GPU count is unknown
    counts as 1 per instance, which may be fewer ranks than torchrun will start."""
    return max(1, instance_count) * max(1, gpus_per_instance(instance_type) or 0)


def encode_hyperparameters(values: Mapping[str, object]) -> dict[str, str]:
    return {name: json.dumps(value) for name, value in values.items()}


def _wire_value(text: str) -> str:
    # EXTRA_HYPERPARAMETERS arrive as strings; "64" or "true" are already JSON, "resnet" must become "\"resnet\"".
    try:
        json.loads(text)
    except ValueError:
        return json.dumps(text)
    return text


def decode_hyperparameter(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def job_output_uri(settings: Settings, run_id: str) -> str:
    return f"s3://{settings.bucket}/{settings.output_prefix}{run_id}/"


# Families whose storage is local NVMe, encrypted by the instance's own hardware: SageMaker refuses a
# VolumeKmsKeyId (CreateTrainingJob, CreateHyperParameterTuningJob) or an endpoint config KmsKeyId for them (API
# reference: "Certain Nitro-based instances include local storage ... You can't request a VolumeKmsKeyId").
# A "d" in the family name marks instance storage (g4dn, p4d, p3dn, m5d, c6id); these carry it without the "d"
# (EC2 User Guide, "Instance store volumes": available instance store volumes per instance type).
NVME_FAMILIES_WITHOUT_D = frozenset({"g5", "g6", "g6e", "g7e", "p5", "p5e", "p5en", "p6-b200", "trn1", "trn1n", "trn2"})
_FAMILY_WITH_INSTANCE_STORE = re.compile(r"^[a-z]+\d+[a-z]*d[a-z]*$")


def has_instance_storage(instance_type: str) -> bool:
    """Whether ``ml.<family>.<size>`` runs on local NVMe storage (hardware-encrypted; no KMS key may be asked)."""
    family = instance_type.removeprefix("ml.").split(".")[0]
    return family in NVME_FAMILIES_WITHOUT_D or bool(_FAMILY_WITH_INSTANCE_STORE.match(family))


def output_data_config(settings: Settings, output_uri: str) -> dict[str, str]:
    """Where a job writes its model artifact; with KmsKeyArn, SSE-KMS with that key (AWS-managed otherwise)."""
    return {"S3OutputPath": output_uri} | ({"KmsKeyId": settings.kms_key_arn} if settings.kms_key_arn else {})


def resource_config(settings: Settings, instance_type: str, instance_count: int) -> dict[str, Any]:
    """ResourceConfig of a training job or a tuning trial; the ML storage volume gets the key where it is EBS."""
    config: dict[str, Any] = {
        "InstanceType": instance_type,
        "InstanceCount": instance_count,
        "VolumeSizeInGB": settings.training_volume_gb,
    }
    if settings.kms_key_arn and not has_instance_storage(instance_type):
        config["VolumeKmsKeyId"] = settings.kms_key_arn
    return config


def vpc_config(settings: Settings) -> dict[str, Any]:
    """VpcConfig for jobs and the model: {} without subnets (SageMaker's own network, as before)."""
    if not settings.subnet_ids:
        return {}
    return {"VpcConfig": {"SecurityGroupIds": list(settings.security_group_ids), "Subnets": list(settings.subnet_ids)}}


def job_security(settings: Settings) -> dict[str, Any]:
    """The network fields of a training job or a tuning job's definition; {} with the template's defaults."""
    fields = vpc_config(settings)
    if settings.network_isolation:
        # No network from inside the container; SageMaker still fetches the channels and uploads the output.
        fields["EnableNetworkIsolation"] = True
    if settings.inter_container_encryption:
        # Encrypts the traffic between the instances of a multi-instance job (slower; nothing with one instance).
        fields["EnableInterContainerTrafficEncryption"] = True
    return fields


def _static_hyperparameters(settings: Settings, program: str, code_uri: str, region: str) -> dict[str, str]:
    framework = encode_hyperparameters(
        {
            "sagemaker_program": program,
            "sagemaker_submit_directory": code_uri,
            "sagemaker_region": region,
            "sagemaker_container_log_level": LOG_LEVEL_INFO,
        }
    )
    return framework | {name: _wire_value(value) for name, value in settings.extra_hyperparameters.items()}


def _s3_channel(name: str, uri: str, content_type: str) -> dict[str, Any]:
    """A File-mode channel; an exact key is an S3Prefix matching one object."""
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}
        },
        "ContentType": content_type,
    }


def _training_channel(dataset: Dataset) -> dict[str, Any]:
    return _s3_channel(TRAINING_CHANNEL, dataset.validated_uri, "application/zip")


def uses_pretrained_weights(settings: Settings) -> bool:
    """Whether the jobs start from the staged weights: the ``weights`` hyperparameter (ExtraHyperparameters) is
    ``pretrained``, as by default."""
    weights = settings.extra_hyperparameters.get("weights", PRETRAINED_WEIGHTS[0])
    return decode_hyperparameter(_wire_value(weights)) in PRETRAINED_WEIGHTS


def pretrained_weights_uri(settings: Settings) -> str:
    return f"s3://{settings.bucket}/{settings.pretrained_weights_key}"


def _pretrained_channels(settings: Settings) -> list[dict[str, Any]]:
    """The pretrained channel: the exact staged object, which the job finds under its own (pinned) name."""
    if not uses_pretrained_weights(settings):
        return []
    return [_s3_channel(PRETRAINED_CHANNEL, pretrained_weights_uri(settings), "application/octet-stream")]


def _tags(dataset: Dataset) -> list[dict[str, str]]:
    return [
        {"Key": "pipeline", "Value": "dog-breed-retraining"},
        {"Key": "run-id", "Value": dataset.run_id},
        {"Key": "dataset-id", "Value": dataset.dataset_id},
    ]


def checkpoint_uri(settings: Settings, run_id: str, job_name: str) -> str:
    return f"s3://{settings.bucket}/{settings.output_prefix}{run_id}/checkpoints/{job_name}"


def cost_controls(settings: Settings, *, spot: bool, job_name: str, run_id: str) -> dict[str, Any]:
    """Managed spot with checkpoints and the wait bound, for a training job or a tuning job's definition.

    MaxWaitTimeInSeconds (waiting for spot capacity plus running) must be at least MaxRuntimeInSeconds, so a
    MaxWaitSeconds below the runtime bound is raised to it rather than refused by SageMaker hours later.
    Checkpoints go with spot only: they are what lets an interrupted job resume instead of starting over.
    """
    if not spot:
        return {"StoppingCondition": {"MaxRuntimeInSeconds": settings.max_training_seconds}}
    return {
        "EnableManagedSpotTraining": True,
        "CheckpointConfig": {
            "S3Uri": checkpoint_uri(settings, run_id, job_name),
            "LocalPath": CHECKPOINT_LOCAL_PATH,
        },
        "StoppingCondition": {
            "MaxRuntimeInSeconds": settings.max_training_seconds,
            "MaxWaitTimeInSeconds": max(settings.max_wait_seconds, settings.max_training_seconds),
        },
    }


def warm_pool_seconds(settings: Settings) -> tuple[int, str | None]:
    """KeepAlivePeriodInSeconds for tuning trials, and why it is off when it was asked for but cannot be used.

    SageMaker's managed warm pools keep on-demand instances between jobs; they are not available to managed spot
    training, so with SpotTuning on the warm pool is left off (and the reason logged) rather than sent in a
    request SageMaker refuses.
    """
    if settings.warm_pool_seconds <= 0:
        return 0, None
    if settings.spot_tuning:
        return 0, (
            f"WarmPoolSeconds={settings.warm_pool_seconds} ignored: warm pools cannot be combined with managed spot "
            "training (SpotTuning=true); set SpotTuning=false to use them"
        )
    return settings.warm_pool_seconds, None


def warm_start_config(parent_job_name: str) -> dict[str, Any]:
    # TransferLearning: the parent trained on an earlier dataset zip; IdenticalDataAndAlgorithm would be a lie.
    return {
        "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": parent_job_name}],
        "WarmStartType": "TransferLearning",
    }


def tuning_job_request(
    settings: Settings,
    dataset: Dataset,
    job_name: str,
    code_uri: str,
    region: str,
    *,
    warm_start_parent: str | None = None,
) -> dict[str, Any]:
    static = _static_hyperparameters(settings, TUNING_PROGRAM, code_uri, region)
    static |= encode_hyperparameters(
        {
            "epochs": settings.tuning_epochs,
            # Lets HyperparameterTuner.attach() in a notebook rebuild the job as a PyTorch estimator.
            "sagemaker_estimator_class_name": "PyTorch",
            "sagemaker_estimator_module": "sagemaker.pytorch.estimator",
        }
    )
    static |= distribution_hyperparameters(settings.tuning_instance_type, settings.tuning_instance_count)
    trial_resources = resource_config(settings, settings.tuning_instance_type, settings.tuning_instance_count)
    keep_alive, _ = warm_pool_seconds(settings)
    if keep_alive:
        trial_resources["KeepAlivePeriodInSeconds"] = keep_alive
    request: dict[str, Any] = {
        "HyperParameterTuningJobName": job_name,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": OBJECTIVE_METRIC},
            "ResourceLimits": {
                "MaxNumberOfTrainingJobs": settings.max_tuning_jobs,
                "MaxParallelTrainingJobs": settings.max_parallel_tuning_jobs,
            },
            "ParameterRanges": {
                "CategoricalParameterRanges": [
                    # The SDK's CategoricalParameter keeps values as strings, then JSON-encodes them: "\"64\"".
                    {"Name": "batch_size", "Values": [json.dumps(str(size)) for size in BATCH_SIZES]}
                ],
                "ContinuousParameterRanges": [
                    {
                        "Name": "learning_rate",
                        "MinValue": str(LEARNING_RATE_MIN),
                        "MaxValue": str(LEARNING_RATE_MAX),
                        "ScalingType": "Logarithmic",
                    }
                ],
                "IntegerParameterRanges": [],
            },
            "TrainingJobEarlyStoppingType": "Auto",
        },
        "TrainingJobDefinition": {
            "StaticHyperParameters": static,
            "AlgorithmSpecification": {
                "TrainingImage": settings.training_image_uri,
                "TrainingInputMode": "File",
                "MetricDefinitions": [dict(definition) for definition in METRIC_DEFINITIONS],
            },
            "RoleArn": settings.sagemaker_role_arn,
            "InputDataConfig": [_training_channel(dataset), *_pretrained_channels(settings)],
            "OutputDataConfig": output_data_config(settings, job_output_uri(settings, dataset.run_id)),
            "ResourceConfig": trial_resources,
            **job_security(settings),
            **cost_controls(settings, spot=settings.spot_tuning, job_name=job_name, run_id=dataset.run_id),
        },
        "Tags": _tags(dataset),
    }
    if warm_start_parent:
        request["WarmStartConfig"] = warm_start_config(warm_start_parent)
    return request


def rule_configurations(names: tuple[str, ...], rule_image_uri: str) -> list[dict[str, Any]]:
    """What the SDK's ``Rule.sagemaker(rule_configs.<rule>())`` sends, with the evaluator image resolved."""
    return [
        {
            "RuleConfigurationName": name,
            "RuleEvaluatorImage": rule_image_uri,
            "RuleParameters": {"rule_to_invoke": name},
        }
        for name in names
    ]


def training_job_request(
    settings: Settings,
    dataset: Dataset,
    best: BestJob,
    job_name: str,
    code_uri: str,
    region: str,
    champion_model_uri: str | None = None,
) -> dict[str, Any]:
    """The final job; with ``champion_model_uri`` it also scores the serving model on the same test images."""
    output_uri = job_output_uri(settings, dataset.run_id)
    tuned = {name: best.hyperparameters[name] for name in TUNED_HYPERPARAMETERS}
    hyperparameters = _static_hyperparameters(settings, TRAINING_PROGRAM, code_uri, region)
    # Where and how the model will serve: the job evaluates both models in the precision the endpoint uses.
    serving = {
        "endpoint_instance_type": settings.endpoint_instance_type,
        "inference_precision": settings.inference_precision,
    }
    hyperparameters |= encode_hyperparameters(tuned | {"epochs": settings.training_epochs} | serving)
    instance_type, instance_count = settings.training_instance_type, settings.training_instance_count
    hyperparameters |= distribution_hyperparameters(instance_type, instance_count)
    channels = [_training_channel(dataset), *_pretrained_channels(settings)]
    if champion_model_uri:
        # The serving model's model.tar.gz.
        channels.append(_s3_channel(CHAMPION_CHANNEL, champion_model_uri, "application/x-gzip"))
    request: dict[str, Any] = {
        "TrainingJobName": job_name,
        "HyperParameters": hyperparameters,
        "AlgorithmSpecification": {
            "TrainingImage": settings.training_image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": [dict(definition) for definition in METRIC_DEFINITIONS],
            "EnableSageMakerMetricsTimeSeries": True,
        },
        "RoleArn": settings.sagemaker_role_arn,
        "InputDataConfig": channels,
        "OutputDataConfig": output_data_config(settings, output_uri),
        "ResourceConfig": resource_config(settings, instance_type, instance_count),
        **job_security(settings),
        **cost_controls(settings, spot=settings.spot_training, job_name=job_name, run_id=dataset.run_id),
        "Tags": _tags(dataset),
    }
    if settings.debugger_rules_enabled:
        train_images = dataset.counts.get("train") or settings.expected_train
        batch_size = int(decode_hyperparameter(str(tuned["batch_size"])))
        request["DebugHookConfig"] = {
            # SageMaker appends <job>/debug-output itself, as the SDK's default hook config relies on.
            "S3OutputPath": output_uri,
            "HookParameters": hook_parameters(
                train_images, batch_size, settings.training_epochs, world_size(instance_type, instance_count)
            ),
            "CollectionConfigurations": [copy.deepcopy(collection) for collection in HOOK_COLLECTIONS],
        }
        request["DebugRuleConfigurations"] = rule_configurations(DEBUGGER_RULES, settings.rule_image_uri)
    if settings.profiler_rules_enabled:
        request["ProfilerConfig"] = {"S3OutputPath": output_uri, "DisableProfiler": False}
        request["ProfilerRuleConfigurations"] = rule_configurations(PROFILER_RULES, settings.rule_image_uri)
    else:
        # A ProfilerRule next to DisableProfiler is an invalid request shape, so no rules go with it.
        request["ProfilerConfig"] = {"DisableProfiler": True}
    return request


def enabled_rules(settings: Settings) -> list[str]:
    return [
        *(DEBUGGER_RULES if settings.debugger_rules_enabled else ()),
        *(PROFILER_RULES if settings.profiler_rules_enabled else ()),
    ]


def model_request(
    settings: Settings, dataset: Dataset, model_name: str, model_data_url: str, region: str
) -> dict[str, Any]:
    return {
        "ModelName": model_name,
        "PrimaryContainer": {
            "Image": settings.inference_image_uri,
            "ModelDataUrl": model_data_url,
            "Environment": {
                "SAGEMAKER_PROGRAM": INFERENCE_PROGRAM,
                "SAGEMAKER_SUBMIT_DIRECTORY": INFERENCE_CODE_DIR,
                "SAGEMAKER_REGION": region,
                "SAGEMAKER_CONTAINER_LOG_LEVEL": str(LOG_LEVEL_INFO),
                # One model-server worker using every core: several workers, each with its own OpenMP thread pool,
                # oversubscribe a small CPU instance (5-10x slower when measured on 2 cores).
                "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
                "INFERENCE_PRECISION": settings.inference_precision,
            },
        },
        "ExecutionRoleArn": settings.sagemaker_role_arn,
        **vpc_config(settings),
        # The model server then has no network: inference_requirements.txt installs nothing, so it needs none.
        **({"EnableNetworkIsolation": True} if settings.network_isolation else {}),
        "Tags": _tags(dataset),
    }


def endpoint_config_request(
    settings: Settings,
    dataset: Dataset,
    endpoint_config_name: str,
    model_name: str,
    instance_count: int | None = None,
) -> dict[str, Any]:
    """The endpoint config; ``instance_count`` (autoscaling: the fleet's current count) defaults to the template's."""
    return {
        "EndpointConfigName": endpoint_config_name,
        "ProductionVariants": [
            {
                # Guarded updates require the new config to keep the variant name of the serving one.
                "VariantName": VARIANT_NAME,
                "ModelName": model_name,
                "InitialInstanceCount": settings.endpoint_instance_count if instance_count is None else instance_count,
                "InstanceType": settings.endpoint_instance_type,
                "InitialVariantWeight": 1.0,
            }
        ],
        # The endpoint instances' ML storage volume; local NVMe storage is hardware-encrypted and refuses a key.
        **(
            {"KmsKeyId": settings.kms_key_arn}
            if settings.kms_key_arn and not has_instance_storage(settings.endpoint_instance_type)
            else {}
        ),
        "Tags": _tags(dataset),
    }


# What inference.py accepts and answers (see its input_fn / output_fn).
INFERENCE_CONTENT_TYPES = ["image/jpeg", "image/png", "application/x-image", "application/json"]
INFERENCE_RESPONSE_TYPES = ["application/json"]


def model_package_request(
    settings: Settings,
    dataset: Dataset,
    model_data_url: str,
    region: str,
    description: str,
    properties: dict[str, str],
    client_token: str,
) -> dict[str, Any]:
    """A model package version: the same container as ``model_request``, deployable from the registry as is."""
    container = model_request(settings, dataset, "unused", model_data_url, region)["PrimaryContainer"]
    return {
        "ModelPackageGroupName": settings.model_package_group,
        "ModelPackageDescription": description[:1024],
        "InferenceSpecification": {
            "Containers": [container],
            "SupportedContentTypes": list(INFERENCE_CONTENT_TYPES),
            "SupportedResponseMIMETypes": list(INFERENCE_RESPONSE_TYPES),
            "SupportedRealtimeInferenceInstanceTypes": [settings.endpoint_instance_type],
        },
        "ModelApprovalStatus": "PendingManualApproval",
        "CustomerMetadataProperties": properties,
        # Idempotent on AWS: a retried EvaluateModel gets the version its first attempt created.
        "ClientToken": client_token[:36],
    }
