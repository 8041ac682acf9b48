"""The champion/challenger decision and the registry's metadata encoding (pure logic)."""

from __future__ import annotations

import pytest

from pipeline.common.champion_gate import decide
from pipeline.common.model_packages import METADATA_VALUE_MAX, metadata, metadata_value


def test_first_model_needs_only_the_floor() -> None:
    decision = decide(0.61, None, floor=0.60, tolerance=0.01)

    assert decision.passed is True
    assert "no model is serving yet" in decision.reason


def test_below_the_floor_is_rejected_even_without_a_champion() -> None:
    decision = decide(0.59, None, floor=0.60, tolerance=0.01)

    assert decision.passed is False
    assert "below the floor 0.6000" in decision.reason


@pytest.mark.parametrize(
    ("challenger", "champion", "passed"),
    [
        (0.85, 0.80, True),  # better
        (0.80, 0.80, True),  # as good
        (0.79, 0.80, True),  # exactly at champion - tolerance (inclusive, despite 0.80 - 0.01 = 0.7900000000000001)
        (0.7899, 0.80, False),  # just beyond the tolerance
        (0.70, 0.80, False),
    ],
)
def test_challenger_may_be_at_most_the_tolerance_worse_than_the_champion(
    challenger: float, champion: float, passed: bool
) -> None:
    decision = decide(challenger, champion, floor=0.60, tolerance=0.01)

    assert decision.passed is passed
    assert (decision.challenger_accuracy, decision.champion_accuracy) == (challenger, champion)
    if not passed:
        assert "worse than the serving model's 0.8000" in decision.reason


def test_floor_applies_even_when_the_champion_is_worse() -> None:
    decision = decide(0.55, 0.50, floor=0.60, tolerance=0.01)

    assert decision.passed is False
    assert "floor" in decision.reason


def test_decision_as_state_is_what_the_asl_reads() -> None:
    state = decide(0.9, 0.8, floor=0.6, tolerance=0.01).as_state()

    assert state == {
        "passed": True,
        "reason": state["reason"],
        "challenger_accuracy": 0.9,
        "champion_accuracy": 0.8,
        "floor": 0.6,
        "tolerance": 0.01,
    }


def test_metadata_values_keep_only_the_characters_the_api_allows() -> None:
    # GIVEN values with quotes, commas and brackets (an ETag, a JSON-ish list) and a very long one
    values = {"etag": '"9b2c-12"', "rules": "a=1, b=[2]", "long": "x" * 400, "missing": None, "number": 0.8312}

    # WHEN they become CustomerMetadataProperties
    encoded = metadata(values)

    # THEN every value matches [letters digits space _.:/=+-@]{1,256}, and None is left out
    assert encoded == {"etag": "_9b2c-12_", "rules": "a=1_ b=_2_", "long": "x" * METADATA_VALUE_MAX, "number": "0.8312"}
    assert metadata_value("s3://dog-data/incoming/dog Images.zip") == "s3://dog-data/incoming/dog Images.zip"
