"""EvaluateModel: the champion/challenger gate; registers the new model in the model registry.

Input: ``{"dataset": $.dataset, "best": $.best, "training": $.training, "rules": $.rules, "tuning": $.tuning,
"execution_name": str}``.
Output ($.gate): ``{"passed", "reason", "challenger_accuracy", "champion_accuracy", "model_package_arn",
"champion_package_arn", "model_package_group", "floor", "tolerance"}``.

The challenger's accuracy is the training job's final ``test:accuracy`` metric; the champion's is the
``test_accuracy`` recorded on the Approved package the endpoint serves now (none before the first deployment).
Whatever the decision, the model is registered ``PendingManualApproval`` with its metrics, dataset identity,
hyperparameters and rule results; RejectModel or ApproveModel settles it. Caveat: each accuracy is measured on its
own dataset's test split, so a much harder (or easier) new test split moves the bar; the tolerance absorbs noise,
not a change of benchmark.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.common.champion_gate import decide
from pipeline.common.config import Settings, load_settings
from pipeline.common.errors import ModelMetricMissing, TrainingFailed
from pipeline.common.model_packages import TEST_ACCURACY_KEY, TRAINING_JOB_KEY, metadata
from pipeline.common.model_registry import ensure_group, find_champion, find_registered, register
from pipeline.common.observability import logger, metrics, tracer
from pipeline.common.sagemaker_gateway import SageMakerGateway, sagemaker_gateway
from pipeline.common.sagemaker_requests import model_package_request
from pipeline.common.state_models import BestJob, Dataset, Training

TEST_METRIC = "test:accuracy"
VALIDATION_METRIC = "validation:accuracy"
GROUP_DESCRIPTION = "Dog-breed classifiers trained by the retraining pipeline (one version per training job)."


def final_metric(description: dict[str, Any], name: str) -> float | None:
    for metric in description.get("FinalMetricDataList") or []:
        if metric.get("MetricName") == name:
            return float(metric["Value"])
    return None


def serving_config(sagemaker: SageMakerGateway, endpoint_name: str) -> str | None:
    """The endpoint config the endpoint serves now; None when there is no endpoint yet."""
    request: dict[str, Any] = {"NameContains": endpoint_name, "MaxResults": 100}
    while True:
        page = sagemaker.call("list_endpoints", **request)
        if any(item["EndpointName"] == endpoint_name for item in page.get("Endpoints", [])):
            described = sagemaker.call("describe_endpoint", EndpointName=endpoint_name)
            return str(described["EndpointConfigName"])
        if not page.get("NextToken"):
            return None
        request["NextToken"] = page["NextToken"]


def package_properties(
    dataset: Dataset,
    best: BestJob,
    training: Training,
    rules: dict[str, Any],
    tuning: dict[str, Any],
    description: dict[str, Any],
    settings: Settings,
    execution_name: str,
) -> dict[str, str]:
    counts = dataset.counts
    values: dict[str, object] = {
        "execution": execution_name,
        "run_id": dataset.run_id,
        TRAINING_JOB_KEY: training.job_name,
        "tuning_job": tuning.get("job_name"),
        "warm_start_parent": tuning.get("warm_start_parent") or "none",
        "best_trial": best.training_job_name,
        "dataset_id": dataset.dataset_id,
        "dataset": f"s3://{dataset.bucket}/{dataset.key}",
        "dataset_version": dataset.version_id,
        "dataset_etag": (dataset.etag or "").strip('"') or None,
        "dataset_counts": " ".join(f"{split}={count}" for split, count in counts.items()) or None,
        "class_count": dataset.class_count,
        TEST_ACCURACY_KEY: final_metric(description, TEST_METRIC),
        "validation_accuracy": final_metric(description, VALIDATION_METRIC),
        "epochs": settings.training_epochs,
        "rules_passed": rules.get("passed"),
        "rules_evidence": rules.get("evidence"),
    }
    values |= {f"hp_{name}": value for name, value in sorted(best.hyperparameters.items())}
    values |= {f"rule_{name}": status for name, status in sorted((rules.get("rules") or {}).items())}
    return metadata(values)


@tracer.capture_method
def evaluate_model(
    dataset: Dataset,
    best: BestJob,
    training: Training,
    rules: dict[str, Any],
    tuning: dict[str, Any],
    settings: Settings,
    sagemaker: SageMakerGateway,
    execution_name: str,
) -> dict[str, Any]:
    description = sagemaker.call("describe_training_job", TrainingJobName=training.job_name)
    artifact = (description.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if description["TrainingJobStatus"] != "Completed" or not artifact:
        raise TrainingFailed(
            f"training job {training.job_name} is {description['TrainingJobStatus']} with no model artifact; "
            "there is no model to evaluate."
        )
    challenger = final_metric(description, TEST_METRIC)
    if challenger is None:
        raise ModelMetricMissing(
            f"training job {training.job_name} reported no {TEST_METRIC}: the training code must print "
            "test_accuracy=<value> after evaluating the test split (the job's MetricDefinitions read it). "
            "Nothing was registered or deployed."
        )
    group = settings.model_package_group
    if ensure_group(sagemaker, group, GROUP_DESCRIPTION):
        logger.info("model package group created", extra={"group": group})
    serving = serving_config(sagemaker, settings.endpoint_name)
    champion = find_champion(sagemaker, group, serving) if serving else None
    if serving and champion is None:
        logger.warning(
            "the endpoint serves a config with no Approved package in the registry: only the floor applies",
            extra={"endpoint": settings.endpoint_name, "serving_config": serving, "group": group},
        )
    champion_accuracy = champion.test_accuracy if champion else None
    decision = decide(challenger, champion_accuracy, settings.accuracy_floor, settings.champion_tolerance)
    existing = find_registered(sagemaker, group, training.job_name)
    if existing is not None:
        arn = existing.arn
        logger.info("model was already registered by an earlier attempt", extra={"model_package_arn": arn})
    else:
        properties = package_properties(dataset, best, training, rules, tuning, description, settings, execution_name)
        properties["gate"] = "passed" if decision.passed else "rejected"
        verdict = "passed" if decision.passed else "rejected"
        request = model_package_request(
            settings,
            dataset,
            str(artifact),
            sagemaker.region,
            f"{training.job_name} on dataset {dataset.dataset_id} ({dataset.key}): test accuracy {challenger:.4f}; "
            f"gate {verdict}: {decision.reason}",
            properties,
            client_token=training.job_name,
        )
        arn = register(sagemaker, request)
    result = decision.as_state() | {
        "model_package_arn": arn,
        "model_package_group": group,
        "champion_package_arn": champion.arn if champion else None,
    }
    logger.info("champion/challenger gate", extra=result)
    return result


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = evaluate_model(
        Dataset.model_validate(event["dataset"]),
        BestJob.model_validate(event["best"]),
        Training.model_validate(event["training"]),
        dict(event.get("rules") or {}),
        dict(event.get("tuning") or {}),
        load_settings(),
        sagemaker_gateway(),
        str(event.get("execution_name", "")),
    )
    outcome = "ModelsPassedGate" if result["passed"] else "ModelsRejected"
    metrics.add_metric(name=outcome, unit=MetricUnit.Count, value=1)
    metrics.add_metric(
        name="ChallengerTestAccuracy", unit=MetricUnit.Percent, value=100 * result["challenger_accuracy"]
    )
    return result
