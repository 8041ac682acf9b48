"""`make stage-weights STACK=...`: the pinned weights into a deployed stack's bucket, verified, with no network here
(a local file, the torch hub cache, or a file:// download; moto for CloudFormation and S3)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import boto3
import pytest

from offline import stage_weights

REGION = "us-east-1"
STACK = "dog-breed-retraining"
BUCKET = "dog-breed-data-test"
# A stack as the template deploys it, reduced to what the command reads: the bucket output and the key parameter.
STACK_TEMPLATE = {
    "Parameters": {"PretrainedWeightsKey": {"Type": "String", "Default": "weights/resnet18-f37072fd.pth"}},
    "Resources": {"DataBucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": BUCKET}}},
    "Outputs": {"DataBucketName": {"Value": {"Ref": "DataBucket"}}},
}


def pinned(folder: Path, body: bytes, stem: str = "resnet18-standin") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}-{hashlib.sha256(body).hexdigest()[:8]}.pth"
    path.write_bytes(body)
    return path


@pytest.fixture
def stack(aws: None) -> None:
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=STACK, TemplateBody=json.dumps(STACK_TEMPLATE)
    )


def _deploy_with_key(key: str) -> None:
    boto3.client("cloudformation", region_name=REGION).update_stack(
        StackName=STACK,
        TemplateBody=json.dumps(STACK_TEMPLATE),
        Parameters=[{"ParameterKey": "PretrainedWeightsKey", "ParameterValue": key}],
    )


def _stored(key: str) -> tuple[bytes, str]:
    s3 = boto3.client("s3", region_name=REGION)
    head = s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read(), base64.b64decode(head["ChecksumSHA256"]).hex()


def test_a_local_file_goes_to_the_stacks_key_with_its_sha256(
    stack: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a stack whose PretrainedWeightsKey names a file pinned by its SHA-256, and that file here
    file = pinned(tmp_path, b"weights of a ResNet18")
    _deploy_with_key(f"weights/{file.name}")

    # WHEN the one command runs
    assert stage_weights.main(["--stack", STACK, "--file", str(file)]) == 0

    # THEN the bucket holds the file at the key, with its SHA-256 as the object's checksum
    body, checksum = _stored(f"weights/{file.name}")
    assert body == file.read_bytes() and checksum == hashlib.sha256(body).hexdigest()
    assert f"staged: s3://{BUCKET}/weights/{file.name}" in capsys.readouterr().out
    # AND running it again changes nothing
    assert stage_weights.main(["--stack", STACK, "--file", str(file)]) == 0
    assert "already staged" in capsys.readouterr().out


def test_a_file_that_is_not_the_one_the_key_pins_is_refused_and_nothing_is_uploaded(
    stack: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the template's default key (torchvision's resnet18-f37072fd.pth) and some other file under that name
    other = tmp_path / "resnet18-f37072fd.pth"
    other.write_bytes(b"not torchvision's file")

    assert stage_weights.main(["--stack", STACK, "--file", str(other)]) == 1

    assert "not the f37072fd... that resnet18-f37072fd.pth pins: not staged" in capsys.readouterr().err
    assert boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_without_a_file_the_torch_hub_cache_copy_is_used(
    stack: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = pinned(tmp_path / "torch" / "hub" / "checkpoints", b"cached weights", stem="resnet18")
    _deploy_with_key(f"weights/{cached.name}")

    assert stage_weights.main(["--stack", STACK]) == 0

    assert _stored(f"weights/{cached.name}")[0] == b"cached weights"


def test_a_downloaded_file_is_verified_before_it_is_uploaded(
    stack: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN nothing in the torch hub cache: the command downloads (a file:// URL here, https on a real deployment)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    published = pinned(tmp_path / "published", b"published weights")
    _deploy_with_key(f"weights/{published.name}")

    assert stage_weights.main(["--stack", STACK, "--url", published.as_uri()]) == 0

    assert _stored(f"weights/{published.name}")[0] == b"published weights"


def test_the_default_download_is_torchvisions_url_and_a_failed_one_says_what_to_do(
    stack: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    asked: list[str] = []

    def no_network(url: str, target: Path, timeout: float = 0) -> Path:
        asked.append(url)
        raise OSError("network unreachable")

    monkeypatch.setattr(stage_weights, "download", no_network)

    assert stage_weights.main(["--stack", STACK]) == 1

    assert asked == ["https://download.pytorch.org/models/resnet18-f37072fd.pth"]
    assert "pass --file with the file instead" in capsys.readouterr().err


def test_a_key_that_pins_nothing_is_refused(aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "resnet18.pth"
    file.write_bytes(b"weights")

    assert stage_weights.main(["--bucket", BUCKET, "--key", "weights/resnet18.pth", "--file", str(file)]) == 1

    assert "does not pin its content" in capsys.readouterr().err
