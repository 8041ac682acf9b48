"""The paired champion/challenger evaluation: its statistics against known values, and both models scored as served."""

from __future__ import annotations

import json
import math
import tarfile
from pathlib import Path

import dog_data
import dog_model
import numpy as np
import paired_evaluation
import pytest
import torch
from conftest import TINY_IMAGE_SIZE
from paired_evaluation import Scores, mcnemar_exact_p, paired_bootstrap_interval, paired_summary
from training_job import save_model_artifact


@pytest.mark.parametrize(
    ("challenger_only", "champion_only", "expected"),
    [
        (1, 9, 2 * (1 + 10) / 2**10),  # 0.021484375: the textbook two-sided exact value
        (9, 1, 2 * (1 + 10) / 2**10),  # symmetric
        (0, 6, 2 / 2**6),
        (5, 5, 1.0),  # as even as it gets: capped at 1
        (0, 0, 1.0),  # no disagreement: nothing against "the same"
        (3, 12, 2 * sum(math.comb(15, k) for k in range(4)) / 2**15),  # 0.03515625
    ],
)
def test_exact_mcnemar_p_value(challenger_only: int, champion_only: int, expected: float) -> None:
    assert mcnemar_exact_p(challenger_only, champion_only) == pytest.approx(expected, rel=1e-12)


def _vectors(both: int, challenger_only: int, champion_only: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    challenger = [1] * both + [1] * challenger_only + [0] * champion_only + [0] * neither
    champion = [1] * both + [0] * challenger_only + [1] * champion_only + [0] * neither
    return np.array(challenger, dtype=bool), np.array(champion, dtype=bool)


def _exact_bootstrap_quantiles(n: int, b: int, c: int, probabilities: list[float]) -> list[float]:
    """The paired bootstrap's limit: resampling n images gives (B, C) ~ Multinomial(n; b/n, c/n) discordant ones,
    so the resampled difference (B - C) / n has this exact distribution."""
    pb, pc, pr = b / n, c / n, 1 - (b + c) / n
    mass: dict[int, float] = {}
    for i in range(n + 1):
        for j in range(n - i + 1):
            log_p = (
                math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(j + 1) - math.lgamma(n - i - j + 1)
                + (i * math.log(pb) if i else 0) + (j * math.log(pc) if j else 0)
                + ((n - i - j) * math.log(pr) if n - i - j else 0)
            )  # fmt: skip
            mass[i - j] = mass.get(i - j, 0.0) + math.exp(log_p)
    cumulative, quantiles, total = 0.0, [], sorted(mass.items())
    for probability in probabilities:
        cumulative = 0.0
        for difference, p in total:
            cumulative += p
            if cumulative >= probability:
                quantiles.append(difference / n)
                break
    return quantiles


def test_bootstrap_interval_matches_the_exact_resampling_distribution_with_a_fixed_seed() -> None:
    # GIVEN 60 images: both right on 40, only the challenger on 8, only the champion on 2, neither on 10
    challenger, champion = _vectors(40, 8, 2, 10)
    # WHEN the interval is computed twice with the same seed, and once with another
    first = paired_bootstrap_interval(challenger, champion, seed=0)
    again = paired_bootstrap_interval(challenger, champion, seed=0)
    other = paired_bootstrap_interval(challenger, champion, seed=1)
    # THEN the same seed gives the same interval, around the observed +0.10
    assert first == again
    low, high = first
    assert low < 0.10 < high
    # AND it matches the exact distribution's 2.5% and 97.5% quantiles within one image of 60
    exact_low, exact_high = _exact_bootstrap_quantiles(60, 8, 2, [0.025, 0.975])
    assert low == pytest.approx(exact_low, abs=1 / 60 + 1e-9)
    assert high == pytest.approx(exact_high, abs=1 / 60 + 1e-9)
    assert other[0] == pytest.approx(exact_low, abs=1 / 60 + 1e-9)
    # AND a 90% interval lies inside the 95% one
    narrow = paired_bootstrap_interval(challenger, champion, confidence=0.90, seed=0)
    assert low <= narrow[0] <= narrow[1] <= high


def test_more_images_of_the_same_kind_narrow_the_interval() -> None:
    small = paired_bootstrap_interval(*_vectors(40, 8, 2, 10))
    large = paired_bootstrap_interval(*_vectors(400, 80, 20, 100))
    assert large[1] - large[0] < (small[1] - small[0]) / 2


def test_the_interval_needs_images() -> None:
    with pytest.raises(ValueError, match="no images"):
        paired_bootstrap_interval(np.array([], dtype=bool), np.array([], dtype=bool))


def _scores(answers: list[str]) -> Scores:
    return Scores([[answer] for answer in answers], [0.9] * len(answers), "float32")


def test_breeds_only_one_model_knows_are_left_out_of_the_paired_figures() -> None:
    # GIVEN a challenger that knows breeds a, b and c; a champion trained on a, b and d
    truth = ["a", "a", "b", "b", "c", "c"]
    challenger = _scores(["a", "a", "b", "a", "c", "c"])
    champion = _scores(["a", "b", "b", "b", "d", "d"])
    # WHEN they are paired
    paired = paired_summary(challenger, champion, truth, ["a", "b", "c"], ["a", "b", "d"])
    # THEN only the four images of a and b count, and the output names the breeds left out
    assert paired["images"] == 4 and paired["shared_breeds"] == 2 and paired["breeds_compared"] == 2
    assert paired["breeds_only_challenger"] == ["c"] and paired["breeds_only_champion"] == ["d"]
    assert (paired["challenger_accuracy"], paired["champion_accuracy"], paired["difference"]) == (0.75, 0.75, 0.0)
    assert (paired["challenger_only_correct"], paired["champion_only_correct"]) == (1, 1)
    assert paired["mcnemar_p"] == 1.0


def test_models_that_share_no_breed_cannot_be_paired() -> None:
    with pytest.raises(ValueError, match="share no breed"):
        paired_summary(_scores(["a"]), _scores(["x"]), ["a"], ["a"], ["x"])


def test_model_summary_counts_per_breed_and_the_most_confused_pairs() -> None:
    truth = ["a", "a", "a", "b", "b", "c"]
    scores = Scores([["b", "a"], ["b", "c"], ["a", "b"], ["b", "a"], ["a", "b"], ["b", "c"]],
                    [0.5, 0.9, 0.8, 0.7, 0.6, 0.95], "int8")  # fmt: skip
    summary = paired_evaluation.model_summary(scores, truth, [f"test/{t}/{i}.jpg" for i, t in enumerate(truth)])
    assert summary["accuracy"] == pytest.approx(2 / 6) and summary["top5_accuracy"] == pytest.approx(5 / 6)
    assert summary["per_breed"] == {
        "a": {"images": 3, "correct": 1},
        "b": {"images": 2, "correct": 1},
        "c": {"images": 1, "correct": 0},
    }
    assert summary["confused_pairs"][0] == {"true": "a", "predicted": "b", "count": 2}
    # the most confident mistake first
    assert [m["path"] for m in summary["misclassified"]] == ["test/c/5.jpg", "test/a/1.jpg", "test/b/4.jpg",
                                                             "test/a/0.jpg"]  # fmt: skip
    assert summary["served_as"] == "int8"


# ------------------------------------------------------------------------------------------- models as they serve


def _artifact(
    folder: Path, classes: list[str], seed: int, image_size: int = TINY_IMAGE_SIZE, **metrics: object
) -> Path:
    torch.manual_seed(seed)
    model = dog_model.build_model(len(classes))
    return save_model_artifact(folder, model, classes, {"image_size": image_size, **metrics})


@pytest.fixture(scope="module")
def test_split(tiny_dataset_zip: Path) -> tuple[dog_data.DatasetIndex, dog_data.DecodedSplit]:
    index = dog_data.index_dataset(tiny_dataset_zip)
    return index, dog_data.decode_split(index, "test", TINY_IMAGE_SIZE, max_corrupt_fraction=0.0)


def _evaluate(challenger: Path, champion: Path | None, split: tuple[dog_data.DatasetIndex, dog_data.DecodedSplit],
              instance_type: str = "ml.g5.xlarge") -> dict[str, object]:  # fmt: skip
    index, test = split
    return paired_evaluation.evaluation(
        challenger_dir=challenger, champion_dir=champion, index=index, test=test,
        endpoint_instance_type=instance_type, inference_precision="auto", max_corrupt_fraction=0.0,
    )  # fmt: skip


def test_both_models_score_the_same_images_and_the_champion_comes_from_its_model_tar_gz(
    tmp_path: Path, test_split: tuple[dog_data.DatasetIndex, dog_data.DecodedSplit]
) -> None:
    # GIVEN a challenger artifact and a champion trained at another resolution, delivered as model.tar.gz
    index, test = test_split
    challenger = _artifact(tmp_path / "challenger", index.classes, seed=1)
    champion_folder = _artifact(tmp_path / "champion-model", index.classes, seed=2, image_size=24)
    channel = tmp_path / "champion-channel"
    channel.mkdir()
    with tarfile.open(channel / "model.tar.gz", "w:gz") as archive:
        for item in champion_folder.iterdir():
            archive.add(item, arcname=item.name)
    # WHEN the job evaluates them
    result = _evaluate(challenger, channel, test_split)
    # THEN both scored every test image, and the paired figures agree with the two accuracies
    assert result["test_images"] == len(test) == 16
    challenger_summary, champion_summary, paired = result["challenger"], result["champion"], result["paired"]
    assert isinstance(challenger_summary, dict) and isinstance(champion_summary, dict) and isinstance(paired, dict)
    assert challenger_summary["images"] == champion_summary["images"] == paired["images"] == 16
    assert paired["difference"] == pytest.approx(challenger_summary["accuracy"] - champion_summary["accuracy"])
    low, high = paired["interval"]
    assert low <= paired["difference"] <= high
    assert sum(e["images"] for e in challenger_summary["per_breed"].values()) == 16
    assert all(m["path"] in test.paths for m in challenger_summary["misclassified"])
    # AND a GPU endpoint serves float: both were scored in float32
    assert challenger_summary["served_as"] == champion_summary["served_as"] == "float32"


def test_an_unreadable_champion_is_reported_and_the_challenger_still_scored(
    tmp_path: Path, test_split: tuple[dog_data.DatasetIndex, dog_data.DecodedSplit]
) -> None:
    index, _ = test_split
    challenger = _artifact(tmp_path / "challenger", index.classes, seed=1)
    channel = tmp_path / "champion"
    channel.mkdir()
    (channel / "model.tar.gz").write_bytes(b"not a tar archive")
    result = _evaluate(challenger, channel, test_split)
    assert result["paired"] is None
    assert isinstance(result["champion"], dict) and "ReadError" in result["champion"]["error"]
    assert isinstance(result["challenger"], dict) and result["challenger"]["images"] == 16


def test_a_champion_of_another_class_count_is_compared_on_the_shared_breeds(
    tmp_path: Path, test_split: tuple[dog_data.DatasetIndex, dog_data.DecodedSplit]
) -> None:
    index, test = test_split
    challenger = _artifact(tmp_path / "challenger", index.classes, seed=1)
    champion = _artifact(tmp_path / "champion", [*index.classes[:3], "999.Unseen_breed"], seed=2)
    result = _evaluate(challenger, champion, test_split)
    paired = result["paired"]
    assert isinstance(paired, dict)
    assert paired["breeds_only_challenger"] == [index.classes[3]] and paired["breeds_only_champion"] == [
        "999.Unseen_breed"
    ]
    assert paired["images"] == sum(1 for label in test.labels.tolist() if label < 3)


def test_a_cpu_endpoint_is_evaluated_in_int8_only_where_the_artifact_cleared_it(tmp_path: Path) -> None:
    classes = ["a", "b"]
    calibration = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    cleared = _artifact(tmp_path / "cleared", classes, 1, test_accuracy=0.80, int8={"test_accuracy": 0.795})
    torch.save(calibration, cleared / "calibration_images.pt")
    refused = _artifact(tmp_path / "refused", classes, 1, test_accuracy=0.80, int8={"test_accuracy": 0.70})
    torch.save(calibration, refused / "calibration_images.pt")
    served = paired_evaluation.served_precision
    assert served(cleared, "ml.m5.large", "auto") == "int8"
    assert served(refused, "ml.m5.large", "auto") == "float32"  # the check measured too large a drop
    assert served(refused, "ml.m5.large", "int8") == "int8"  # an operator's pin serves int8 anyway
    assert served(cleared, "ml.g5.xlarge", "auto") == "float32"  # a GPU endpoint serves float
    assert served(cleared, "ml.m5.large", "float32") == "float32"
    no_calibration = _artifact(tmp_path / "old", classes, 1, test_accuracy=0.8, int8={"test_accuracy": 0.8})
    assert served(no_calibration, "ml.m5.large", "auto") == "float32"


def test_the_written_file_is_the_evaluation(tmp_path: Path) -> None:
    path = paired_evaluation.write(tmp_path / "out", {"test_images": 3})
    assert path.name == "evaluation.json" and json.loads(path.read_text()) == {"test_images": 3}


def test_an_on_disk_test_split_is_scored_as_the_same_split_in_memory(
    tmp_path: Path, test_split: tuple[dog_data.DatasetIndex, dog_data.DecodedSplit], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the test split decoded into a memory-mapped scratch file, its pages released after every scoring batch
    index, in_memory = test_split
    on_disk = dog_data.decode_split(index, "test", TINY_IMAGE_SIZE, max_corrupt_fraction=0.0, cache_dir=tmp_path)
    assert on_disk.on_disk
    monkeypatch.setattr(dog_data, "RELEASE_EVERY_BYTES", 1)
    released = []
    monkeypatch.setattr(on_disk, "release_pages", lambda: released.append(True))
    challenger = _artifact(tmp_path / "challenger", index.classes, seed=1)
    # WHEN both are evaluated
    from_disk = _evaluate(challenger, None, (index, on_disk))
    from_memory = _evaluate(challenger, None, (index, in_memory))
    # THEN the answers are the same, and scoring read the file through rows (which releases its pages)
    assert from_disk["challenger"] == from_memory["challenger"]
    assert released
