"""WriteRunReport: one self-contained HTML page per run, next to its run record (``runs/<execution name>.html``).

Input: ``{"record": $.record, "execution_name": str, "execution_id": str}`` (RecordRun's output names the record).
Output ($.report): ``{"uri", "bytes"}``.

The page (``pipeline.common.run_report``) is built from what the run left: the run record RecordRun wrote (dataset,
rules, gate with both models' figures, deployment, cost, error), the tuning trials as SageMaker lists them, the final
job's ``training_history.json`` (its per-epoch curves, in the job's output.tar.gz), a few of the challenger's
misclassified test images read out of the validated zip with ranged GETs, and the execution's history (the
timeline, and the path drawn on the state machine's definition). Whatever is missing (a run that failed early) is
left out of the page, which then says what failed where. The state has a Catch to ReleasePipeline: a report that
cannot be written never holds the lease or changes the run's outcome.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from pipeline.common.clients import get_client
from pipeline.common.config import Settings, load_settings
from pipeline.common.job_outputs import output_archive_uri, read_output_files, split_s3_uri
from pipeline.common.observability import logger, tracer
from pipeline.common.run_report import ReportInputs, render_report
from pipeline.common.s3_ranged_reader import S3RangedReader
from pipeline.common.sagemaker_gateway import SageMakerGateway, sagemaker_gateway
from pipeline.common.state_machine_drawing import render_svg

TRAINING_HISTORY_NAME = "training_history.json"
THUMBNAILS = 6
MAX_TRIALS = 100
# Ranged reads of the zip through a buffer: the central directory and each image in a few GETs, not thousands.
ZIP_READ_BUFFER = 1024 * 1024


def read_record(s3: Any, record_uri: str) -> dict[str, Any]:
    bucket, key = split_s3_uri(record_uri)
    document: dict[str, Any] = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return document


def trials(sagemaker: SageMakerGateway, tuning_job: str | None) -> list[dict[str, Any]]:
    """The leaderboard rows: every trial's hyperparameters, objective, duration and status."""
    if not tuning_job:
        return []
    listed = sagemaker.call(
        "list_training_jobs_for_hyper_parameter_tuning_job",
        HyperParameterTuningJobName=tuning_job,
        MaxResults=MAX_TRIALS,
    )
    rows = []
    for summary in listed.get("TrainingJobSummaries", []):
        start, end = summary.get("TrainingStartTime"), summary.get("TrainingEndTime")
        objective = summary.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
        rows.append(
            {
                "name": summary["TrainingJobName"],
                "status": summary.get("TrainingJobStatus"),
                "objective": objective.get("Value"),
                "duration_seconds": (end - start).total_seconds() if start and end else None,
                "hyperparameters": {
                    name: value.strip('"') for name, value in (summary.get("TunedHyperParameters") or {}).items()
                },
            }
        )
    return rows


def training_history(s3: Any, sagemaker: SageMakerGateway, training_job: str | None) -> list[dict[str, Any]]:
    if not training_job:
        return []
    description = sagemaker.call("describe_training_job", TrainingJobName=training_job)
    found = read_output_files(s3, output_archive_uri(description), (TRAINING_HISTORY_NAME,)) or {}
    epochs = (found.get(TRAINING_HISTORY_NAME) or {}).get("epochs") or []
    return list(epochs)


def thumbnails(s3: Any, validated_uri: str | None, misclassified: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first few misclassified test images, read out of the validated zip (a handful of ranged GETs)."""
    if not validated_uri or not misclassified:
        return []
    reader = S3RangedReader.open(s3, *split_s3_uri(validated_uri))
    pictures = []
    with zipfile.ZipFile(io.BufferedReader(reader, ZIP_READ_BUFFER)) as archive:
        for mistake in misclassified[:THUMBNAILS]:
            try:
                jpeg = archive.read(mistake["path"])
            except KeyError:
                continue
            pictures.append({**mistake, "jpeg": jpeg})
    logger.info("thumbnails read", extra={"images": len(pictures), "requests": reader.stats.requests})
    return pictures


def execution_timeline(stepfunctions: Any, execution_id: str) -> tuple[list[dict[str, Any]], list[str], str | None]:
    """(the states entered with their durations, the path taken, the state whose error was caught last)."""
    events: list[dict[str, Any]] = []
    for page in stepfunctions.get_paginator("get_execution_history").paginate(executionArn=execution_id):
        events += page["events"]
    rows: list[dict[str, Any]] = []
    path: list[str] = []
    failed: str | None = None
    for event in events:
        entered = event.get("stateEnteredEventDetails")
        exited = event.get("stateExitedEventDetails")
        if entered:
            path.append(entered["name"])
            rows.append({"state": entered["name"], "entered": event["timestamp"], "status": "running"})
        elif exited and rows and rows[-1]["state"] == exited["name"]:
            row = rows[-1]
            row["seconds"] = (event["timestamp"] - row["entered"]).total_seconds()
            if row["status"] == "running":
                row["status"] = "succeeded"
        elif event["type"].endswith("Failed") and rows:
            rows[-1]["status"] = "failed"
            failed = rows[-1]["state"]
    for row in rows:
        if isinstance(row["entered"], datetime):
            row["entered"] = row["entered"].isoformat()
    return rows, path, failed


def _evaluation(gate: dict[str, Any]) -> dict[str, Any] | None:
    """The gate's copy of the job's evaluation.json (both models' entries and the paired figures)."""
    models = gate.get("models") or {}
    if not models.get("challenger"):
        return None
    paired = gate.get("paired")
    return {
        "test_images": (models["challenger"] or {}).get("images"),
        "confidence": (paired or {}).get("confidence", 0.95),
        "challenger": models["challenger"],
        "champion": models.get("champion"),
        "paired": paired,
    }


@tracer.capture_method
def write_run_report(
    record_uri: str,
    execution_name: str,
    execution_id: str,
    settings: Settings,
    s3: Any,
    sagemaker: SageMakerGateway,
    stepfunctions: Any,
) -> dict[str, Any]:
    record = read_record(s3, record_uri)
    jobs, dataset, gate = record.get("jobs") or {}, record.get("dataset") or {}, record.get("gate") or {}
    evaluation = _evaluation(gate)
    timeline, path, failed = execution_timeline(stepfunctions, execution_id)
    definition = stepfunctions.describe_state_machine_for_execution(executionArn=execution_id)["definition"]
    misclassified = list(((evaluation or {}).get("challenger") or {}).get("misclassified") or [])
    inputs = ReportInputs(
        record=record,
        trials=trials(sagemaker, jobs.get("tuning")),
        history=training_history(s3, sagemaker, jobs.get("training")),
        rules=record.get("rules"),
        evaluation=evaluation,
        thumbnails=_thumbnails_if_readable(s3, dataset.get("validated_uri"), misclassified),
        timeline=timeline,
        state_machine_svg=render_svg(json.loads(definition), path, failed_state=failed),
    )
    page = render_report(inputs).encode()
    uri = settings.run_report_uri(execution_name)
    bucket, key = split_s3_uri(uri)
    s3.put_object(Bucket=bucket, Key=key, Body=page, ContentType="text/html; charset=utf-8")
    return {"uri": uri, "bytes": len(page)}


def _thumbnails_if_readable(s3: Any, validated_uri: str | None, misclassified: list[dict[str, Any]]) -> list[Any]:
    # Pictures are a nicety: a zip that cannot be read (lifecycle-expired, say) leaves the page without them.
    try:
        return thumbnails(s3, validated_uri, misclassified)
    except (ClientError, zipfile.BadZipFile, OSError) as error:
        logger.warning("no thumbnails: the validated zip could not be read", extra={"error": str(error)})
        return []


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = write_run_report(
        str(event["record"]["uri"]),
        str(event["execution_name"]),
        str(event["execution_id"]),
        load_settings(),
        get_client("s3"),
        sagemaker_gateway(),
        get_client("stepfunctions"),
    )
    logger.info("run report written", extra=result)
    return result
