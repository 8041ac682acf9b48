"""Fixtures of the rule-gate e2e tests (sabotage_runs.py): the full-count dataset, the weights, the rule path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sabotage_runs import CLASSES, COUNTS, PATHS

from offline.initial_weights import choose_initial_weights
from offline.synthetic_dataset import write_dataset_zip


@pytest.fixture(scope="module")
def full_count_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset_zip(
        tmp_path_factory.mktemp("data") / "dogs.zip", num_classes=CLASSES, counts=COUNTS, image_size=24
    )


@pytest.fixture(scope="module")
def stand_in() -> str:
    """The offline run's stand-in for ImageNet's weights: the jobs take the production path from it."""
    return choose_initial_weights("stand-in").hyperparameter


@pytest.fixture(params=list(PATHS))
def rule_path(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param
