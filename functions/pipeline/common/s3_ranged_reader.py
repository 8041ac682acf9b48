"""A seekable, read-only file over one S3 object version, reading with ranged GETs and counting what they cost.

Each ``read(n)`` is one ``GetObject`` with ``Range: bytes=<pos>-<pos+n-1>``, so callers that know which bytes they
need (the zip central directory reader does) fetch exactly those. Every read is pinned to the version seen by
``HeadObject``: by ``VersionId`` on a versioned bucket, otherwise by ``IfMatch`` on the ETag, so an overwrite
while we read fails with ``PreconditionFailed`` instead of mixing bytes of two objects. S3 errors surface as
botocore ``ClientError``; the caller decides what they mean.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class S3ObjectVersion:
    bucket: str
    key: str
    size: int
    etag: str
    version_id: str | None


@dataclass
class ReadStats:
    requests: int = 0
    bytes_fetched: int = 0


def real_version_id(version_id: str | None) -> str | None:
    # Unversioned buckets report the version as the literal "null" (S3 events) or leave it out (HeadObject).
    return version_id if version_id and version_id != "null" else None


def head_object(client: Any, bucket: str, key: str, version_id: str | None, stats: ReadStats) -> S3ObjectVersion:
    params: dict[str, str] = {"Bucket": bucket, "Key": key}
    if real_version_id(version_id):
        params["VersionId"] = str(version_id)
    stats.requests += 1
    response = client.head_object(**params)
    return S3ObjectVersion(
        bucket=bucket,
        key=key,
        size=int(response["ContentLength"]),
        etag=str(response["ETag"]),
        version_id=real_version_id(response.get("VersionId")),
    )


class S3RangedReader(io.RawIOBase):
    """Read-only, seekable view of one S3 object version; ``stats`` counts HeadObject and GET requests and bytes."""

    def __init__(self, client: Any, target: S3ObjectVersion, stats: ReadStats | None = None) -> None:
        super().__init__()
        self._client = client
        self.target = target
        self.stats = stats if stats is not None else ReadStats()
        self._position = 0

    @classmethod
    def open(cls, client: Any, bucket: str, key: str, version_id: str | None = None) -> S3RangedReader:
        stats = ReadStats()
        return cls(client, head_object(client, bucket, key, version_id, stats), stats)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        origins = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.target.size}
        if whence not in origins:
            raise ValueError(f"invalid whence {whence}")
        position = origins[whence] + offset
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        self._position = position
        return position

    def read_range(self, start: int, length: int) -> bytes:
        """Fetch ``length`` bytes from ``start`` (clipped to the object's end) in one GET, without moving."""
        end = min(start + length, self.target.size)
        if length <= 0 or start >= end:
            return b""
        params: dict[str, str] = {
            "Bucket": self.target.bucket,
            "Key": self.target.key,
            "Range": f"bytes={start}-{end - 1}",
        }
        if self.target.version_id:
            params["VersionId"] = self.target.version_id
        else:
            params["IfMatch"] = self.target.etag
        self.stats.requests += 1
        body = self._client.get_object(**params)["Body"]
        try:
            data: bytes = body.read()
        finally:
            body.close()
        self.stats.bytes_fetched += len(data)
        return data

    def read(self, size: int | None = -1) -> bytes:
        wanted = self.target.size - self._position if size is None or size < 0 else size
        data = self.read_range(self._position, wanted)
        self._position += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)
