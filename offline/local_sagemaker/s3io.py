"""Moving job inputs and outputs between (moto) S3 and the local job folders, as SageMaker does."""

from __future__ import annotations

import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config


class S3InputMissing(Exception):
    """A job input named in the request is not in S3."""


def split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{uri!r} is not an s3://bucket/key URI")
    return parsed.netloc, parsed.path.lstrip("/")


def join_s3_uri(prefix: str, *parts: str) -> str:
    return "/".join([prefix.rstrip("/"), *(part.strip("/") for part in parts)])


# One request per object, whatever its size (S3 takes up to 5 GB in one PUT). boto3 splits transfers above 8 MB into
# ranged GETs or multipart parts, and moto 5.2.5 reads the whole object for each ranged GET: a full-count dataset's
# 571 MB zip took 30 s to download as 71 ranges, against 0.9 s in one GET. On upload, moto completes a multipart
# upload with an internal PutObject that sends its own "Object Created" event besides the CompleteMultipartUpload
# one, which would start a second execution for one upload.
WHOLE_OBJECT_TRANSFERS = TransferConfig(multipart_threshold=5 * 1024**3)


def download_prefix(s3: Any, uri: str, destination: Path) -> list[Path]:
    """Everything under an S3Prefix, as a File-mode channel gets it: an exact key lands under its base name."""
    bucket, prefix = split_s3_uri(uri)
    files: list[Path] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.endswith("/"):
                continue
            relative = key[len(prefix) :].lstrip("/") or key.rsplit("/", 1)[-1]
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(target), Config=WHOLE_OBJECT_TRANSFERS)
            files.append(target)
    if not files:
        raise S3InputMissing(f'No S3 objects found under S3 URL "{uri}"')
    return files


def download_file(s3: Any, uri: str, destination: Path) -> Path:
    bucket, key = split_s3_uri(uri)
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        s3.download_file(bucket, key, str(destination), Config=WHOLE_OBJECT_TRANSFERS)
    except Exception as error:
        raise S3InputMissing(f"could not download {uri}: {error}") from error
    return destination


def extract_tarball(archive: Path, destination: Path) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter="data")


class OutputClash(Exception):
    """Two hosts of a multi-instance job wrote the same path into the folder SageMaker aggregates."""


def tar_folders(folders: Mapping[str, Path], archive: Path) -> Path:
    """A gzipped tar of the folders' merged contents at the archive root (how SageMaker packs model.tar.gz and
    output.tar.gz of every host of a job, ``folders`` keyed by host). SageMaker's contract is that the hosts'
    names do not clash; one that does fails the job instead of letting one host's file silently win.

    Stored, not deflated (gzip level 0, still a valid .tar.gz): float weights shrink by ~7% at any level, and
    deflating ResNet18's 45 MB took 2.2 s a job here against 0.2 s."""
    writers: dict[str, str] = {}
    for host, folder in folders.items():
        for path in sorted(folder.rglob("*")):
            name = path.relative_to(folder).as_posix()
            if path.is_dir():
                continue
            if name in writers:
                raise OutputClash(
                    f"hosts {writers[name]} and {host} both wrote {folder.name}/{name}; SageMaker merges every "
                    "host's folder into one archive, so only one rank (rank 0) may write each file"
                )
            writers[name] = host
    with tarfile.open(archive, "w:gz", compresslevel=0) as tar:
        for folder in folders.values():
            for path in sorted(folder.iterdir()):
                tar.add(path, arcname=path.name)
    return archive


def upload_file(s3: Any, path: Path, uri: str) -> str:
    bucket, key = split_s3_uri(uri)
    s3.upload_file(str(path), bucket, key, Config=WHOLE_OBJECT_TRANSFERS)
    return uri


def upload_tree(s3: Any, folder: Path, uri_prefix: str) -> int:
    count = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            upload_file(s3, path, join_s3_uri(uri_prefix, path.relative_to(folder).as_posix()))
            count += 1
    return count


# botocore sends upload bodies aws-chunked with a trailing checksum unless an operation requires one; moto 5.2.5
# decodes such a body in time that grows faster than its size (a 240 MB upload: 50 s, against 2 s sent plain; the
# 571 MB of a full-count dataset did not arrive in 5 minutes). The offline run's uploads go to moto only.
MOTO_FRIENDLY_UPLOADS = Config(request_checksum_calculation="when_required")


def worker_client(service: str, region: str) -> Any:
    """A client for a worker thread: its own session (the shared default one is not thread-safe)."""
    return boto3.session.Session().client(  # type: ignore[call-overload]
        service, region_name=region, config=MOTO_FRIENDLY_UPLOADS
    )
