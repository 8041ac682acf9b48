"""The champion/challenger decision: pure logic over the final job's ``evaluation.json``, no AWS.

The final training job scores the new model (the challenger) and the serving one (the champion) on the same images,
the new dataset's test split, in the precision each will serve in (training_code/paired_evaluation.py). The
challenger may replace the champion when

1. its test accuracy (as served) reaches ``AccuracyFloor``, and
2. with 95% confidence it is not worse than the champion by more than ``ChampionTolerance``: the lower end of the
   paired bootstrap interval of (challenger - champion) on the same images is at least ``-ChampionTolerance``
   (a non-inferiority test), and
3. optionally (``PerBreedTolerance``, off by default: a breed has ~6 test images) no breed's accuracy drops by
   more than that.

The first model has no champion: only the floor applies. A champion that could not be scored (its artifact is gone,
unreadable, or shares no breed with the new dataset) also leaves only the floor, and the reason says so. Bounds are
inclusive, compared with a small epsilon so that float rounding never flips a decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.common.errors import ModelMetricMissing

EPSILON = 1e-9
PER_BREED_OFF = "off"
BREEDS_NAMED = 5


def interval_text(confidence: float, interval: tuple[float, float] | list[float]) -> str:
    """``95% interval [-0.0710, -0.0290]``: how the gate's reason and the notices state the paired interval."""
    low, high = interval
    return f"{confidence:.0%} interval [{low:+.4f}, {high:+.4f}]"


@dataclass(frozen=True)
class Paired:
    """The paired figures of evaluation.json's ``paired`` entry, plus both models' per-breed results."""

    images: int
    challenger_accuracy: float
    champion_accuracy: float
    difference: float
    interval: tuple[float, float]
    confidence: float
    method: str
    mcnemar_p: float
    shared_breeds: int
    breeds_only_challenger: tuple[str, ...]
    breeds_only_champion: tuple[str, ...]
    breed_changes: dict[str, float]  # shared breed -> challenger's accuracy minus champion's on its images

    def describe(self) -> str:
        text = (
            f"on the same {self.images} test images the new model scores {self.challenger_accuracy:.4f} and the "
            f"serving model {self.champion_accuracy:.4f}: difference {self.difference:+.4f}, "
            f"{interval_text(self.confidence, self.interval)} ({self.method}; exact McNemar p={self.mcnemar_p:.3g})"
        )
        if self.breeds_only_challenger or self.breeds_only_champion:
            text += (
                f"; compared on the {self.shared_breeds} breeds both know ({len(self.breeds_only_challenger)} only "
                f"in the new model, {len(self.breeds_only_champion)} only in the serving one)"
            )
        return text

    def as_state(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "challenger_accuracy": self.challenger_accuracy,
            "champion_accuracy": self.champion_accuracy,
            "difference": self.difference,
            "interval": list(self.interval),
            "confidence": self.confidence,
            "method": self.method,
            "mcnemar_p": self.mcnemar_p,
            "shared_breeds": self.shared_breeds,
            "breeds_only_challenger": list(self.breeds_only_challenger),
            "breeds_only_champion": list(self.breeds_only_champion),
        }


@dataclass(frozen=True)
class Evaluation:
    """What the gate reads of evaluation.json."""

    challenger_accuracy: float
    challenger_top5: float | None
    served_as: str
    test_images: int
    paired: Paired | None
    champion_error: str | None  # the job had the champion but could not score it


def _breed_changes(challenger: dict[str, Any], champion: dict[str, Any], shared: set[str]) -> dict[str, float]:
    changes: dict[str, float] = {}
    for breed, ours in (challenger.get("per_breed") or {}).items():
        theirs = (champion.get("per_breed") or {}).get(breed)
        if breed in shared and theirs and ours["images"] and theirs["images"]:
            changes[breed] = ours["correct"] / ours["images"] - theirs["correct"] / theirs["images"]
    return changes


def read_evaluation(document: dict[str, Any], source: str) -> Evaluation:
    """evaluation.json as the gate needs it; a document without the challenger's accuracy is an error."""
    challenger = document.get("challenger") or {}
    accuracy = challenger.get("accuracy")
    if not isinstance(accuracy, int | float):
        raise ModelMetricMissing(
            f"{source} has no challenger accuracy: the training code (train_model.py --evaluation) must score the "
            "model on the test split. Nothing was registered or deployed."
        )
    champion = document.get("champion") or {}
    paired_entry = document.get("paired")
    paired = None
    if paired_entry:
        only_challenger = tuple(paired_entry.get("breeds_only_challenger") or ())
        only_champion = tuple(paired_entry.get("breeds_only_champion") or ())
        shared = set(challenger.get("per_breed") or {}) - set(only_challenger)
        low, high = paired_entry["interval"]
        paired = Paired(
            images=int(paired_entry["images"]),
            challenger_accuracy=float(paired_entry["challenger_accuracy"]),
            champion_accuracy=float(paired_entry["champion_accuracy"]),
            difference=float(paired_entry["difference"]),
            interval=(float(low), float(high)),
            confidence=float(paired_entry.get("confidence", document.get("confidence", 0.95))),
            method=str(paired_entry.get("method", "paired bootstrap")),
            mcnemar_p=float(paired_entry["mcnemar_p"]),
            shared_breeds=int(paired_entry.get("shared_breeds", len(shared))),
            breeds_only_challenger=only_challenger,
            breeds_only_champion=only_champion,
            breed_changes=_breed_changes(challenger, champion, shared),
        )
    return Evaluation(
        challenger_accuracy=float(accuracy),
        challenger_top5=challenger.get("top5_accuracy"),
        served_as=str(challenger.get("served_as", "float32")),
        test_images=int(document.get("test_images", challenger.get("images", 0))),
        paired=paired,
        champion_error=champion.get("error") if not paired else None,
    )


def parse_per_breed_tolerance(text: str) -> float | None:
    """``PerBreedTolerance``: "off" (the default) or a share 0-1."""
    if text.strip().lower() == PER_BREED_OFF:
        return None
    value = float(text)
    if not 0 <= value <= 1:
        raise ValueError(f"PerBreedTolerance must be 'off' or a number from 0 to 1, got {text!r}")
    return value


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    challenger_accuracy: float
    champion_accuracy: float | None
    floor: float
    tolerance: float
    comparison: str  # "paired", "no champion" or "champion unscored"
    paired: Paired | None = None
    per_breed_tolerance: float | None = None

    def as_state(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "challenger_accuracy": self.challenger_accuracy,
            "champion_accuracy": self.champion_accuracy,
            "floor": self.floor,
            "tolerance": self.tolerance,
            "comparison": self.comparison,
            "paired": self.paired.as_state() if self.paired else None,
            "per_breed_tolerance": self.per_breed_tolerance,
        }


def decide(
    evaluation: Evaluation,
    floor: float,
    tolerance: float,
    *,
    champion_problem: str | None = None,
    per_breed_tolerance: float | None = None,
    champion_serving: bool = True,
) -> GateDecision:
    """Whether the challenger may be deployed, and why, in words fit for a notification.

    ``champion_serving``: a model serves now (False before the first deployment). ``champion_problem``: why
    StartTraining could not give the job the champion to score (evaluation.json's own ``champion.error`` is the
    other way a champion goes unscored)."""
    challenger = evaluation.challenger_accuracy
    paired = evaluation.paired
    unscored = champion_problem or evaluation.champion_error
    comparison = "paired" if paired else ("champion unscored" if champion_serving else "no champion")

    def decision(passed: bool, reason: str) -> GateDecision:
        champion = paired.champion_accuracy if paired else None
        return GateDecision(
            passed, reason, challenger, champion, floor, tolerance, comparison, paired, per_breed_tolerance
        )

    served = f"test accuracy {challenger:.4f} ({evaluation.served_as}, as it will serve)"
    if challenger + EPSILON < floor:
        return decision(
            False,
            f"{served} is below the floor {floor:.4f} (AccuracyFloor); the serving model stays. Check the dataset "
            "(labels, class balance) and the training settings.",
        )
    if paired is None:
        if not champion_serving:
            return decision(True, f"{served} reaches the floor {floor:.4f}; no model is serving yet")
        return decision(
            True,
            f"{served} reaches the floor {floor:.4f}; the serving model could not be scored on the same images "
            f"({unscored or 'no paired figures in the evaluation'}), so only the floor applied",
        )
    low = paired.interval[0]
    if low + EPSILON < -tolerance:
        return decision(
            False,
            f"{paired.describe()}. The new model may be worse than the serving one by more than the tolerance "
            f"{tolerance:.4f} (ChampionTolerance): the interval reaches {low:+.4f}, below {-tolerance:+.4f}; the "
            "serving model stays.",
        )
    if per_breed_tolerance is not None:
        drops = sorted(
            (change, breed) for breed, change in paired.breed_changes.items() if change + EPSILON < -per_breed_tolerance
        )
        if drops:
            named = ", ".join(f"{breed} {change:+.2f}" for change, breed in drops[:BREEDS_NAMED])
            return decision(
                False,
                f"{paired.describe()}; but {len(drops)} breed(s) lose more than {per_breed_tolerance:.2f} "
                f"(PerBreedTolerance): {named}; the serving model stays.",
            )
    return decision(
        True,
        f"{served} reaches the floor {floor:.4f}; {paired.describe()}: not worse than the serving model by more "
        f"than the tolerance {tolerance:.4f}",
    )
