"""The environment the ValidateDataset tests run under: the template's settings with a small expected dataset."""

from __future__ import annotations

import pytest
from validate_dataset_zips import BUCKET, CLASSES, COUNTS


@pytest.fixture
def pipeline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The template's environment, with the expected counts of the small test dataset."""
    monkeypatch.setenv("DATA_BUCKET", BUCKET)
    monkeypatch.setenv("INCOMING_PREFIX", "incoming/")
    monkeypatch.setenv("VALIDATED_PREFIX", "validated/")
    monkeypatch.setenv("EXPECTED_CLASSES", str(len(CLASSES)))
    monkeypatch.setenv("EXPECTED_TRAIN_IMAGES", str(COUNTS["train"]))
    monkeypatch.setenv("EXPECTED_VALID_IMAGES", str(COUNTS["valid"]))
    monkeypatch.setenv("EXPECTED_TEST_IMAGES", str(COUNTS["test"]))
