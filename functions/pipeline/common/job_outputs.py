"""Files the training code writes to SM_OUTPUT_DATA_DIR, read back out of the job's ``output.tar.gz``.

Each file has one reader: CheckRules reads ``rule_report.json`` and ``profiler_report.json``, EvaluateModel
``evaluation.json``.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import PurePosixPath
from typing import Any

from botocore.exceptions import ClientError


def split_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def job_artifact_uri(description: dict[str, Any], artifact: str) -> str:
    output_path = description["OutputDataConfig"]["S3OutputPath"].rstrip("/")
    return f"{output_path}/{description['TrainingJobName']}/{artifact}"


def output_archive_uri(description: dict[str, Any]) -> str:
    return job_artifact_uri(description, "output/output.tar.gz")


def read_output_files(s3: Any, archive_uri: str, names: tuple[str, ...]) -> dict[str, dict[str, Any]] | None:
    """The named JSON files at the archive's top level (those present); None when the archive does not exist."""
    bucket, key = split_s3_uri(archive_uri)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            return None
        raise
    found: dict[str, dict[str, Any]] = {}
    # Streaming mode reads the archive once, front to back, without holding it in memory.
    with tarfile.open(fileobj=body, mode="r|gz") as archive:
        for member in archive:
            path = PurePosixPath(member.name)
            if member.isfile() and path.name in names and path.parent.name in ("", "."):
                extracted = archive.extractfile(member)
                if extracted is not None:
                    found[path.name] = json.loads(extracted.read())
    return found
