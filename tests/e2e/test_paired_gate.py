"""The champion/challenger gate on the same images, end to end with real training code and real (tiny) models.

Two datasets of the same breeds whose test splits differ in difficulty: A's images are nearly clean, B's carry heavy
pixel noise in every split. The model trained on A scores high on A's easy test split and becomes the champion; the
model trained on B scores lower on B's hard test split, yet is the better model there: the champion, trained on
clean images, does worse on B's noisy ones. Comparing each model's accuracy on its own test split (the gate before
issue 11) rejects B's model; scoring both on B's test split deploys it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from offline_pipelines import stand_in_pipeline

from offline.run import OfflinePipeline, RunOptions, RunResult
from offline.synthetic_dataset import write_dataset_zip

pytestmark = pytest.mark.slow

CLASSES, COUNTS, IMAGE_SIZE = 8, (160, 32, 200), 32
TOLERANCE = 0.03
OPTIONS = RunOptions(
    classes=CLASSES,
    counts=COUNTS,
    tuning_jobs=1,
    tuning_epochs=3,
    epochs=20,
    image_size=IMAGE_SIZE,
    parameters=(("AccuracyFloor", "0.5"), ("ChampionTolerance", str(TOLERANCE))),
)
TUNED = {"batch_size": json.dumps("32"), "learning_rate": "0.05"}


def _dataset(folder: Path, noise: float, seed: int) -> Path:
    return write_dataset_zip(
        folder / "dogs.zip",
        num_classes=CLASSES,
        counts=COUNTS,
        image_size=IMAGE_SIZE,
        seed=seed,
        noise_sigma=dict.fromkeys(("train", "valid", "test"), noise),
    )


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfflinePipeline]:
    work = tmp_path_factory.mktemp("paired")
    with stand_in_pipeline(work, OPTIONS, TUNED) as offline:
        yield offline


@pytest.fixture(scope="module")
def runs(pipeline: OfflinePipeline, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, RunResult]:
    easy = _dataset(tmp_path_factory.mktemp("easy"), noise=4, seed=1)
    hard = _dataset(tmp_path_factory.mktemp("hard"), noise=90, seed=2)
    first = pipeline.run(lambda: pipeline.upload(easy, "incoming/easy.zip"), tmp_path_factory.mktemp("first"))
    second = pipeline.run(lambda: pipeline.upload(hard, "incoming/hard.zip"), tmp_path_factory.mktemp("second"))
    return first, second


def test_the_first_model_is_judged_on_the_floor_alone(runs: tuple[RunResult, RunResult]) -> None:
    first, _ = runs
    assert first.succeeded and first.outcome == "RetrainingSucceeded", (first.error, first.cause)
    gate = first.record["gate"]
    assert (gate["comparison"], gate["paired"], gate["champion_accuracy"]) == ("no champion", None, None)
    assert "no model is serving yet" in gate["reason"]


def test_a_better_model_on_a_harder_test_split_deploys_where_own_split_accuracies_would_reject_it(
    runs: tuple[RunResult, RunResult],
) -> None:
    first, second = runs
    assert second.succeeded, (second.error, second.cause)
    champion_own_split = first.record["gate"]["challenger_accuracy"]
    gate = second.record["gate"]
    # GIVEN the old comparison's figures: the new model's accuracy is lower than the champion's on its own split,
    # by more than the tolerance
    assert gate["challenger_accuracy"] < champion_own_split - TOLERANCE
    # THEN on the same (hard) images the new model is the better one, with confidence, and it deployed
    paired = gate["paired"]
    assert gate["comparison"] == "paired" and paired["images"] == COUNTS[2]
    assert paired["champion_accuracy"] < paired["challenger_accuracy"]
    assert paired["interval"][0] > 0 and paired["mcnemar_p"] < 0.05
    assert gate["passed"] and second.outcome == "RetrainingSucceeded"
    assert "deployment" in second.record
    # AND the champion the job scored was the first run's model, named in the state and the registry
    champion = second.record["training"]["champion"]
    assert champion["problem"] is None
    assert champion["model_package_arn"] == first.record["gate"]["model_package_arn"]
    package = boto3.client("sagemaker").describe_model_package(ModelPackageName=gate["model_package_arn"])
    properties = package["CustomerMetadataProperties"]
    assert properties["comparison"] == "paired" and properties["paired_images"] == str(COUNTS[2])
    # (every rule's verdict among them, within the API's 50 entries after ApproveModel's two)
    assert len(properties) <= 50 and "rule_LowGPUUtilization" in properties
    assert float(properties["champion_accuracy_same_images"]) == pytest.approx(paired["champion_accuracy"], abs=1e-4)
    # AND each model was scored as a CPU endpoint serves it: the served accuracy is what the floor judged
    assert gate["served_as"] in ("int8", "float32")
