"""RecordRun state: writes the run record to ``s3://<bucket>/runs/<execution name>.json`` on every ending.

Input (the state machine's Parameters)::

    {"state": <the whole state>, "execution_name": "...", "execution_id": "<execution ARN>",
     "execution_start_time": "2026-11-25T01:53:43.123Z"}

Output (``$.record``): ``{"uri": "s3://...", "outcome": "succeeded|failed|rejected|already_trained",
"cost_usd": float | null}``.

The record (see ``common/run_record.py``) holds the trigger, the dataset identity and counts, the jobs and the best
hyperparameters, rule results, the final training metrics (test accuracy), the gate decision, the deployment,
timings and a cost estimate from the jobs' descriptions. It also marks the dataset trained when the run deployed
its model or the gate rejected it, and publishes RunOutcome (dimension Outcome), RunDurationSeconds,
TestAccuracy and RunCostUSD for the dashboard. Describe calls that fail leave their part of the record empty:
the record of a failed run must still be written.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from pipeline.common import run_record
from pipeline.common.clients import get_client
from pipeline.common.config import Settings, load_settings
from pipeline.common.observability import logger, metrics, tracer
from pipeline.common.pipeline_state import DatasetIdentity, PipelineTable
from pipeline.common.sagemaker_gateway import SageMakerGateway

NAMESPACE = "DogBreedRetraining"
# Tuning trials described for the cost estimate (MaxTuningJobs is usually far below).
MAX_TRIALS = 100


class RecordInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    state: dict[str, Any]
    execution_name: str
    execution_id: str
    execution_start_time: datetime


def _describe(gateway: SageMakerGateway, operation: str, **request: Any) -> dict[str, Any] | None:
    try:
        return gateway.call(operation, **request)
    except ClientError as error:
        logger.warning("describe failed; left out of the record", extra={"operation": operation, "error": str(error)})
        return None


def describe_jobs(
    state: dict[str, Any], gateway: SageMakerGateway
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[dict[str, Any]]]:
    """(tuning job, final training job, tuning trials) descriptions, for whichever the run got to."""
    tuning_name = state["tuning"].get("job_name") if isinstance(state.get("tuning"), dict) else None
    training_name = state["training"].get("job_name") if isinstance(state.get("training"), dict) else None
    tuning = trials = None
    if tuning_name:
        tuning = _describe(gateway, "describe_hyper_parameter_tuning_job", HyperParameterTuningJobName=tuning_name)
        listed = _describe(
            gateway,
            "list_training_jobs_for_hyper_parameter_tuning_job",
            HyperParameterTuningJobName=tuning_name,
            MaxResults=MAX_TRIALS,
        )
        names = [s["TrainingJobName"] for s in (listed or {}).get("TrainingJobSummaries", [])]
        trials = [_describe(gateway, "describe_training_job", TrainingJobName=name) for name in sorted(names)]
    training = _describe(gateway, "describe_training_job", TrainingJobName=training_name) if training_name else None
    return tuning, training, [t for t in trials or [] if t]


@tracer.capture_method
def record_run(
    state_input: RecordInput,
    settings: Settings,
    s3: Any,
    gateway: SageMakerGateway,
    table: PipelineTable,
    now: datetime,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the state's output, the record written)."""
    state = state_input.state
    tuning, training, trials = describe_jobs(state, gateway)
    record = run_record.build_record(
        state,
        state_input.execution_name,
        state_input.execution_id,
        state_input.execution_start_time,
        now,
        tuning,
        training,
        trials,
        settings.instance_prices,
        (settings.endpoint_instance_type, settings.endpoint_instance_count),
    )
    key = settings.run_record_key(state_input.execution_name)
    s3.put_object(
        Bucket=settings.bucket,
        Key=key,
        Body=json.dumps(record, indent=1, default=str).encode(),
        ContentType="application/json",
    )
    dataset = state.get("dataset")
    if record["outcome"] in run_record.TRAINED_OUTCOMES and isinstance(dataset, dict):
        table.mark_trained(DatasetIdentity.of(dataset), state_input.execution_name, record["outcome"], now)
    cost = record["cost"]["total_usd"] if record["cost"] else None
    return {"uri": f"s3://{settings.bucket}/{key}", "outcome": record["outcome"], "cost_usd": cost}, record


def publish_metrics(record: dict[str, Any]) -> None:
    with single_metric(
        name="RunOutcome",
        unit=MetricUnit.Count,
        value=1,
        namespace=NAMESPACE,
        default_dimensions={"Outcome": str(record["outcome"])},
    ):
        pass
    total = record["timings"].get("total_seconds")
    if total is not None:
        metrics.add_metric(name="RunDurationSeconds", unit=MetricUnit.Seconds, value=float(total))
    if record.get("test_accuracy") is not None:
        metrics.add_metric(name="TestAccuracy", unit=MetricUnit.Count, value=float(record["test_accuracy"]))
    if record.get("cost") and record["cost"].get("total_usd") is not None:
        metrics.add_metric(name="RunCostUSD", unit=MetricUnit.Count, value=float(record["cost"]["total_usd"]))


@logger.inject_lambda_context(correlation_id_path="execution_name", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state_input = RecordInput.model_validate(event)
    settings = load_settings()
    result, record = record_run(
        state_input,
        settings,
        get_client("s3"),
        SageMakerGateway(get_client("sagemaker")),
        PipelineTable(get_client("dynamodb"), settings.pipeline_table),
        datetime.now(UTC),
    )
    publish_metrics(record)
    logger.info("run recorded", extra={"record": result})
    return result
