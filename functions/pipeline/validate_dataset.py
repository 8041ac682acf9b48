"""ValidateDataset state: find the dataset zip, check it from its central directory only, publish a validated copy.

Input (the state machine's Parameters)::

    {"event": <execution input>, "execution_name": "...", "execution_start_time": "2026-11-25T01:53:43.123Z"}

where the execution input is one of

- an EventBridge S3 ``Object Created`` event (``detail.bucket.name``, ``detail.object.key`` / ``version-id``);
- ``{"trigger": "schedule"}`` or an EventBridge ``Scheduled Event``: the newest ``.zip`` under the incoming prefix;
- ``{"dataset": {"bucket": ..., "key": ..., "version_id": ...}, "expected": {"classes": 3, "train": 6, ...}}``
  (manual; ``version_id`` and ``expected`` are optional).

Unknown keys (such as the ``settings`` the first Pass state adds) are ignored. Output (``$.dataset``)::

    {"bucket", "key", "version_id", "etag", "size", "dataset_id", "run_id", "trigger", "validated_uri",
     "classes_uri", "class_count", "counts": {"train", "valid", "test"}, "root",
     "ignored": {"count", "examples", "directory_entries"}, "reads": {"requests", "bytes"}}

The archive is never downloaded: HeadObject, one GET of its last 64 KiB and at most one more GET for the rest of
the central directory (about 1 MB for the 8,351-entry dogImages zip). Raises ``DatasetNotFound`` when there is no
dataset to read and ``DatasetInvalid`` (every problem found, with what to fix) when its layout is wrong.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import unquote_plus

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.common import names
from pipeline.common.clients import get_client
from pipeline.common.config import Settings, load_settings
from pipeline.common.errors import DatasetInvalid, DatasetNotFound
from pipeline.common.observability import logger, metrics, tracer
from pipeline.common.s3_ranged_reader import S3RangedReader, real_version_id
from pipeline.common.zip_inspection import (
    SPLITS,
    DatasetLayout,
    ExpectedLayout,
    SafetyLimits,
    inspect_dataset,
    read_central_directory,
)

Trigger = Literal["s3", "schedule", "manual"]
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NoSuchVersion", "NoSuchBucket", "NotFound"})
_CHANGED_CODES = frozenset({"412", "PreconditionFailed"})
_DENIED_CODES = frozenset({"403", "AccessDenied"})
# Parts of 128 MiB: the 1.1 GB dogImages zip copies in 9 parallel UploadPartCopy calls instead of 135 of 8 MiB.
_COPY_CONFIG = TransferConfig(multipart_threshold=256 * 1024**2, multipart_chunksize=128 * 1024**2)


class ValidateDatasetInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    event: dict[str, Any]
    execution_name: str
    execution_start_time: datetime


class ExpectedOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")

    classes: int | None = None
    train: int | None = None
    valid: int | None = None
    test: int | None = None


class DatasetLocation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bucket: str
    key: str
    version_id: str | None = None


class ManualInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    dataset: DatasetLocation
    expected: ExpectedOverride | None = None


@dataclass(frozen=True)
class DatasetRequest:
    bucket: str
    key: str
    version_id: str | None
    trigger: Trigger
    expected: ExpectedLayout


def expected_layout(settings: Settings, override: ExpectedOverride | None = None) -> ExpectedLayout:
    override = override or ExpectedOverride()
    return ExpectedLayout(
        classes=override.classes if override.classes is not None else settings.expected_classes,
        images={
            "train": override.train if override.train is not None else settings.expected_train,
            "valid": override.valid if override.valid is not None else settings.expected_valid,
            "test": override.test if override.test is not None else settings.expected_test,
        },
    )


def _upload_hint(settings: Settings) -> str:
    return (
        f"upload the dataset as a .zip (train/, valid/ and test/ folders of class folders, optionally under one "
        f"folder such as dogImages/) to s3://{settings.bucket}/{settings.incoming_prefix}<name>.zip"
    )


def newest_incoming_zip(s3: Any, settings: Settings) -> tuple[str, str]:
    newest: dict[str, Any] | None = None
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=settings.incoming_prefix):
        for item in page.get("Contents", []):
            if item["Key"].lower().endswith(".zip") and (
                newest is None or item["LastModified"] > newest["LastModified"]
            ):
                newest = item
    if newest is None:
        raise DatasetNotFound(
            f"the scheduled run found no .zip under s3://{settings.bucket}/{settings.incoming_prefix}; "
            + _upload_hint(settings)
        )
    return settings.bucket, str(newest["Key"])


def resolve_request(event: dict[str, Any], s3: Any, settings: Settings) -> DatasetRequest:
    """Turn whichever execution input started the run into the one dataset to validate."""
    if event.get("source") == "aws.s3" and event.get("detail-type") == "Object Created":
        s3_event = parse(event=event, model=S3EventNotificationEventBridgeModel)
        return DatasetRequest(
            bucket=s3_event.detail.bucket.name,
            key=s3_event.detail.object.key,
            version_id=real_version_id(s3_event.detail.object.version_id),
            trigger="s3",
            expected=expected_layout(settings),
        )
    if event.get("trigger") == "schedule" or event.get("detail-type") == "Scheduled Event":
        bucket, key = newest_incoming_zip(s3, settings)
        return DatasetRequest(bucket, key, None, "schedule", expected_layout(settings))
    if "dataset" in event:
        try:
            manual = ManualInput.model_validate(event)
        except ValidationError as error:
            raise DatasetNotFound(
                'a manual run needs {"dataset": {"bucket": "...", "key": "...", "version_id": optional}, '
                f'"expected": optional {{"classes", "train", "valid", "test"}}}}; got: {error}'
            ) from error
        return DatasetRequest(
            bucket=manual.dataset.bucket,
            key=manual.dataset.key,
            version_id=real_version_id(manual.dataset.version_id),
            trigger="manual",
            expected=expected_layout(settings, manual.expected),
        )
    raise DatasetNotFound(
        "the execution input names no dataset: start the run with an S3 'Object Created' event, "
        '{"trigger": "schedule"} or {"dataset": {"bucket": "...", "key": "..."}}; or ' + _upload_hint(settings)
    )


def dataset_id(bucket: str, key: str, version_id: str | None, etag: str) -> str:
    identity = f"{bucket}/{key}?versionId={version_id or ''}&etag={etag.strip(chr(34))}"
    return hashlib.sha256(identity.encode()).hexdigest()[:12]


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _open_dataset(s3: Any, request: DatasetRequest, settings: Settings) -> S3RangedReader:
    uri = f"s3://{request.bucket}/{request.key}"
    candidates = [request.key]
    # Event keys may arrive URL-encoded (spaces as '+'); try the decoded key before calling the object missing.
    if unquote_plus(request.key) != request.key:
        candidates.append(unquote_plus(request.key))
    for key in candidates:
        try:
            return S3RangedReader.open(s3, request.bucket, key, request.version_id)
        except ClientError as error:
            if _error_code(error) in _DENIED_CODES:
                raise DatasetNotFound(
                    f"{uri} cannot be read by the pipeline (access denied): it reads datasets under "
                    f"s3://{settings.bucket}/{settings.incoming_prefix}; " + _upload_hint(settings)
                ) from error
            if _error_code(error) not in _MISSING_CODES:
                raise
    version = f" (version {request.version_id})" if request.version_id else ""
    raise DatasetNotFound(f"{uri}{version} does not exist; " + _upload_hint(settings))


@tracer.capture_method
def inspect_object(reader: S3RangedReader, expected: ExpectedLayout, limits: SafetyLimits) -> DatasetLayout:
    target = reader.target
    uri = f"s3://{target.bucket}/{target.key}"
    try:
        directory = read_central_directory(reader, target.size, limits=limits)
        return inspect_dataset(directory.entries, expected, limits)
    except DatasetInvalid as error:
        raise DatasetInvalid(f"{uri} is not a valid dataset: {error}") from error
    except ClientError as error:
        if _error_code(error) in _CHANGED_CODES | _MISSING_CODES:
            raise DatasetNotFound(
                f"{uri} was replaced or deleted while it was being validated; the new upload starts its own run"
            ) from error
        raise


@tracer.capture_method
def publish_validated_copy(
    s3: Any, reader: S3RangedReader, layout: DatasetLayout, settings: Settings, ds_id: str
) -> tuple[str, str]:
    target = reader.target
    folder = f"{settings.validated_prefix}{ds_id}/"
    source: dict[str, str] = {"Bucket": target.bucket, "Key": target.key}
    if target.version_id:
        source["VersionId"] = target.version_id
    # Managed copy: server-side (no byte passes through the function), multipart and parallel above the threshold.
    s3.copy(
        source,
        settings.bucket,
        f"{folder}dataset.zip",
        ExtraArgs={"CopySourceIfMatch": target.etag},
        Config=_COPY_CONFIG,
    )
    classes_document = {
        "classes": list(layout.classes),
        "counts": layout.counts,
        "root": layout.root,
        "source": {"bucket": target.bucket, "key": target.key, "version_id": target.version_id, "etag": target.etag},
    }
    s3.put_object(
        Bucket=settings.bucket,
        Key=f"{folder}classes.json",
        Body=json.dumps(classes_document, indent=1).encode(),
        ContentType="application/json",
    )
    return f"s3://{settings.bucket}/{folder}dataset.zip", f"s3://{settings.bucket}/{folder}classes.json"


@tracer.capture_method
def validate_dataset(
    event: dict[str, Any],
    execution_start_time: datetime,
    s3: Any,
    settings: Settings,
    limits: SafetyLimits | None = None,
) -> dict[str, Any]:
    request = resolve_request(event, s3, settings)
    logger.append_keys(dataset=f"s3://{request.bucket}/{request.key}", trigger=request.trigger)
    reader = _open_dataset(s3, request, settings)
    layout = inspect_object(reader, request.expected, limits or SafetyLimits())
    target = reader.target
    ds_id = dataset_id(target.bucket, target.key, target.version_id, target.etag)
    try:
        validated_uri, classes_uri = publish_validated_copy(s3, reader, layout, settings, ds_id)
    except ClientError as error:
        if _error_code(error) in _CHANGED_CODES | _MISSING_CODES:
            raise DatasetNotFound(
                f"s3://{target.bucket}/{target.key} was replaced or deleted while it was being copied; "
                "the new upload starts its own run"
            ) from error
        raise
    return {
        "bucket": target.bucket,
        "key": target.key,
        "version_id": target.version_id,
        "etag": target.etag,
        "size": target.size,
        "dataset_id": ds_id,
        "run_id": names.run_id(execution_start_time, ds_id),
        "trigger": request.trigger,
        "validated_uri": validated_uri,
        "classes_uri": classes_uri,
        "class_count": len(layout.classes),
        "counts": {split: layout.counts[split] for split in SPLITS},
        "root": layout.root,
        "ignored": {
            "count": layout.ignored_count,
            "examples": list(layout.ignored_examples),
            "directory_entries": layout.directory_entries,
        },
        "reads": {"requests": reader.stats.requests, "bytes": reader.stats.bytes_fetched},
    }


@logger.inject_lambda_context(correlation_id_path="execution_name", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state_input = ValidateDatasetInput.model_validate(event)
    try:
        result = validate_dataset(
            state_input.event, state_input.execution_start_time, get_client("s3"), load_settings()
        )
    except (DatasetInvalid, DatasetNotFound) as error:
        metrics.add_metric(name="DatasetsRejected", unit=MetricUnit.Count, value=1)
        logger.warning("dataset rejected", extra={"error": type(error).__name__, "reason": str(error)})
        raise
    metrics.add_metric(name="DatasetsValidated", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="ImagesValidated", unit=MetricUnit.Count, value=sum(result["counts"].values()))
    metrics.add_metric(name="CentralDirectoryBytesFetched", unit=MetricUnit.Bytes, value=result["reads"]["bytes"])
    logger.info("dataset validated", extra={"dataset": result})
    return result
