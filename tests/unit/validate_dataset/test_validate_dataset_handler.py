"""ValidateDataset's handler against moto S3, for each way a run starts and each way it ends."""

from __future__ import annotations

import copy
import io
import json
import logging
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from validate_dataset_zips import BUCKET, CLASSES, COUNTS, dataset_zip

from pipeline import validate_dataset
from pipeline.common.config import load_settings
from pipeline.common.errors import DatasetInvalid, DatasetNotFound
from pipeline.common.observability import logger
from pipeline.common.s3_ranged_reader import S3RangedReader
from pipeline.common.zip_inspection import TAIL_BYTES

EVENTS = Path(__file__).resolve().parents[2] / "events"
EXECUTION_NAME = "17793124-05d4-b198-2fde-7ededc63b103"
START = "2026-11-25T01:53:43.123Z"
DATASET_KEY = "incoming/dogImages.zip"


def load_event(case: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"validate_dataset_{case}.json").read_text())


def state_input(execution_input: dict[str, Any]) -> dict[str, Any]:
    """What the ASL hands the task: the execution input (plus the Pass state's settings), its name and start."""
    return {
        "event": {**execution_input, "settings": {"poll_seconds": 0}},
        "execution_name": EXECUTION_NAME,
        "execution_start_time": START,
    }


@pytest.fixture
def s3(pipeline_env: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def keys_under(s3: Any, prefix: str) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]


def read_object(s3: Any, uri: str) -> bytes:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


# Images of 20 kB make the archive (about 250 kB) several times the 64 KiB tail the validator reads.
BIG_IMAGES = 20_000


def test_s3_event_is_validated_from_the_tail_only_and_published(s3: Any, lambda_context: Any) -> None:
    # GIVEN a dataset zip uploaded under incoming/ and the Object Created event S3 sends for it
    archive = dataset_zip(image_bytes=BIG_IMAGES)
    s3.put_object(Bucket=BUCKET, Key=DATASET_KEY, Body=archive)

    # WHEN ValidateDataset runs on it
    result = validate_dataset.lambda_handler(state_input(load_event("s3_object_created")), lambda_context)

    # THEN the counts come from at most 64 KiB of the archive, and the validated copy and class list exist
    assert result["trigger"] == "s3"
    assert (result["bucket"], result["key"], result["version_id"]) == (BUCKET, DATASET_KEY, None)
    assert result["size"] == len(archive)
    assert result["counts"] == COUNTS
    assert result["class_count"] == len(CLASSES)
    assert result["reads"]["requests"] <= 4
    assert result["reads"]["bytes"] <= TAIL_BYTES < len(archive) / 3
    assert result["run_id"] == f"261125-015343-{result['dataset_id'][:6]}"
    assert result["validated_uri"] == f"s3://{BUCKET}/validated/{result['dataset_id']}/dataset.zip"
    assert read_object(s3, result["validated_uri"]) == archive
    assert json.loads(read_object(s3, result["classes_uri"]))["classes"] == list(CLASSES)
    assert len(json.dumps(result)) < 2048


def test_large_central_directory_takes_one_more_ranged_read(s3: Any, lambda_context: Any) -> None:
    # GIVEN a dataset whose central directory (about 150 kB) does not fit in the 64 KiB tail
    counts = {"train": 1000, "valid": 200, "test": 200}
    classes = [f"{index:03d}.Breed_with_a_fairly_long_name_{index}" for index in range(1, 21)]
    archive = dataset_zip(classes=classes, counts=counts, image_bytes=2000)
    s3.put_object(Bucket=BUCKET, Key="incoming/big.zip", Body=archive)
    execution_input = {
        "dataset": {"bucket": BUCKET, "key": "incoming/big.zip"},
        "expected": {"classes": 20, **counts},
    }

    result = validate_dataset.lambda_handler(state_input(execution_input), lambda_context)

    # THEN HeadObject, the tail and the rest of the directory: three requests, a tenth of the archive
    assert result["reads"]["requests"] == 3
    assert result["reads"]["bytes"] < len(archive) / 10
    assert result["counts"] == counts


def test_versioned_upload_is_pinned_to_the_version_in_the_event(s3: Any, lambda_context: Any) -> None:
    # GIVEN a versioned bucket, a multipart-style event whose key arrives URL-encoded, and a newer upload
    # of the same key that lands before the run reads it
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    archive = dataset_zip()
    key = "incoming/dog images 2026.zip"
    version = s3.put_object(Bucket=BUCKET, Key=key, Body=archive)["VersionId"]
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"a newer upload that is not a zip")
    event = load_event("s3_multipart_upload")
    event["detail"]["object"]["version-id"] = version

    result = validate_dataset.lambda_handler(state_input(event), lambda_context)

    # THEN the version named by the event is validated and copied, not the newer object
    assert (result["key"], result["version_id"]) == (key, version)
    assert read_object(s3, result["validated_uri"]) == archive


@pytest.mark.parametrize("case", ["schedule", "scheduled_event"])
def test_schedule_takes_the_zip_under_incoming(s3: Any, lambda_context: Any, case: str) -> None:
    s3.put_object(Bucket=BUCKET, Key=DATASET_KEY, Body=dataset_zip())
    s3.put_object(Bucket=BUCKET, Key="incoming/readme.txt", Body=b"uploaded after the zip")
    s3.put_object(Bucket=BUCKET, Key="elsewhere/other.zip", Body=b"not under incoming/")

    result = validate_dataset.lambda_handler(state_input(load_event(case)), lambda_context)

    assert (result["trigger"], result["key"]) == ("schedule", DATASET_KEY)
    assert result["counts"] == COUNTS


class _FakeListing:
    """list_objects_v2 pages with chosen LastModified times; moto stamps uploads too close together to order."""

    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = pages
        self.calls: list[dict[str, Any]] = []

    def get_paginator(self, operation: str) -> _FakeListing:
        assert operation == "list_objects_v2"
        return self

    def paginate(self, **params: Any) -> list[dict[str, Any]]:
        self.calls.append(params)
        return self.pages


def test_schedule_picks_the_newest_zip_across_pages(pipeline_env: None) -> None:
    def stamp(day: int) -> datetime:
        return datetime(2026, 11, day, tzinfo=UTC)

    listing = _FakeListing(
        [
            {
                "Contents": [
                    {"Key": "incoming/a.zip", "LastModified": stamp(1)},
                    {"Key": "incoming/n.txt", "LastModified": stamp(9)},
                ]
            },
            {
                "Contents": [
                    {"Key": "incoming/c.ZIP", "LastModified": stamp(5)},
                    {"Key": "incoming/b.zip", "LastModified": stamp(3)},
                ]
            },
            {},
        ]
    )

    assert validate_dataset.newest_incoming_zip(listing, load_settings()) == (BUCKET, "incoming/c.ZIP")
    assert listing.calls == [{"Bucket": BUCKET, "Prefix": "incoming/"}]


def test_manual_input_with_expected_counts_overrides_the_settings(s3: Any, lambda_context: Any) -> None:
    # GIVEN a two-class dataset while the settings expect three classes, and a manual input saying so
    manual = load_event("manual")
    counts = {split: manual["expected"][split] for split in COUNTS}
    archive = dataset_zip(classes=CLASSES[:2], counts=counts)
    s3.put_object(Bucket=BUCKET, Key=manual["dataset"]["key"], Body=archive)

    result = validate_dataset.lambda_handler(state_input(manual), lambda_context)

    assert result["trigger"] == "manual"
    assert result["counts"] == counts
    assert result["class_count"] == 2


def test_manual_input_with_a_version_id_reads_that_version(s3: Any, lambda_context: Any) -> None:
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    old = s3.put_object(Bucket=BUCKET, Key=DATASET_KEY, Body=dataset_zip())["VersionId"]
    s3.put_object(Bucket=BUCKET, Key=DATASET_KEY, Body=dataset_zip(counts={"train": 1, "valid": 1, "test": 1}))

    execution_input = {"dataset": {"bucket": BUCKET, "key": DATASET_KEY, "version_id": old}}
    result = validate_dataset.lambda_handler(state_input(execution_input), lambda_context)

    assert result["version_id"] == old
    assert result["counts"] == COUNTS


def test_same_object_gives_the_same_dataset_id_and_a_new_upload_another(s3: Any, lambda_context: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key=DATASET_KEY, Body=dataset_zip())
    event = state_input(load_event("s3_object_created"))
    first = validate_dataset.lambda_handler(copy.deepcopy(event), lambda_context)
    again = validate_dataset.lambda_handler(copy.deepcopy(event), lambda_context)
    s3.put_object(Bucket=BUCKET, Key=DATASET_KEY, Body=dataset_zip(image_bytes=9))
    changed = validate_dataset.lambda_handler(copy.deepcopy(event), lambda_context)

    assert first["dataset_id"] == again["dataset_id"] != changed["dataset_id"]


# --- DatasetNotFound and DatasetInvalid ---


def test_missing_object_tells_the_user_where_to_upload(s3: Any, lambda_context: Any) -> None:
    with pytest.raises(DatasetNotFound) as raised:
        validate_dataset.lambda_handler(state_input(load_event("s3_object_created")), lambda_context)

    message = str(raised.value)
    assert f"s3://{BUCKET}/{DATASET_KEY} does not exist" in message
    assert f"to s3://{BUCKET}/incoming/<name>.zip" in message


def test_object_the_pipeline_may_not_read_says_where_datasets_go(
    s3: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a manual input naming an object outside incoming/, which the function's role cannot read on AWS
    def denied(*_: Any) -> S3RangedReader:
        raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject")

    monkeypatch.setattr(S3RangedReader, "open", denied)
    execution_input = {"dataset": {"bucket": BUCKET, "key": "private/dogImages.zip"}}

    with pytest.raises(DatasetNotFound, match=f"access denied\\): it reads datasets under s3://{BUCKET}/incoming/"):
        validate_dataset.lambda_handler(state_input(execution_input), lambda_context)


def test_schedule_without_any_zip_under_incoming_is_not_found(s3: Any, lambda_context: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="incoming/notes.txt", Body=b"no zip here")

    with pytest.raises(DatasetNotFound, match=f"found no .zip under s3://{BUCKET}/incoming/"):
        validate_dataset.lambda_handler(state_input(load_event("schedule")), lambda_context)


@pytest.mark.parametrize(
    ("execution_input", "message"),
    [
        ({"hello": "world"}, "names no dataset"),
        ({"dataset": {"bucket": BUCKET}}, "a manual run needs"),
        ({"dataset": {"bucket": BUCKET, "key": "k"}, "expected": {"classes": "many"}}, "a manual run needs"),
    ],
)
def test_input_naming_no_dataset_is_not_found(
    s3: Any, lambda_context: Any, execution_input: dict[str, Any], message: str
) -> None:
    with pytest.raises(DatasetNotFound, match=message):
        validate_dataset.lambda_handler(state_input(execution_input), lambda_context)


def test_object_replaced_while_being_read_is_not_mixed_with_its_successor(
    s3: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an unversioned bucket where a new upload lands between HeadObject and the first ranged GET
    s3.put_object(Bucket=BUCKET, Key=DATASET_KEY, Body=dataset_zip())
    open_object = S3RangedReader.open

    def open_then_overwrite(*args: Any) -> S3RangedReader:
        reader = open_object(*args)
        s3.put_object(Bucket=BUCKET, Key=DATASET_KEY, Body=dataset_zip(image_bytes=9))
        return reader

    monkeypatch.setattr(S3RangedReader, "open", open_then_overwrite)

    # THEN the run stops (the new upload has its own run) instead of reading bytes of two objects
    with pytest.raises(DatasetNotFound, match="was replaced or deleted while it was being validated"):
        validate_dataset.lambda_handler(state_input(load_event("s3_object_created")), lambda_context)
    assert keys_under(s3, "validated/") == []


def test_invalid_dataset_names_the_object_and_publishes_nothing(s3: Any, lambda_context: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key=DATASET_KEY, Body=dataset_zip(counts={"train": 5, "valid": 3, "test": 3}))

    with pytest.raises(DatasetInvalid) as raised:
        validate_dataset.lambda_handler(state_input(load_event("s3_object_created")), lambda_context)

    assert str(raised.value).startswith(f"s3://{BUCKET}/{DATASET_KEY} is not a valid dataset: ")
    assert "train/ expected 6 images, found 5" in str(raised.value)
    assert keys_under(s3, "validated/") == []


# --- observability ---


def _metrics_documents(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]


def _metric_total(document: dict[str, Any], name: str) -> float:
    value = document[name]
    return float(sum(value)) if isinstance(value, list) else float(value)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The shared Powertools logger's JSON lines (its handler holds the stdout of import time, out of capsys' reach)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    yield buffer
    logger.removeHandler(handler)


def test_logs_carry_the_execution_name_and_metrics_count_images(
    s3: Any, lambda_context: Any, capsys: pytest.CaptureFixture[str], log_lines: io.StringIO
) -> None:
    s3.put_object(Bucket=BUCKET, Key=DATASET_KEY, Body=dataset_zip())

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        validate_dataset.lambda_handler(state_input(load_event("s3_object_created")), lambda_context)

    logs = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    emf = _metrics_documents(capsys.readouterr().out)
    assert logs and all(record["correlation_id"] == EXECUTION_NAME for record in logs)
    assert any(record["message"] == "dataset validated" for record in logs)
    assert _metric_total(emf[-1], "ImagesValidated") == sum(COUNTS.values())
    assert emf[-1]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "DogBreedRetraining"
    assert not [w for w in caught if "metric" in str(w.message).lower()]


def test_rejection_is_counted_as_a_metric(s3: Any, lambda_context: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(DatasetNotFound):
        validate_dataset.lambda_handler(state_input(load_event("s3_object_created")), lambda_context)

    emf = _metrics_documents(capsys.readouterr().out)
    assert _metric_total(emf[-1], "DatasetsRejected") == 1
    assert "ImagesValidated" not in emf[-1]
