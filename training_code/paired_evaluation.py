"""Champion against challenger on the same test images, as each would serve, with a confidence statement.

The final training job (train_model.py) runs this after it has saved its artifact: both models are loaded from
their artifacts the way inference.py loads them, in the precision the endpoint would serve them in (int8 on a CPU
endpoint where the artifact's int8 check cleared it, else float), and both score the new dataset's test split.
Accuracies measured on different test splits are not comparable (a harder split moves the number more than the
models differ); the same images are.

Statistics (pure functions over 0/1 vectors, numpy only):
- the paired difference ``challenger accuracy - champion accuracy`` with a percentile interval from a **paired
  bootstrap** (images resampled with replacement, both models' results kept together; ``BOOTSTRAP_RESAMPLES``
  resamples from ``BOOTSTRAP_SEED``, so the same results give the same interval). The gate decides on it: an
  interval is what a tolerance can be compared with, and a p-value is not.
- the **exact McNemar test** on the images where the two models disagree (a two-sided binomial test of the
  discordant counts against 1/2), reported beside the interval as the classical test of "the two differ".
Breeds that only one model knows are left out of the paired figures (the images of a breed the champion never saw
would count against it for a reason that says nothing about quality), and the output says which.

Output: ``evaluation.json`` in SM_OUTPUT_DATA_DIR (read by the EvaluateModel state); its schema is
``evaluation()``'s return value.
"""

from __future__ import annotations

import json
import logging
import math
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dog_data
import inference
import numpy as np
import torch

logger = logging.getLogger("paired_evaluation")

EVALUATION_FILE = "evaluation.json"
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
TOP_K = 5
CONFUSED_PAIRS = 10
MISCLASSIFIED_EXAMPLES = 8
SCORING_BATCH = 64
# Instance families with an accelerator: the float network serves there (int8 is a CPU path).
ACCELERATED_FAMILIES = ("ml.g", "ml.p", "ml.inf", "ml.trn")


# ---------------------------------------------------------------------------------------------------- statistics


def mcnemar_exact_p(challenger_only: int, champion_only: int) -> float:
    """Two-sided exact McNemar p-value: the discordant images split as a fair coin would split them."""
    discordant = challenger_only + champion_only
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, k) for k in range(min(challenger_only, champion_only) + 1))
    return min(1.0, 2 * tail / 2**discordant)


def paired_bootstrap_interval(
    challenger_correct: np.ndarray,
    champion_correct: np.ndarray,
    *,
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile interval of the accuracy difference over images resampled with replacement."""
    differences = challenger_correct.astype(np.float64) - champion_correct.astype(np.float64)
    count = len(differences)
    if count == 0:
        raise ValueError("no images to compare the two models on")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // count)  # bounded memory: at most ~16 MB of indices at a time
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        means[start : start + size] = differences[rng.integers(0, count, size=(size, count))].mean(axis=1)
    alpha = 1 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


# ---------------------------------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Scores:
    """One model's answers on a set of test images: its top-k class names and the top-1 probability."""

    top_k: list[list[str]]
    probability: list[float]
    served_as: str

    def correct(self, truth: list[str]) -> np.ndarray:
        return np.array([ranked[0] == true for ranked, true in zip(self.top_k, truth, strict=True)], dtype=bool)


def serves_on_accelerator(instance_type: str) -> bool:
    return instance_type.startswith(ACCELERATED_FAMILIES)


def served_precision(model_dir: Path, endpoint_instance_type: str, inference_precision: str) -> str:
    """The precision inference.py will serve this artifact in on the endpoint: int8 on a CPU endpoint when the
    operator pinned it or (``auto``) the artifact's int8 check cleared it; else the float network. (A CPU without
    int8 dot products serves float; the int8 check holds the two within inference.INT8_MAX_ACCURACY_DROP.)"""
    if serves_on_accelerator(endpoint_instance_type) or inference_precision not in ("auto", "int8"):
        return "float32"
    if inference.int8_unavailable(model_dir) is not None:
        return "float32"
    if inference_precision == "auto" and inference.int8_accuracy_refusal(model_dir) is not None:
        return "float32"
    return "int8"


def load_served(model_dir: Path, precision: str) -> inference.LoadedModel:
    device = torch.device("cpu") if precision == "int8" else None
    return inference.load_model(model_dir, device=device, precision=precision)


def score(
    loaded: inference.LoadedModel,
    images_nhwc: torch.Tensor,
    rows: Callable[[slice], torch.Tensor] | None = None,
) -> Scores:
    """The top-k answers for uint8 (N, H, W, 3) images already at the model's training size; ``rows``
    (``DecodedSplit.rows``) reads the batches so that an on-disk split's pages do not stay resident."""
    read = rows or images_nhwc.__getitem__
    k = min(TOP_K, len(loaded.labels))
    top: list[list[str]] = []
    probability: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(images_nhwc), SCORING_BATCH):
            pixels = read(slice(start, start + SCORING_BATCH)).permute(0, 3, 1, 2).to(loaded.device)
            logits = loaded.network(inference.centre(pixels, loaded.input_dtype)).float()
            values, indices = logits.softmax(dim=1).topk(k, dim=1)
            top += [[loaded.labels[i] for i in row] for row in indices.tolist()]
            probability += values[:, 0].tolist()
    return Scores(top, probability, loaded.precision)


def extract_artifact(champion_dir: Path, into: Path) -> Path:
    """The champion's model folder: the channel holds its model.tar.gz (or, by hand, the folder itself)."""
    archives = sorted(champion_dir.glob("*.tar.gz"))
    if not archives:
        if (champion_dir / "model.pth").is_file():
            return champion_dir
        raise FileNotFoundError(f"{champion_dir} holds no model.tar.gz and no model.pth")
    with tarfile.open(archives[0]) as archive:
        archive.extractall(into, filter="data")
    return into


# ---------------------------------------------------------------------------------------------------- summaries


def model_summary(scores: Scores, truth: list[str], paths: list[str]) -> dict[str, Any]:
    correct = scores.correct(truth)
    per_breed: dict[str, dict[str, int]] = {}
    for true, right in zip(truth, correct.tolist(), strict=True):
        entry = per_breed.setdefault(true, {"images": 0, "correct": 0})
        entry["images"] += 1
        entry["correct"] += int(right)
    confusions = Counter(
        (true, ranked[0]) for true, ranked, right in zip(truth, scores.top_k, correct, strict=True) if not right
    )
    # The most confident mistakes first: the ones a person looking at the report learns most from.
    wrong = sorted((i for i in range(len(truth)) if not correct[i]), key=lambda i: -scores.probability[i])
    return {
        "served_as": scores.served_as,
        "images": len(truth),
        "accuracy": float(correct.mean()) if len(truth) else None,
        "top5_accuracy": float(np.mean([t in ranked for t, ranked in zip(truth, scores.top_k, strict=True)]))
        if truth
        else None,
        "per_breed": dict(sorted(per_breed.items())),
        "confused_pairs": [
            {"true": true, "predicted": predicted, "count": count}
            for (true, predicted), count in confusions.most_common(CONFUSED_PAIRS)
        ],
        "misclassified": [
            {
                "path": paths[i],
                "true": truth[i],
                "predicted": scores.top_k[i][0],
                "probability": round(scores.probability[i], 4),
            }
            for i in wrong[:MISCLASSIFIED_EXAMPLES]
        ],
    }


def paired_summary(
    challenger: Scores,
    champion: Scores,
    truth: list[str],
    challenger_classes: list[str],
    champion_classes: list[str],
    *,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """The paired figures over the test images of the breeds both models know."""
    shared = set(challenger_classes) & set(champion_classes)
    keep = [i for i, true in enumerate(truth) if true in shared]
    if not keep:
        raise ValueError("the two models share no breed with test images: there is nothing to compare them on")
    shared_truth = [truth[i] for i in keep]
    challenger_correct = challenger.correct(truth)[keep]
    champion_correct = champion.correct(truth)[keep]
    challenger_only = int((challenger_correct & ~champion_correct).sum())
    champion_only = int((champion_correct & ~challenger_correct).sum())
    low, high = paired_bootstrap_interval(challenger_correct, champion_correct, confidence=confidence)
    return {
        "images": len(keep),
        "shared_breeds": len(shared),
        "breeds_only_challenger": sorted(set(challenger_classes) - shared),
        "breeds_only_champion": sorted(set(champion_classes) - shared),
        "breeds_compared": len(set(shared_truth)),
        "challenger_accuracy": float(challenger_correct.mean()),
        "champion_accuracy": float(champion_correct.mean()),
        "difference": float(challenger_correct.mean() - champion_correct.mean()),
        "interval": [low, high],
        "confidence": confidence,
        "method": f"paired bootstrap, {BOOTSTRAP_RESAMPLES} resamples (seed {BOOTSTRAP_SEED}), percentile interval",
        "challenger_only_correct": challenger_only,
        "champion_only_correct": champion_only,
        "mcnemar_p": mcnemar_exact_p(challenger_only, champion_only),
    }


# ---------------------------------------------------------------------------------------------------- the job's step


def evaluation(
    *,
    challenger_dir: Path,
    champion_dir: Path | None,
    index: dog_data.DatasetIndex,
    test: dog_data.DecodedSplit,
    endpoint_instance_type: str,
    inference_precision: str,
    max_corrupt_fraction: float,
) -> dict[str, Any]:
    """Scores the challenger (and the champion, when there is one) on the test split; never raises for a champion
    that cannot be read or scored: its entry says why, and the gate falls back to the floor."""
    started = time.perf_counter()
    truth = [index.classes[label] for label in test.labels.tolist()]
    challenger_precision = served_precision(challenger_dir, endpoint_instance_type, inference_precision)
    challenger_model = load_served(challenger_dir, challenger_precision)
    challenger = score(challenger_model, test.images, test.rows)
    result: dict[str, Any] = {
        "test_images": len(truth),
        "confidence": CONFIDENCE,
        "endpoint_instance_type": endpoint_instance_type,
        "challenger": model_summary(challenger, truth, test.paths),
        "champion": None,
        "paired": None,
    }
    if champion_dir is not None:
        try:
            result |= _with_champion(
                champion_dir, challenger, list(challenger_model.labels), truth, index, test, endpoint_instance_type,
                inference_precision, max_corrupt_fraction,
            )  # fmt: skip
        except Exception as error:  # any unreadable or unscorable artifact: the gate must hear why, not crash
            logger.warning("the champion could not be scored: %s", error)
            result["champion"] = {"error": f"{type(error).__name__}: {error}"}
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def _with_champion(
    champion_dir: Path,
    challenger: Scores,
    challenger_classes: list[str],
    truth: list[str],
    index: dog_data.DatasetIndex,
    test: dog_data.DecodedSplit,
    endpoint_instance_type: str,
    inference_precision: str,
    max_corrupt_fraction: float,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="champion-") as scratch:
        model_dir = extract_artifact(champion_dir, Path(scratch))
        precision = served_precision(model_dir, endpoint_instance_type, inference_precision)
        champion_model = load_served(model_dir, precision)
        split = test
        if champion_model.image_size != test.images.shape[1]:
            # Trained at another resolution: the test split as the champion's endpoint would prepare it.
            split = dog_data.decode_split(
                index, "test", champion_model.image_size, max_corrupt_fraction=max_corrupt_fraction
            )
        champion = score(champion_model, split.images, split.rows)
    champion_classes = list(champion_model.labels)
    return {
        "champion": model_summary(champion, truth, test.paths),
        "paired": paired_summary(challenger, champion, truth, challenger_classes, champion_classes),
    }


def write(output_data_dir: str | Path, result: dict[str, Any]) -> Path:
    path = Path(output_data_dir) / EVALUATION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return path
