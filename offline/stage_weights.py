"""Stage the pinned pretrained weights into a deployed stack's bucket: the one step after the first `sam deploy`.

    make stage-weights STACK=dog-breed-retraining            # python -m offline.stage_weights --stack ...
    make stage-weights STACK=my-stack ARGS="--file ~/resnet18-f37072fd.pth"

Every tuning trial and the training job start from the file at ``s3://<DataBucketName>/<PretrainedWeightsKey>`` (the
stack's output and parameter; default ``weights/resnet18-f37072fd.pth``), given to them as their ``pretrained``
input channel, so no job downloads anything at train time and jobs under network isolation train the same way.
StartTuning fails a run that finds the object missing, naming this command. The file comes from ``--file``, else the
torch hub cache (``~/.cache/torch/hub/checkpoints/``, where torchvision keeps it), else torchvision's download URL
(``https://download.pytorch.org/models/<file name>``). Its SHA-256 must start with the prefix its name pins
(torchvision's convention, ``resnet18-<first 8 hex digits>.pth``): a file that does not is refused before anything is
uploaded. The upload records the SHA-256 as the object's checksum (StartTuning holds the object to the name's prefix
with it); running the command again with the same file changes nothing.

It lives in the ``offline`` package because that is the project's installed tooling (the dev venv; nothing of it
goes into a Lambda bundle or a training job), and because the offline run stages its own weights file into moto's
bucket with the same ``stage_weights_file``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from offline.initial_weights import torch_hub_dir
from pipeline.common.pretrained_weights import PINNED_WEIGHTS_NAME

DEFAULT_KEY = "weights/resnet18-f37072fd.pth"  # template.yaml's PretrainedWeightsKey default
TORCHVISION_DOWNLOADS = "https://download.pytorch.org/models/"
BUCKET_OUTPUT = "DataBucketName"
KEY_PARAMETER = "PretrainedWeightsKey"
DOWNLOAD_TIMEOUT_SECONDS = 60.0


class StagingError(Exception):
    """The weights cannot be staged: nothing was uploaded."""


@dataclass(frozen=True)
class Staged:
    uri: str
    sha256: str
    uploaded: bool  # False: the object was already there with this SHA-256


def pinned_prefix(name: str) -> str:
    match = PINNED_WEIGHTS_NAME.match(name)
    if match is None:
        raise StagingError(
            f"{name} does not pin its content: the file name must end in -<first hex digits of its SHA-256>.pth, "
            "as torchvision's resnet18-f37072fd.pth does (the jobs verify the file against it)"
        )
    return match.group("sha256")


def file_sha256(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def verify(path: Path, name: str) -> str:
    """The file's SHA-256, which must start with what ``name`` (the key's file name) pins."""
    prefix = pinned_prefix(name)
    sha256 = file_sha256(path)
    if not sha256.startswith(prefix):
        raise StagingError(f"{path} has SHA-256 {sha256}, not the {prefix}... that {name} pins: not staged")
    return sha256


def stack_location(cloudformation: Any, stack: str) -> tuple[str, str]:
    """The stack's data bucket (output DataBucketName) and weights key (parameter PretrainedWeightsKey)."""
    (description,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue") for p in description.get("Parameters", [])}
    if BUCKET_OUTPUT not in outputs:
        raise StagingError(f"stack {stack} has no {BUCKET_OUTPUT} output: is it this pipeline's stack?")
    return outputs[BUCKET_OUTPUT], parameters.get(KEY_PARAMETER) or DEFAULT_KEY


def download(url: str, target: Path, timeout: float = DOWNLOAD_TIMEOUT_SECONDS) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=timeout) as response, target.open("wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)
    return target


@contextmanager
def weights_source(name: str, file: Path | None, url: str | None) -> Iterator[Path]:
    """``--file``, else the torch hub cache's copy of ``name``, else a download (``--url`` or torchvision's)."""
    if file is not None:
        if not file.expanduser().is_file():
            raise StagingError(f"--file {file}: no such file")
        yield file.expanduser()
        return
    cached = torch_hub_dir() / "checkpoints" / name
    if url is None and cached.is_file():
        print(f"using the torch hub cache's {cached}")
        yield cached
        return
    source = url or TORCHVISION_DOWNLOADS + name
    with tempfile.TemporaryDirectory(prefix="stage-weights-") as folder:
        print(f"downloading {source}")
        try:
            downloaded = download(source, Path(folder) / name)
        except OSError as error:  # URLError and timeouts are OSErrors
            raise StagingError(f"could not download {source} ({error}); pass --file with the file instead") from error
        yield downloaded


def _recorded_sha256(s3: Any, bucket: str, key: str) -> str | None:
    """The SHA-256 checksum S3 keeps for the object, None if there is no such object or no full-object checksum."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as error:
        if str(error.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    checksum = head.get("ChecksumSHA256")
    if not checksum or "-" in checksum or head.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
        return None
    return base64.b64decode(checksum).hex()


def stage_weights_file(s3: Any, bucket: str, key: str, path: Path) -> Staged:
    """Verify ``path`` against the prefix the key's file name pins, then upload it in one PUT with its SHA-256."""
    sha256 = verify(path, key.rsplit("/", 1)[-1])
    uri = f"s3://{bucket}/{key}"
    if _recorded_sha256(s3, bucket, key) == sha256:
        return Staged(uri, sha256, uploaded=False)
    with path.open("rb") as body:
        # One PUT (S3 takes up to 5 GB so; the file is 45 MB): the checksum is then the whole file's SHA-256.
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode(),
            ContentType="application/octet-stream",
        )
    return Staged(uri, sha256, uploaded=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make stage-weights", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--stack", help="the deployed stack (its DataBucketName output and PretrainedWeightsKey)")
    parser.add_argument("--region", help="the stack's region (default: the AWS CLI's)")
    parser.add_argument("--bucket", help="the data bucket, instead of reading it from --stack")
    parser.add_argument("--key", help=f"the weights key, instead of the stack's (with --bucket: {DEFAULT_KEY})")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--file", type=Path, help="a local copy of the file (default: torch hub cache, or download)")
    source.add_argument("--url", help=f"where to download it (default: {TORCHVISION_DOWNLOADS}<file name>)")
    args = parser.parse_args(argv)
    if not args.stack and not args.bucket:
        parser.error("give --stack (or --bucket)")
    return args


def main(argv: list[str] | None = None) -> int:
    import boto3

    args = parse_args(sys.argv[1:] if argv is None else argv)
    session = boto3.session.Session(region_name=args.region)
    if args.bucket:
        bucket, key = args.bucket, args.key or DEFAULT_KEY
    else:
        bucket, key = stack_location(session.client("cloudformation"), args.stack)
        key = args.key or key
    try:
        with weights_source(key.rsplit("/", 1)[-1], args.file, args.url) as path:
            staged = stage_weights_file(session.client("s3"), bucket, key, path)
    except StagingError as error:
        print(f"stage-weights: {error}", file=sys.stderr)
        return 1
    state = "staged" if staged.uploaded else "already staged"
    print(f"{state}: {staged.uri} (SHA-256 {staged.sha256}); every job gets it as its pretrained channel")
    return 0


if __name__ == "__main__":
    sys.exit(main())
