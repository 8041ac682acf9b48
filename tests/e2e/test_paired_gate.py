"""The champion/challenger gate on the same images, end to end with real training code and real (tiny) models.

Two datasets of the same breeds whose test splits differ in difficulty: A's images are nearly clean, B's carry heavy
pixel noise in every split. The model trained on A scores high on A's easy test split and becomes the champion; the
model trained on B scores lower on B's hard test split, yet is the better model there: the champion, trained on
clean images, does worse on B's noisy ones. Comparing each model's accuracy on its own test split (the gate before
issue 11) rejects B's model; scoring both on B's test split deploys it. A third run, on another noisy dataset C
with a learning rate too small for its 20 epochs, trains a model that is worse than B's on C's test images beyond
the tolerance, though above the floor: it is rejected, with the interval in the reason, and B's model keeps serving.
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
    # Two instances for the final jobs: the champion and the challenger are scored by rank 0 of a 2-rank job.
    parameters=(("AccuracyFloor", "0.4"), ("ChampionTolerance", str(TOLERANCE)), ("TrainingInstanceCount", "2")),
)
# What every trial of the local tuner gets; the third run lowers the learning rate (the fixture's tuner reads it).
TUNED = {"batch_size": json.dumps("32"), "learning_rate": "0.05"}
TOO_SMALL_LEARNING_RATE = "0.002"


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
def runs(pipeline: OfflinePipeline, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, ...]:
    easy = _dataset(tmp_path_factory.mktemp("easy"), noise=4, seed=1)
    hard = _dataset(tmp_path_factory.mktemp("hard"), noise=90, seed=2)
    other = _dataset(tmp_path_factory.mktemp("other"), noise=90, seed=3)
    first = pipeline.run(lambda: pipeline.upload(easy, "incoming/easy.zip"), tmp_path_factory.mktemp("first"))
    second = pipeline.run(lambda: pipeline.upload(hard, "incoming/hard.zip"), tmp_path_factory.mktemp("second"))
    TUNED["learning_rate"] = TOO_SMALL_LEARNING_RATE
    try:
        third = pipeline.run(lambda: pipeline.upload(other, "incoming/other.zip"), tmp_path_factory.mktemp("third"))
    finally:
        TUNED["learning_rate"] = "0.05"
    return first, second, third


def test_the_first_model_is_judged_on_the_floor_alone(runs: tuple[RunResult, ...]) -> None:
    first, *_ = runs
    assert first.succeeded and first.outcome == "RetrainingSucceeded", (first.error, first.cause)
    gate = first.record["gate"]
    assert (gate["comparison"], gate["paired"], gate["champion_accuracy"]) == ("no champion", None, None)
    assert "no model is serving yet" in gate["reason"]


def test_a_better_model_on_a_harder_test_split_deploys_where_own_split_accuracies_would_reject_it(
    runs: tuple[RunResult, ...],
) -> None:
    first, second, _ = runs
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
    # AND the job that scored them ran as two torchrun ranks, rank 0 scoring every test image (above)
    job = boto3.client("sagemaker").describe_training_job(TrainingJobName=second.record["training"]["job_name"])
    assert job["ResourceConfig"]["InstanceCount"] == 2
    assert job["HyperParameters"]["sagemaker_torch_distributed_enabled"] == "true"


def test_a_model_worse_on_the_same_images_beyond_the_tolerance_is_rejected_with_its_interval(
    runs: tuple[RunResult, ...],
) -> None:
    _, second, third = runs
    assert third.succeeded and third.outcome == "ModelRejected", (third.error, third.cause)
    gate = third.record["gate"]
    # GIVEN a model above the floor, scored against the serving one (the second run's) on the same images
    assert gate["challenger_accuracy"] >= 0.4
    assert third.record["training"]["champion"]["model_package_arn"] == second.record["gate"]["model_package_arn"]
    # THEN the interval lies below -tolerance, and the reason says by how much
    low, high = gate["paired"]["interval"]
    assert high < 0 and low < -TOLERANCE and not gate["passed"]
    assert f"interval [{low:+.4f}, {high:+.4f}]" in gate["reason"] and "ChampionTolerance" in gate["reason"]
    # AND the endpoint still serves the second run's model, and the run's report says it was rejected
    assert third.record["endpoint"]["serving_config"] == second.record["deployment"]["endpoint_config"]
    page = (third.output_dir / "report.html").read_text()
    assert "REJECTED" in page.upper() and f"{low * 100:+.2f}" in page
