"""The pinned pretrained weights every tuning trial and the training job start from, checked before any job starts.

torchvision names its weights files after the first hex digits of their SHA-256 (``resnet18-f37072fd.pth``); the
jobs verify the file against that prefix (training_code/dog_model.py, which keeps its own copy of the pattern: the
training code cannot import this package) and ``make stage-weights`` (offline/stage_weights.py) stages it.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from botocore.exceptions import ClientError

from pipeline.common.config import Settings
from pipeline.common.errors import PretrainedWeightsMissing
from pipeline.common.sagemaker_gateway import error_code
from pipeline.common.sagemaker_requests import pretrained_weights_uri, uses_pretrained_weights

# torchvision's file names end in the first hex digits of the file's SHA-256 (training_code/dog_model.py reads them).
PINNED_WEIGHTS_NAME = re.compile(r"^(?P<stem>.+)-(?P<sha256>[0-9a-f]{8,64})\.pth$")
STAGE_COMMAND = "make stage-weights STACK=<stack name>"


def check_pretrained_weights(settings: Settings, s3: Any) -> None:
    """PretrainedWeightsMissing unless the pinned weights every job starts from are in the bucket.

    Checked before anything is created: without it each trial would start, pull its image and fail on its missing
    channel. The key's file name must pin the file's SHA-256 (the jobs verify the content against it); an object
    staged with a SHA-256 checksum (as ``make stage-weights`` does) is held to that prefix here too.
    """
    if not uses_pretrained_weights(settings):
        return
    uri = pretrained_weights_uri(settings)
    pinned = PINNED_WEIGHTS_NAME.match(settings.pretrained_weights_key.rsplit("/", 1)[-1])
    if pinned is None:
        raise PretrainedWeightsMissing(
            f"PretrainedWeightsKey {settings.pretrained_weights_key!r} does not pin the weights: its file name must "
            "end in -<first hex digits of the file's SHA-256>.pth, as torchvision's resnet18-f37072fd.pth does"
        )
    try:
        head = s3.head_object(Bucket=settings.bucket, Key=settings.pretrained_weights_key, ChecksumMode="ENABLED")
    except ClientError as error:
        if error_code(error) not in ("404", "NoSuchKey", "NotFound"):
            raise
        raise PretrainedWeightsMissing(
            f"{uri} does not exist: every tuning trial and the training job start from these pinned ImageNet "
            f"weights (PretrainedWeightsKey), and nothing was started without them. Stage them once with "
            f'`{STAGE_COMMAND}` from the repository (docs/deploy.md, "Pretrained weights"), then run again'
        ) from error
    checksum = head.get("ChecksumSHA256")
    if checksum and "-" not in checksum and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
        sha256 = base64.b64decode(checksum).hex()
        if not sha256.startswith(pinned.group("sha256")):
            raise PretrainedWeightsMissing(
                f"{uri} has SHA-256 {sha256}, not the {pinned.group('sha256')}... its name pins: it is not the "
                f"file it is named after. Stage it again with `{STAGE_COMMAND}`"
            )
