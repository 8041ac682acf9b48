"""sourcedir.tar.gz: reproducible, named by content, uploaded once."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import boto3
import pytest
from sagemaker_states_support import BUCKET, REGION

from pipeline.common.training_code_bundle import build_bundle, ensure_uploaded


def _code(tmp_path: Path, body: str = "print('hi')\n") -> Path:
    code = tmp_path / "code"
    (code / "pkg").mkdir(parents=True)
    (code / "train_model.py").write_text(body)
    (code / "pkg" / "util.py").write_text("X = 1\n")
    (code / "__pycache__").mkdir()
    (code / "__pycache__" / "train_model.cpython-311.pyc").write_bytes(b"\0")
    (code / ".hidden").write_text("secret")
    return code


def test_same_content_gives_the_same_bytes_whatever_the_file_times(tmp_path: Path) -> None:
    code = _code(tmp_path)
    first = build_bundle(code)
    os.utime(code / "train_model.py", (1_000_000, 1_000_000))

    assert build_bundle(code).archive == first.archive


def test_changed_content_changes_the_name(tmp_path: Path) -> None:
    before = build_bundle(_code(tmp_path / "a"))
    after = build_bundle(_code(tmp_path / "b", body="print('changed')\n"))

    assert before.key("code/") != after.key("code/")
    assert before.key("code/").startswith("code/") and before.key("code/").endswith("/sourcedir.tar.gz")


def test_archive_holds_the_code_and_leaves_caches_and_hidden_files_out(tmp_path: Path) -> None:
    bundle = build_bundle(_code(tmp_path))

    with tarfile.open(fileobj=io.BytesIO(bundle.archive), mode="r:gz") as archive:
        assert archive.getnames() == ["pkg/util.py", "train_model.py"]
        assert archive.extractfile("train_model.py").read() == b"print('hi')\n"  # type: ignore[union-attr]


def test_empty_folder_is_refused_with_the_setting_to_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="TRAINING_CODE_DIR"):
        build_bundle(tmp_path)


def test_upload_happens_once_per_content(aws: None, tmp_path: Path) -> None:
    # GIVEN a bucket whose PutObject calls are counted
    s3 = boto3.client("s3", region_name=REGION)
    puts: list[str] = []
    s3.meta.events.register("provide-client-params.s3.PutObject", lambda params, **_: puts.append(params["Key"]))
    code = _code(tmp_path)

    # WHEN the same code is ensured twice
    first = ensure_uploaded(s3, BUCKET, "code/", code)
    second = ensure_uploaded(s3, BUCKET, "code/", code)

    # THEN it was put once, and the object is the bundle
    assert first == second == f"s3://{BUCKET}/{build_bundle(code).key('code/')}"
    assert len(puts) == 1
    stored = s3.get_object(Bucket=BUCKET, Key=build_bundle(code).key("code/"))["Body"].read()
    assert stored == build_bundle(code).archive
