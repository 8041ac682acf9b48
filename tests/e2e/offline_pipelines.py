"""One offline pipeline per e2e module, as a deployed stack serves successive uploads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from offline.initial_weights import choose_initial_weights
from offline.local_sagemaker import tuning
from offline.run import Console, OfflinePipeline, RunOptions


@contextmanager
def stand_in_pipeline(work: Path, options: RunOptions, tuned: dict[str, Any]) -> Iterator[OfflinePipeline]:
    """The offline run's default path (frozen stand-in backbone, head on cached features), every trial given
    ``tuned`` (the local tuner samples at random; a batch of 128 would leave too few steps to judge)."""
    with pytest.MonkeyPatch.context() as env:  # the module-scoped twin of tests/conftest.py's credentials
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.setattr(tuning, "sample_hyperparameters", lambda ranges, rng: dict(tuned))
        weights = choose_initial_weights("stand-in")
        parameters = options.template_parameters(options.counts, weights)
        with OfflinePipeline(work, parameters, Console(quiet=True), initial_weights=weights) as offline:
            yield offline
