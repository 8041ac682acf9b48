"""The champion/challenger decision on the paired figures, and the registry's metadata encoding (pure logic)."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.common.champion_gate import decide, parse_per_breed_tolerance, read_evaluation
from pipeline.common.errors import ModelMetricMissing
from pipeline.common.model_packages import METADATA_VALUE_MAX, metadata, metadata_value


def _model(accuracy: float, per_breed: dict[str, tuple[int, int]] | None = None) -> dict[str, Any]:
    breeds = per_breed or {"001.A": (50, round(accuracy * 50)), "002.B": (50, round(accuracy * 50))}
    return {
        "served_as": "int8",
        "images": sum(images for images, _ in breeds.values()),
        "accuracy": accuracy,
        "top5_accuracy": 0.99,
        "per_breed": {name: {"images": images, "correct": correct} for name, (images, correct) in breeds.items()},
    }


def _evaluation(
    challenger: float,
    champion: float | None = None,
    interval: tuple[float, float] | None = None,
    **paired_fields: Any,
) -> dict[str, Any]:
    """evaluation.json as paired_evaluation.py writes it."""
    document: dict[str, Any] = {"test_images": 100, "challenger": _model(challenger), "champion": None, "paired": None}
    if champion is not None and interval is not None:
        document["champion"] = _model(champion)
        document["paired"] = {
            "images": 100, "shared_breeds": 2, "breeds_only_challenger": [], "breeds_only_champion": [],
            "challenger_accuracy": challenger, "champion_accuracy": champion, "difference": challenger - champion,
            "interval": list(interval), "confidence": 0.95, "method": "paired bootstrap, 10000 resamples",
            "mcnemar_p": 0.04, "challenger_only_correct": 3, "champion_only_correct": 9,
        } | paired_fields  # fmt: skip
    return document


def _decide(document: dict[str, Any], **options: Any) -> Any:
    options.setdefault("champion_serving", document["paired"] is not None)
    return decide(read_evaluation(document, "s3://b/output.tar.gz"), 0.60, 0.03, **options)


def test_first_model_needs_only_the_floor() -> None:
    decision = _decide(_evaluation(0.61))

    assert (decision.passed, decision.comparison) == (True, "no champion")
    assert "no model is serving yet" in decision.reason and "int8, as it will serve" in decision.reason


def test_below_the_floor_is_rejected_even_when_better_than_the_champion() -> None:
    decision = _decide(_evaluation(0.55, 0.40, (0.10, 0.20)))

    assert decision.passed is False
    assert "below the floor 0.6000" in decision.reason


@pytest.mark.parametrize(
    ("interval", "passed"),
    [
        ((0.01, 0.09), True),  # better, with confidence
        ((-0.02, 0.04), True),  # as good as far as the test images can tell
        ((-0.03, 0.01), True),  # the interval ends exactly at -tolerance: inclusive
        ((-0.0301, 0.01), False),  # a drop beyond the tolerance cannot be ruled out
        ((-0.12, -0.06), False),  # worse, with confidence
    ],
)
def test_the_paired_interval_decides_against_the_tolerance(interval: tuple[float, float], passed: bool) -> None:
    decision = _decide(_evaluation(0.80, 0.81, interval))

    assert (decision.passed, decision.comparison) == (passed, "paired")
    assert decision.champion_accuracy == 0.81 and decision.paired is not None
    low, high = interval
    assert f"95% interval [{low:+.4f}, {high:+.4f}]" in decision.reason
    assert "on the same 100 test images" in decision.reason and "McNemar p=0.04" in decision.reason
    if not passed:
        assert "ChampionTolerance" in decision.reason and "serving model stays" in decision.reason


def test_a_champion_that_could_not_be_scored_leaves_only_the_floor_and_says_why() -> None:
    document = _evaluation(0.70)
    document["champion"] = {"error": "ReadError: file could not be opened successfully"}

    decision = _decide(document, champion_serving=True)

    assert (decision.passed, decision.comparison, decision.paired) == (True, "champion unscored", None)
    assert "could not be scored on the same images (ReadError: file could not" in decision.reason
    assert "only the floor applied" in decision.reason


def test_a_problem_start_training_found_is_named_in_the_reason() -> None:
    decision = _decide(_evaluation(0.70), champion_serving=True, champion_problem="its artifact s3://x is gone")

    assert decision.comparison == "champion unscored" and "its artifact s3://x is gone" in decision.reason


def test_differing_class_lists_are_named_in_the_reason() -> None:
    document = _evaluation(0.80, 0.79, (-0.01, 0.03), breeds_only_challenger=["134.New"], shared_breeds=2)

    decision = _decide(document)

    assert "compared on the 2 breeds both know (1 only in the new model, 0 only in the serving one)" in decision.reason


def test_the_optional_per_breed_guard_rejects_a_breed_that_collapses() -> None:
    # GIVEN overall parity, but breed B falls from 45/50 to 20/50 while A rises
    document = _evaluation(0.80, 0.80, (-0.02, 0.02))
    document["challenger"]["per_breed"] = {
        "001.A": {"images": 50, "correct": 50},
        "002.B": {"images": 50, "correct": 20},
    }
    document["champion"]["per_breed"] = {"001.A": {"images": 50, "correct": 35}, "002.B": {"images": 50, "correct": 45}}

    assert _decide(document).passed is True  # off by default
    guarded = _decide(document, per_breed_tolerance=0.3)

    assert guarded.passed is False
    assert "1 breed(s) lose more than 0.30 (PerBreedTolerance): 002.B -0.50" in guarded.reason


def test_per_breed_tolerance_parses_off_or_a_share() -> None:
    assert parse_per_breed_tolerance("off") is None and parse_per_breed_tolerance("0.25") == 0.25
    with pytest.raises(ValueError, match="PerBreedTolerance"):
        parse_per_breed_tolerance("1.5")


def test_an_evaluation_without_the_challenger_accuracy_is_an_error() -> None:
    with pytest.raises(ModelMetricMissing, match=r"train_model\.py --evaluation"):
        read_evaluation({"challenger": {}}, "s3://b/output.tar.gz")


def test_decision_as_state_is_what_the_asl_and_the_record_read() -> None:
    state = _decide(_evaluation(0.9, 0.8, (0.05, 0.15))).as_state()

    assert state == {
        "passed": True,
        "reason": state["reason"],
        "challenger_accuracy": 0.9,
        "champion_accuracy": 0.8,
        "floor": 0.6,
        "tolerance": 0.03,
        "comparison": "paired",
        "paired": state["paired"],
        "per_breed_tolerance": None,
    }
    assert state["paired"]["interval"] == [0.05, 0.15] and state["paired"]["images"] == 100


def test_metadata_values_keep_only_the_characters_the_api_allows() -> None:
    # GIVEN values with quotes, commas and brackets (an ETag, a JSON-ish list) and a very long one
    values = {"etag": '"9b2c-12"', "rules": "a=1, b=[2]", "long": "x" * 400, "missing": None, "number": 0.8312}

    # WHEN they become CustomerMetadataProperties
    encoded = metadata(values)

    # THEN every value matches [letters digits space _.:/=+-@]{1,256}, and None is left out
    assert encoded == {"etag": "_9b2c-12_", "rules": "a=1_ b=_2_", "long": "x" * METADATA_VALUE_MAX, "number": "0.8312"}
    assert metadata_value("s3://dog-data/incoming/dog Images.zip") == "s3://dog-data/incoming/dog Images.zip"
