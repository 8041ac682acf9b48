"""Job inputs and outputs between moto's S3 and the local job folders: whole objects in one request each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from offline.local_sagemaker import s3io

BUCKET = "job-data"
REGION = "us-east-1"
# Above boto3's 8 MB multipart threshold: by default it would move this object as ranged GETs or multipart parts.
LARGE = 20 * 1024**2


@pytest.fixture
def recorded(aws: None) -> tuple[Any, list[tuple[str, dict[str, Any]]]]:
    """An S3 client for a bucket of its own, and the operations it sends with their parameters."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    requests: list[tuple[str, dict[str, Any]]] = []
    s3.meta.events.register(
        "provide-client-params.s3.*", lambda params, model, **_: requests.append((model.name, dict(params)))
    )
    return s3, requests


def test_a_large_channel_object_downloads_in_one_get_and_a_large_output_uploads_in_one_put(
    recorded: tuple[Any, list[tuple[str, dict[str, Any]]]], tmp_path: Path
) -> None:
    # GIVEN a 20 MB dataset zip in S3 (moto reads the whole object for each ranged GET: 71 ranges of a 571 MB zip
    # took 30 s, one GET 0.9 s)
    payload = bytes(range(256)) * (LARGE // 256)
    s3, requests = recorded
    s3.put_object(Bucket=BUCKET, Key="validated/dogs.zip", Body=payload)
    requests.clear()

    # WHEN a job's channel is downloaded and its output uploaded
    (zip_file,) = s3io.download_prefix(s3, f"s3://{BUCKET}/validated/dogs.zip", tmp_path / "training")
    output = tmp_path / "model.tar.gz"
    output.write_bytes(payload)
    s3io.upload_file(s3, output, f"s3://{BUCKET}/output/model.tar.gz")

    # THEN the bytes arrived whole, each in a single request: no Range, no multipart upload
    assert zip_file.read_bytes() == payload
    gets = [params for name, params in requests if name == "GetObject"]
    assert len(gets) == 1 and "Range" not in gets[0]
    assert [name for name, _ in requests if name not in ("ListObjectsV2", "HeadObject")] == ["GetObject", "PutObject"]
    stored = s3.get_object(Bucket=BUCKET, Key="output/model.tar.gz")
    assert stored["Body"].read() == payload
