"""The S3 ranged reader against moto: exact ranges, request and byte counts, pinning to one object version."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from validate_dataset_zips import dataset_members, dataset_zip

from pipeline.common.s3_ranged_reader import S3RangedReader

BUCKET = "reader-test"
KEY = "incoming/data.bin"
CONTENT = bytes(range(256)) * 40  # 10,240 bytes, every offset distinguishable


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key=KEY, Body=CONTENT)
        yield client


def test_open_heads_the_object_and_counts_it(s3: Any) -> None:
    reader = S3RangedReader.open(s3, BUCKET, KEY)

    assert reader.target.size == len(CONTENT)
    assert reader.target.etag.strip('"')
    assert reader.target.version_id is None
    assert (reader.stats.requests, reader.stats.bytes_fetched) == (1, 0)


def test_reads_return_exact_ranges_one_request_each(s3: Any) -> None:
    reader = S3RangedReader.open(s3, BUCKET, KEY)

    reader.seek(1000)
    first = reader.read(300)
    reader.seek(-24, io.SEEK_END)
    last = reader.read(100)  # clipped at the end of the object

    assert first == CONTENT[1000:1300]
    assert last == CONTENT[-24:]
    assert reader.tell() == len(CONTENT)
    assert reader.read(10) == b""  # at the end: no request
    assert (reader.stats.requests, reader.stats.bytes_fetched) == (3, 324)


def test_seek_from_current_position_and_readinto(s3: Any) -> None:
    reader = S3RangedReader.open(s3, BUCKET, KEY)
    reader.seek(10)
    reader.seek(5, io.SEEK_CUR)
    buffer = bytearray(8)

    assert reader.readinto(buffer) == 8
    assert bytes(buffer) == CONTENT[15:23]
    with pytest.raises(ValueError, match="negative seek"):
        reader.seek(-1)


def test_zipfile_can_use_the_reader_as_a_file(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="incoming/ds.zip", Body=dataset_zip())

    with zipfile.ZipFile(S3RangedReader.open(s3, BUCKET, "incoming/ds.zip")) as archive:
        names = [name for name in archive.namelist() if not name.endswith("/")]

    assert names == list(dataset_members())


def test_versioned_object_overwritten_after_open_still_reads_the_opened_version(s3: Any) -> None:
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    first_version = s3.put_object(Bucket=BUCKET, Key=KEY, Body=CONTENT)["VersionId"]
    reader = S3RangedReader.open(s3, BUCKET, KEY)

    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"x" * len(CONTENT))

    assert reader.target.version_id == first_version
    assert reader.read(16) == CONTENT[:16]


def test_unversioned_object_overwritten_after_open_fails_instead_of_mixing_objects(s3: Any) -> None:
    reader = S3RangedReader.open(s3, BUCKET, KEY)

    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"x" * len(CONTENT))

    with pytest.raises(ClientError) as raised:
        reader.read(16)
    assert raised.value.response["Error"]["Code"] in {"PreconditionFailed", "412"}


def test_missing_object_raises_not_found(s3: Any) -> None:
    with pytest.raises(ClientError) as raised:
        S3RangedReader.open(s3, BUCKET, "incoming/absent.zip")

    assert raised.value.response["Error"]["Code"] in {"404", "NoSuchKey"}
