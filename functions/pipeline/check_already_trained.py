"""CheckAlreadyTrained state: the same dataset object is never trained twice, unless the input says force.

Input (the state machine's Parameters)::

    {"dataset": <ValidateDataset's output>, "event": <the state>, "execution_name": "..."}

Output (``$.dedupe``)::

    {"train": bool, "reason": "...", "identity": {"bucket", "key", "version_id", "etag"},
     "trained_by": {"run", "outcome", "trained_at"} | null}

The identity is (bucket, key, version id, ETag) of the uploaded object: a redelivered event or a second event
for the same object version is a duplicate; a new upload of the same key is a new version and trains. RecordRun
marks an identity trained when a run deployed its model or the champion/challenger gate rejected it (the data was
used; training it again would repeat the same work); failed runs do not count, so the next trigger retries.

``"force": true`` in the execution input trains anyway. A scheduled run (which validates the newest zip under
incoming/) trains only when that dataset is not the trained one, unless ALWAYS_RETRAIN_ON_SCHEDULE is true.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict

from pipeline.common import triggers
from pipeline.common.clients import get_client
from pipeline.common.config import load_settings
from pipeline.common.observability import logger, metrics, tracer
from pipeline.common.pipeline_state import DatasetIdentity, PipelineTable


class CheckInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    dataset: dict[str, Any]
    event: dict[str, Any]
    execution_name: str


def _by(record: dict[str, Any]) -> str:
    return f"run {record.get('run')} on {record.get('trained_at')} (outcome {record.get('outcome')})"


@tracer.capture_method
def check_already_trained(
    state_input: CheckInput, table: PipelineTable, always_retrain_on_schedule: bool
) -> dict[str, Any]:
    identity = DatasetIdentity.of(state_input.dataset)
    trigger = state_input.event
    previous = table.trained(identity)
    trained_by = {key: previous.get(key) for key in ("run", "outcome", "trained_at")} if previous is not None else None
    dataset = identity.describe()
    if triggers.is_forced(trigger):
        again = f" although {_by(previous)} trained it" if previous else ""
        train, reason = True, f'"force": true in the input: training on {dataset}{again}'
    elif triggers.is_scheduled(trigger) and always_retrain_on_schedule:
        train, reason = True, f"scheduled run with AlwaysRetrainOnSchedule: retraining on the newest dataset {dataset}"
    elif previous is not None and triggers.is_scheduled(trigger):
        train, reason = (
            False,
            f"scheduled run: the newest dataset {dataset} was trained by {_by(previous)}; nothing newer to train "
            "(set AlwaysRetrainOnSchedule to retrain anyway)",
        )
    elif previous is not None:
        train, reason = (
            False,
            f"already trained: {dataset} was trained by {_by(previous)}; "
            'start a run with "force": true to train it again',
        )
    else:
        last = table.last_trained()
        since = f" (last trained: {last.get('uri')} by run {last.get('run')})" if last else ""
        train, reason = True, f"new dataset: {dataset} has not been trained before{since}"
    return {"train": train, "reason": reason, "identity": identity.as_dict(), "trained_by": trained_by}


@logger.inject_lambda_context(correlation_id_path="execution_name", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state_input = CheckInput.model_validate(event)
    settings = load_settings()
    table = PipelineTable(get_client("dynamodb"), settings.pipeline_table)
    result = check_already_trained(state_input, table, settings.always_retrain_on_schedule)
    if not result["train"]:
        metrics.add_metric(name="DuplicateDatasetsSkipped", unit=MetricUnit.Count, value=1)
    logger.info("dedupe decision", extra={"dedupe": result})
    return result
