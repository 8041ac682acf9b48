"""The training code as the SageMaker framework containers expect it: ``sourcedir.tar.gz`` in S3.

The archive is byte-for-byte reproducible (sorted entries, zeroed times and owners, gzip without a timestamp),
so its SHA-256 names it: the same code is uploaded once and every job of every run that uses it points at the
same object. Deploying the stack is enough; nobody uploads code by hand.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

BUNDLE_NAME = "sourcedir.tar.gz"
_SKIPPED_DIRS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class CodeBundle:
    archive: bytes
    sha256: str

    def key(self, code_prefix: str) -> str:
        # A short prefix of the hash keeps keys readable; 16 hex digits leave collisions out of reach.
        return f"{code_prefix}{self.sha256[:16]}/{BUNDLE_NAME}"


def _bundled_files(source_dir: Path) -> list[Path]:
    files = []
    for path in source_dir.rglob("*"):
        relative = path.relative_to(source_dir)
        if any(part in _SKIPPED_DIRS or part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and not path.name.endswith(_SKIPPED_SUFFIXES):
            files.append(path)
    return sorted(files, key=lambda p: p.relative_to(source_dir).as_posix())


def build_bundle(source_dir: Path) -> CodeBundle:
    """A reproducible tar.gz of ``source_dir`` (caches and hidden files left out)."""
    files = _bundled_files(source_dir)
    if not files:
        raise FileNotFoundError(f"no training code in {source_dir}; set TRAINING_CODE_DIR to the training_code folder")
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in files:
            info = tarfile.TarInfo(path.relative_to(source_dir).as_posix())
            data = path.read_bytes()
            info.size = len(data)
            info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(data))
    archive_bytes = gzip.compress(tar_bytes.getvalue(), compresslevel=9, mtime=0)
    return CodeBundle(archive=archive_bytes, sha256=hashlib.sha256(archive_bytes).hexdigest())


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return False
        raise
    return True


def ensure_uploaded(s3: Any, bucket: str, code_prefix: str, source_dir: Path) -> str:
    """The S3 URI of the bundle of ``source_dir``, uploading it only when that content is not there yet."""
    bundle = build_bundle(source_dir)
    key = bundle.key(code_prefix)
    if not _exists(s3, bucket, key):
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=bundle.archive,
            ContentType="application/gzip",
            Metadata={"sha256": bundle.sha256},
        )
    return f"s3://{bucket}/{key}"
