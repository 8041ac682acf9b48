"""RejectModel: the model did not pass the champion/challenger gate; its package becomes Rejected and people hear.

Input: ``{"gate": $.gate, "dataset": $.dataset, "execution_name": str, "execution_id": str}``.
Output ($.rejection): ``{"model_package_arn", "status": "Rejected", "message_id"}``.

The notice goes to the failure topic with its own subject ("Model rejected"): the pipeline worked and the serving
model keeps serving, but someone should look at why the new one is worse.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline.common.champion_gate import interval_text
from pipeline.common.clients import get_client
from pipeline.common.config import Settings, load_settings
from pipeline.common.model_approval import set_approval
from pipeline.common.observability import logger, metrics, tracer
from pipeline.common.sagemaker_gateway import SageMakerGateway, sagemaker_gateway
from pipeline.common.state_models import Dataset, Gate
from pipeline.notify_failure import SUBJECT_LIMIT, console_link


def _comparison(gate: Gate) -> str:
    paired = gate.paired
    if paired:
        return (
            f"{paired['champion_accuracy']:.4f} on the same {paired['images']} test images (new model there: "
            f"{paired['challenger_accuracy']:.4f}; difference {paired['difference']:+.4f}, "
            f"{interval_text(paired['confidence'], paired['interval'])})"
        )
    if gate.comparison == "champion unscored":
        return "not scored on these images (see the reason)"
    return "none (no model was serving)"


def rejection_notice(
    gate: Gate, dataset: Dataset, execution_name: str, execution_id: str, report_uri: str
) -> tuple[str, str]:
    """(subject, body) of the notice."""
    version = f" (version {dataset.version_id})" if dataset.version_id else ""
    lines = [
        f"The dog-breed retraining run {execution_name} trained a model that did not pass the champion/challenger "
        "gate. The pipeline worked; the endpoint keeps serving the current model.",
        "",
        f"Reason: {gate.reason}",
        f"New model's test accuracy: {gate.challenger_accuracy:.4f}",
        f"Serving model's test accuracy: {_comparison(gate)}",
        f"Model package (now Rejected): {gate.model_package_arn}",
        f"Dataset: s3://{dataset.bucket}/{dataset.key}{version}",
        "",
        f"Execution: {console_link(execution_id)}",
        f"Run report (written when the run ends): {report_uri}",
        "",
        "To deploy it anyway, approve the package in the registry and deploy it by hand, or lower AccuracyFloor / "
        "raise ChampionTolerance and retrain with force.",
    ]
    return f"Model rejected: {execution_name}"[:SUBJECT_LIMIT], "\n".join(lines)


@tracer.capture_method
def reject_model(
    gate: Gate,
    dataset: Dataset,
    execution_name: str,
    execution_id: str,
    settings: Settings,
    sagemaker: SageMakerGateway,
    sns: Any,
) -> dict[str, Any]:
    topic_arn = settings.failure_topic_arn
    set_approval(
        sagemaker,
        gate.model_package_arn,
        "Rejected",
        f"Rejected by the champion/challenger gate of run {execution_name}: {gate.reason}",
    )
    report = settings.run_report_uri(execution_name)
    subject, body = rejection_notice(gate, dataset, execution_name, execution_id, report)
    message_id = None
    if topic_arn:
        message_id = sns.publish(TopicArn=topic_arn, Subject=subject, Message=body)["MessageId"]
    else:
        logger.warning("no FAILURE_TOPIC_ARN set; rejection not published", extra={"subject": subject})
    result = {"model_package_arn": gate.model_package_arn, "status": "Rejected", "message_id": message_id}
    logger.info("model rejected", extra=result | {"reason": gate.reason})
    return result


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = reject_model(
        Gate.model_validate(event["gate"]),
        Dataset.model_validate(event["dataset"]),
        str(event.get("execution_name", "")),
        str(event.get("execution_id", "")),
        load_settings(),
        sagemaker_gateway(),
        get_client("sns"),
    )
    metrics.add_metric(name="ModelPackagesRejected", unit=MetricUnit.Count, value=1)
    return result
