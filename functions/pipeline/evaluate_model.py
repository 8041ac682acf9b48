"""EvaluateModel: the champion/challenger gate; registers the new model in the model registry.

Input: ``{"dataset": $.dataset, "best": $.best, "training": $.training, "rules": $.rules, "tuning": $.tuning,
"execution_name": str}``.
Output ($.gate): ``{"passed", "reason", "challenger_accuracy", "champion_accuracy", "comparison", "paired",
"floor", "tolerance", "per_breed_tolerance", "served_as", "top5_accuracy", "model_package_arn",
"champion_package_arn", "model_package_group", "evaluation_uri", "models", "approval": {"mode",
"timeout_seconds"}}`` (``models``: evaluation.json's
per-model entries, for the run record and its report).

The figures are the final training job's ``evaluation.json`` (in its output.tar.gz): the new model and, when one
serves, the model StartTraining named as champion ($.training.champion), both scored on the new dataset's test
split as they will serve (training_code/paired_evaluation.py). ``pipeline.common.champion_gate`` decides on them.
Whatever the decision, the model is registered ``PendingManualApproval`` with both models' figures, its dataset
identity, hyperparameters and rule results; RejectModel or ApproveModel settles it.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.common.champion_gate import Evaluation, GateDecision, decide, read_evaluation
from pipeline.common.clients import get_client
from pipeline.common.config import Settings, load_settings
from pipeline.common.errors import ModelMetricMissing, TrainingFailed
from pipeline.common.job_outputs import output_archive_uri, read_output_files
from pipeline.common.model_packages import TEST_ACCURACY_KEY, TRAINING_JOB_KEY, metadata, metadata_value
from pipeline.common.model_registry import ensure_group, find_registered, register
from pipeline.common.observability import logger, metrics, tracer
from pipeline.common.sagemaker_gateway import SageMakerGateway, sagemaker_gateway
from pipeline.common.sagemaker_requests import model_package_request
from pipeline.common.state_models import BestJob, Dataset, Training

EVALUATION_NAME = "evaluation.json"
VALIDATION_METRIC = "validation:accuracy"
GROUP_DESCRIPTION = "Dog-breed classifiers trained by the retraining pipeline (one version per training job)."


def final_metric(description: dict[str, Any], name: str) -> float | None:
    for metric in description.get("FinalMetricDataList") or []:
        if metric.get("MetricName") == name:
            return float(metric["Value"])
    return None


def read_job_evaluation(s3: Any, description: dict[str, Any]) -> tuple[Evaluation, dict[str, Any], str]:
    """The job's evaluation.json as the gate reads it, the document itself, and where it came from."""
    uri = output_archive_uri(description)
    found = read_output_files(s3, uri, (EVALUATION_NAME,))
    if not found or EVALUATION_NAME not in found:
        raise ModelMetricMissing(
            f"training job {description['TrainingJobName']} wrote no {EVALUATION_NAME} ({uri} "
            f"{'does not exist' if found is None else 'lacks it'}): the training code (train_model.py "
            "--evaluation true) must score the model on the test split. Nothing was registered or deployed."
        )
    document = found[EVALUATION_NAME]
    return read_evaluation(document, uri), document, uri


def evaluation_properties(
    evaluation: Evaluation, decision: GateDecision, champion_arn: str | None
) -> dict[str, object]:
    """Both models' figures on the same images, so the registry compares like with like."""
    paired = decision.paired
    values: dict[str, object] = {
        TEST_ACCURACY_KEY: evaluation.challenger_accuracy,
        "top5_accuracy": evaluation.challenger_top5,
        "served_as": evaluation.served_as,
        "test_images": evaluation.test_images,
        "comparison": decision.comparison,
        "champion_package": champion_arn,
    }
    if paired:
        low, high = paired.interval
        values |= {
            "champion_accuracy_same_images": paired.champion_accuracy,
            "paired_images": paired.images,
            "paired_difference": round(paired.difference, 4),
            "paired_interval": f"{low:+.4f} {high:+.4f}",
            "paired_confidence": paired.confidence,
            "mcnemar_p": f"{paired.mcnemar_p:.4g}",
        }
    return values


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
    s3: Any,
    execution_name: str,
) -> dict[str, Any]:
    description = sagemaker.call("describe_training_job", TrainingJobName=training.job_name)
    artifact = (description.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if description["TrainingJobStatus"] != "Completed" or not artifact:
        raise TrainingFailed(
            f"training job {training.job_name} is {description['TrainingJobStatus']} with no model artifact; "
            "there is no model to evaluate."
        )
    evaluation, document, evaluation_uri = read_job_evaluation(s3, description)
    champion = training.champion
    decision = decide(
        evaluation,
        settings.accuracy_floor,
        settings.champion_tolerance,
        champion_problem=champion.problem if champion else None,
        per_breed_tolerance=settings.per_breed_tolerance,
        champion_serving=champion is not None,
    )
    if decision.comparison == "champion unscored":
        logger.warning("the serving model was not scored: only the floor applied", extra={"reason": decision.reason})
    champion_arn = champion.model_package_arn if champion else None
    group = settings.model_package_group
    if ensure_group(sagemaker, group, GROUP_DESCRIPTION):
        logger.info("model package group created", extra={"group": group})
    existing = find_registered(sagemaker, group, training.job_name)
    if existing is not None:
        arn = existing.arn
        logger.info("model was already registered by an earlier attempt", extra={"model_package_arn": arn})
    else:
        properties = package_properties(dataset, best, training, rules, tuning, description, settings, execution_name)
        properties |= metadata(evaluation_properties(evaluation, decision, champion_arn))
        properties["gate"] = "passed" if decision.passed else "rejected"
        properties["run_report"] = metadata_value(settings.run_report_uri(execution_name))
        verdict = "passed" if decision.passed else "rejected"
        request = model_package_request(
            settings,
            dataset,
            str(artifact),
            sagemaker.region,
            f"{training.job_name} on dataset {dataset.dataset_id} ({dataset.key}): test accuracy "
            f"{evaluation.challenger_accuracy:.4f}; gate {verdict}: {decision.reason}",
            properties,
            client_token=training.job_name,
        )
        arn = register(sagemaker, request)
    result = decision.as_state() | {
        "served_as": evaluation.served_as,
        "top5_accuracy": evaluation.challenger_top5,
        "model_package_arn": arn,
        "model_package_group": group,
        "champion_package_arn": champion_arn,
        "evaluation_uri": evaluation_uri,
        # ApprovalMode: the state machine waits for a person's decision in the registry when "manual".
        "approval": {"mode": settings.approval_mode, "timeout_seconds": settings.approval_timeout_seconds},
        # Both models' per-breed results, confusions and mistakes (~15 kB for 133 breeds) travel on to the run
        # record and its report, so evaluation.json keeps one reader.
        "models": {name: document.get(name) for name in ("challenger", "champion")},
    }
    logger.info("champion/challenger gate", extra={k: v for k, v in result.items() if k != "models"})
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
        get_client("s3"),
        str(event.get("execution_name", "")),
    )
    outcome = "ModelsPassedGate" if result["passed"] else "ModelsRejected"
    metrics.add_metric(name=outcome, unit=MetricUnit.Count, value=1)
    metrics.add_metric(
        name="ChallengerTestAccuracy", unit=MetricUnit.Percent, value=100 * result["challenger_accuracy"]
    )
    return result
