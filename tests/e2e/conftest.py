"""Fixtures of the rule-gate e2e tests (sabotage_runs.py): the full-count dataset, the weights, the rule path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sabotage_runs import CLASSES, COUNTS, PATHS

from offline.initial_weights import STAND_IN
from offline.synthetic_dataset import write_dataset_zip


@pytest.fixture(scope="module")
def full_count_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset_zip(
        tmp_path_factory.mktemp("data") / "dogs.zip", num_classes=CLASSES, counts=COUNTS, image_size=24
    )


@pytest.fixture(scope="module")
def stand_in() -> str:
    """The stand-in for ImageNet's weights, built in each job (``weights=stand-in``): the jobs take the production
    path from it, frozen backbone and head on cached features. The offline run stages the same network as a file and
    loads it through the pretrained channel (test_offline_run.py); the rule gates need no staging per sabotaged run."""
    return STAND_IN


@pytest.fixture(params=list(PATHS))
def rule_path(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param
