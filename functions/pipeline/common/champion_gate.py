"""The champion/challenger decision: pure logic, no AWS.

A new model (the challenger) may replace the serving one (the champion) when its test accuracy reaches the floor
and is not worse than the champion's by more than the tolerance. The first model has no champion: only the floor
applies. Both bounds are inclusive, compared with a small epsilon so that 0.79 against 0.80 - 0.01 is not lost to
floating point.
"""

from __future__ import annotations

from dataclasses import dataclass

EPSILON = 1e-9


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    challenger_accuracy: float
    champion_accuracy: float | None
    floor: float
    tolerance: float

    def as_state(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "challenger_accuracy": self.challenger_accuracy,
            "champion_accuracy": self.champion_accuracy,
            "floor": self.floor,
            "tolerance": self.tolerance,
        }


def decide(challenger: float, champion: float | None, floor: float, tolerance: float) -> GateDecision:
    """Whether the challenger may be deployed, and why, in words fit for a notification."""

    def decision(passed: bool, reason: str) -> GateDecision:
        return GateDecision(passed, reason, challenger, champion, floor, tolerance)

    if challenger + EPSILON < floor:
        return decision(
            False,
            f"test accuracy {challenger:.4f} is below the floor {floor:.4f} (AccuracyFloor); the serving model "
            "stays. Check the dataset (labels, class balance) and the training settings.",
        )
    if champion is None:
        return decision(True, f"test accuracy {challenger:.4f} reaches the floor {floor:.4f}; no model is serving yet")
    bound = champion - tolerance
    if challenger + EPSILON < bound:
        return decision(
            False,
            f"test accuracy {challenger:.4f} is worse than the serving model's {champion:.4f} by more than the "
            f"tolerance {tolerance:.4f} (needs at least {bound:.4f}); the serving model stays.",
        )
    return decision(
        True,
        f"test accuracy {challenger:.4f} reaches the floor {floor:.4f} and is within {tolerance:.4f} of (or better "
        f"than) the serving model's {champion:.4f}",
    )
