"""The run report (pipeline.common.run_report): one self-contained HTML page per run, from hand-made inputs.

The records are built by run_record.build_record from hand-made states and job descriptions, so the page is checked
against the record the pipeline really writes. The browser test opens the page in headless Chromium (Debian's
package; ``make browser`` installs it) and looks at what it drew.
"""

from __future__ import annotations

import base64
import io
import json
import random
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pipeline.common import run_record
from pipeline.common.run_report import ReportInputs, breed_name, render_report

START = datetime(2026, 11, 25, 1, 53, 43, tzinfo=UTC)
BREEDS = [
    f"{i:03d}.{name}"
    for i, name in enumerate(
        [
            "Affenpinscher",
            "Afghan_hound",
            "Airedale_terrier",
            "Akita",
            "Alaskan_malamute",
            "American_eskimo_dog",
            "American_foxhound",
            "American_staffordshire_terrier",
            "American_water_spaniel",
            "Anatolian_shepherd_dog",
            "Australian_cattle_dog",
            "Australian_shepherd",
            "Australian_terrier",
            "Basenji",
            "Basset_hound",
            "Beagle",
            "Bearded_collie",
            "Beauceron",
            "Bedlington_terrier",
            "Belgian_malinois",
            "Belgian_sheepdog",
            "Belgian_tervuren",
            "Bernese_mountain_dog",
            "Bichon_frise",
        ],
        start=1,
    )
]
TRIALS = [
    ("dogs-tune-1125-001-a1b2c3d4", "64", "0.0123", 0.8421, 312.0),
    ("dogs-tune-1125-002-e5f6a7b8", "256", "0.0021", 0.7715, 280.5),
    ("dogs-tune-1125-003-c9d0e1f2", "32", "0.0714", 0.8133, 355.1),
    ("dogs-tune-1125-004-a3b4c5d6", "128", "0.0045", 0.8302, 298.7),
    ("dogs-tune-1125-005-e7f8a9b0", "64", "0.0987", None, 41.2),
]
TRAINING_JOB = "dogs-train-1125-0153"
ENDPOINT_CONFIG = "dog-breed-classifier-config-1125"
RULE_STATUSES = {
    "VanishingGradient": ("NoIssuesFound", "gradients stayed above 1e-07 over 240 steps"),
    "LossNotDecreasing": ("NoIssuesFound", "loss fell from 4.87 to 0.61 over the last 10 steps"),
    "Overfit": ("NoIssuesFound", "validation loss within 10% of training loss"),
    "Overtraining": ("NoIssuesFound", "validation loss still improving at epoch 9"),
    "PoorWeightInitialization": ("NoIssuesFound", "activation variance ratio 1.3 across layers"),
    "LowGPUUtilization": ("NotEvaluated", "the job ran on a CPU instance: no GPU to judge"),
    "CPUBottleneck": ("NoIssuesFound", "CPU above 90% in 2% of the time"),
    "IOBottleneck": ("IssuesFound", "I/O wait above 50% in 12% of the time. Recommendation: use FastFile"),
    "StepOutlier": ("NoIssuesFound", "no step slower than 3 sigma"),
}


def _description(name: str, seconds: float, metrics: dict[str, float], spot: bool = True) -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "ResourceConfig": {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1},
        "TrainingTimeInSeconds": int(seconds),
        "BillableTimeInSeconds": int(seconds * (0.35 if spot else 1)),
        "EnableManagedSpotTraining": spot,
        "CreationTime": START + timedelta(seconds=60),
        "TrainingEndTime": START + timedelta(seconds=60 + seconds),
        "FinalMetricDataList": [{"MetricName": k, "Value": v} for k, v in metrics.items()],
    }


def _dataset(key: str = "incoming/dogImages-2026-11.zip") -> dict[str, Any]:
    return {
        "bucket": "dog-breed-data-123456789012",
        "key": key,
        "version_id": "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY",
        "etag": '"9b2cf535f27731c974343645a3985328-137"',
        "size": 1_132_023_110,
        "dataset_id": "dogimages-9b2cf535f277",
        "run_id": "run-1125-0153",
        "trigger": "upload",
        "validated_uri": "s3://dog-breed-data-123456789012/validated/dogimages-9b2cf535f277/dataset.zip",
        "class_count": 133,
        "counts": {"train": 6680, "valid": 835, "test": 836},
    }


def _rules() -> dict[str, Any]:
    return {
        "passed": True,
        "rules": {name: status for name, (status, _) in RULE_STATUSES.items()},
        "details": {name: details for name, (_, details) in RULE_STATUSES.items()},
        "sagemaker_rules": {},
        "warnings": [
            f"non-blocking rule {name} {status} ({details})"
            for name, (status, details) in RULE_STATUSES.items()
            if status != "NoIssuesFound"
        ],
        "reports_uri": f"s3://dog-breed-data-123456789012/training/{TRAINING_JOB}/output/output.tar.gz",
        "evidence": "rule_report.json, profiler_report.json",
    }


def _per_breed(rng: random.Random, breeds: list[str], skill: float) -> dict[str, dict[str, int]]:
    result = {}
    for breed in breeds:
        images = rng.randint(4, 9)
        result[breed] = {"images": images, "correct": min(images, round(images * rng.uniform(skill - 0.2, 1.0)))}
    return result


def _model(rng: random.Random, accuracy: float, served_as: str, breeds: list[str]) -> dict[str, Any]:
    return {
        "served_as": served_as,
        "accuracy": accuracy,
        "top5_accuracy": min(1.0, accuracy + 0.09),
        "per_breed": _per_breed(rng, breeds, accuracy),
        "confused_pairs": [
            {"true": breeds[i], "predicted": breeds[i + 1], "count": 6 - i // 2} for i in range(0, 10, 2)
        ],
        "misclassified": [
            {
                "path": f"test/{breeds[i]}/{breeds[i].split('.')[1]}_{i:05d}.jpg",
                "true": breeds[i],
                "predicted": breeds[i + 3],
                "probability": 0.9 - i * 0.07,
            }
            for i in range(6)
        ],
    }


def evaluation(champion: str = "scored") -> dict[str, Any]:
    rng = random.Random(7)
    document: dict[str, Any] = {
        "test_images": 836,
        "confidence": 0.95,
        "challenger": _model(rng, 0.8731, "int8", BREEDS),
        "champion": None,
        "paired": None,
    }
    if champion == "scored":
        document["champion"] = _model(rng, 0.8612, "int8", BREEDS[:-1]) | {
            "model_package_arn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/dog-breeds/7"
        }
        document["paired"] = {
            "images": 829,
            "shared_breeds": len(BREEDS) - 1,
            "breeds_only_challenger": [BREEDS[-1]],
            "breeds_only_champion": [],
            "challenger_accuracy": 0.8731,
            "champion_accuracy": 0.8612,
            "difference": 0.0119,
            "interval": [-0.0084, 0.0323],
            "method": "paired bootstrap, 10000 resamples",
            "mcnemar_p": 0.2413,
            "challenger_only_correct": 41,
            "champion_only_correct": 31,
        }
    elif champion == "unscored":
        document["champion"] = {"error": "the serving model's artifact s3://old/model.tar.gz no longer exists"}
    return document


def _gate(comparison: str, passed: bool = True, champion_accuracy: float | None = 0.8612) -> dict[str, Any]:
    reasons = {
        "paired": "test accuracy 0.8731 (int8, as it will serve) reaches the floor 0.6000; on the same 829 test "
        "images the new model scores 0.8731 and the serving model 0.8612: difference +0.0119, 95% interval "
        "[-0.0084, +0.0323]: not worse than the serving model by more than the tolerance 0.0200",
        "no champion": "test accuracy 0.8731 (int8, as it will serve) reaches the floor 0.6000; no model is serving "
        "yet",
        "champion unscored": "test accuracy 0.8731 (int8, as it will serve) reaches the floor 0.6000; the serving "
        "model could not be scored on the same images, so only the floor applied",
    }
    return {
        "passed": passed,
        "reason": reasons[comparison],
        "challenger_accuracy": 0.8731,
        "champion_accuracy": champion_accuracy if comparison == "paired" else None,
        "floor": 0.6,
        "tolerance": 0.02,
        "comparison": comparison,
        "paired": evaluation()["paired"] if comparison == "paired" else None,
        "per_breed_tolerance": None,
        "served_as": "int8",
        "top5_accuracy": 0.9631,
        "model_package_arn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/dog-breeds/8",
    }


def _state(kind: str) -> dict[str, Any]:
    state: dict[str, Any] = {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "time": "2026-11-25T01:53:40Z",
        "lease": {"acquired": True, "holder": "run-1125-0153"},
        "dedupe": {"train": True, "reason": "a new dataset object"},
        "dataset": _dataset(),
        "tuning": {"job_name": "dogs-tune-1125"},
        "best": {
            "training_job_name": TRIALS[0][0],
            "objective": {"name": "valid:accuracy", "value": TRIALS[0][3]},
            "hyperparameters": {"batch_size": "64", "learning_rate": "0.0123"},
        },
        "training": {"job_name": TRAINING_JOB},
    }
    if kind == "failed":
        cause = {
            "errorMessage": f"training job {TRAINING_JOB} failed the rule gate (the training job's reports): "
            "LossNotDecreasing IssuesFound (loss rose from 0.61 to 2.3)",
            "errorType": "RuleIssuesFound",
            "stackTrace": ['  File "/var/task/pipeline/check_rules.py", line 72, in _raise_if_failed\n'],
        }
        return state | {"error": {"Error": "RuleIssuesFound", "Cause": json.dumps(cause)}}
    comparison = {"champion": "paired", "first": "no champion", "unscored": "champion unscored"}[kind]
    action = "create" if kind == "first" else "update"
    return state | {
        "rules": _rules(),
        "gate": _gate(comparison),
        "deployment": {
            "endpoint": "dog-breed-classifier",
            "endpoint_config": ENDPOINT_CONFIG,
            "model": "dog-breed-model-1125",
            "action": action,
            "previous_endpoint_config": None if action == "create" else "dog-breed-classifier-config-1101",
            "deployment_config": {}
            if action == "create"
            else {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 300},
                    "TerminationWaitInSeconds": 120,
                },
                "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "dog-breed-5xx"}]},
            },
            "status": {"status": "InService", "serving_config": ENDPOINT_CONFIG, "done": True, "polls": 9},
        },
    }


def record(kind: str) -> dict[str, Any]:
    trials = [_description(name, seconds, {}) for name, _, _, _, seconds in TRIALS]
    training = _description(TRAINING_JOB, 1460.0, {"test:accuracy": 0.8731, "valid:accuracy": 0.8563})
    return run_record.build_record(
        _state(kind),
        "run-1125-0153",
        "arn:aws:states:us-east-1:123456789012:execution:retrain:run-1125-0153",
        START,
        START + timedelta(seconds=2950),
        {"CreationTime": START + timedelta(seconds=20), "HyperParameterTuningEndTime": START + timedelta(seconds=1400)},
        training,
        trials,
        {"ml.g4dn.xlarge": 0.736, "ml.m5.large": 0.115},
        ("ml.m5.large", 1),
    )


def trials() -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "status": "Completed" if objective is not None else "Stopped",
            "objective": objective,
            "duration_seconds": seconds,
            "hyperparameters": {"batch_size": batch, "learning_rate": rate},
        }
        for name, batch, rate, objective, seconds in TRIALS
    ]


def history(epochs: int = 10) -> list[dict[str, Any]]:
    return [
        {
            "epoch": e,
            "train_loss": 4.2 * 0.72**e + 0.3,
            "valid_loss": 4.0 * 0.75**e + 0.45,
            "valid_accuracy": 0.86 - 0.7 * 0.68**e,
            "images_per_second": 410.0 + e,
            "data_seconds": 2.1,
            "compute_seconds": 14.2,
            "train_image_size": 224,
        }
        for e in range(1, epochs + 1)
    ]


def timeline(failed_at: str | None = None) -> list[dict[str, Any]]:
    plan: list[tuple[str, float]] = [
        ("LoadRunSettings", 0.1),
        ("ClaimPipeline", 0.6),
        ("IsPipelineFree", 0.0),
        ("ValidateDataset", 4.2),
        ("CheckAlreadyTrained", 0.4),
        ("IsNewDataset", 0.0),
        ("StartTuning", 1.9),
    ]
    for _ in range(6):
        plan += [("WaitForTuning", 220.0), ("GetTuningStatus", 0.5), ("IsTuningDone", 0.0)]
    plan += [("PickBestJob", 0.8), ("StartTraining", 1.4)]
    for _ in range(6):
        plan += [("WaitForTraining", 240.0), ("GetTrainingStatus", 0.5), ("IsTrainingDone", 0.0)]
    plan += [("CheckRules", 3.1)]
    if failed_at:
        plan += [("NotifyFailure", 0.7), ("RecordRun", 1.2), ("ReleasePipeline", 0.4), ("RunFailed", 0.0)]
    else:
        plan += [("EvaluateModel", 2.4), ("DeployEndpoint", 3.3)]
        for _ in range(3):
            plan += [("WaitForEndpoint", 60.0), ("GetEndpointStatus", 0.4), ("IsEndpointReady", 0.0)]
        plan += [("ApproveModel", 0.9), ("RecordRun", 1.2), ("ReleasePipeline", 0.4), ("RetrainingSucceeded", 0.0)]
    entries, moment = [], START
    for state, seconds in plan:
        status = "failed" if state == failed_at else "succeeded"
        entries.append({"state": state, "entered": moment.isoformat(), "seconds": seconds, "status": status})
        moment += timedelta(seconds=seconds)
    return entries


def jpeg(seed: int, size: int = 320) -> bytes:
    image = Image.new("RGB", (size, size))
    pixels = image.load()
    assert pixels is not None
    for x in range(size):
        for y in range(size):
            pixels[x, y] = ((x * 3 + seed * 40) % 256, (y * 2 + seed * 70) % 256, ((x + y) + seed * 25) % 256)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def thumbnails(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"jpeg": jpeg(i), "true": m["true"], "predicted": m["predicted"], "probability": m["probability"]}
        for i, m in enumerate(document["challenger"]["misclassified"][:4])
    ]


SMALL_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="60" viewBox="0 0 200 60">'
    '<rect x="5" y="5" width="90" height="40" fill="#dafbe1" stroke="#1a7f37"/>'
    '<text x="12" y="30">ValidateDataset</text></svg>'
)


def succeeded_inputs(svg: str = SMALL_SVG) -> ReportInputs:
    document = evaluation("scored")
    return ReportInputs(
        record=record("champion"),
        trials=trials(),
        history=history(),
        rules=_rules(),
        evaluation=document,
        thumbnails=thumbnails(document),
        timeline=timeline(),
        state_machine_svg=svg,
    )


# ---------------------------------------------------------------------------------------------------- checks


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def tags_of(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    parser.close()
    return parser


def external_references(page: str) -> list[str]:
    """Anything the page would fetch or run: scripts, stylesheets, imports, url() and src/href not local."""
    parsed = tags_of(page)
    found = [tag for tag, _ in parsed.tags if tag in ("script", "link", "iframe", "object", "embed")]
    for tag, attributes in parsed.tags:
        for name, value in attributes.items():
            if name in ("src", "href", "xlink:href") and not value.startswith(("#", "data:image/")):
                found.append(f"<{tag} {name}={value}>")
            if name.startswith("on"):
                found.append(f"<{tag} {name}>")
            if "url(" in value and not re.fullmatch(r"url\(#[^)]+\)", value.strip()):
                found.append(f"<{tag} {name}={value}>")
    styles = " ".join(parsed.styles)
    found += re.findall(r"@import|url\(", styles)
    return found


def text_of(page: str) -> str:
    """The page's visible text, roughly: tags out, entities as they read."""
    import html

    page = re.sub(r"<svg\b.*?</svg>", " ", page, flags=re.S)
    page = re.sub(r"<style>.*?</style>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def rule_row(page: str, name: str) -> str:
    match = re.search(rf"<tr><td>{name}(?:<br>.*?)?</td>(.*?)</tr>", page)
    assert match, name
    return match.group(1)


# ----------------------------------------------------------------------------------------------------- tests


def test_succeeded_run_with_a_champion_shows_the_key_numbers_and_every_section() -> None:
    page = render_report(succeeded_inputs())
    text = text_of(page)
    assert "Succeeded" in text and "the new model was deployed" in text
    for number in ("87.31%", "86.12%", "+1.19 pp", "[-0.84, +3.23] pp", "deploy", "tolerance 2.00 pp"):
        assert number in text, number
    for anchor in ("decision", "evaluation", "training", "tuning", "rules", "dataset", "deployment", "cost"):
        assert f'<section id="{anchor}">' in page, anchor
    assert 'id="timeline"' in page and 'id="graph"' in page and 'id="error"' not in page
    # Dataset: counts per split, classes, where it came from.
    for fact in (
        "6680",
        "835",
        "836",
        "8351",
        "133",
        "s3://dog-breed-data-123456789012/incoming/dogImages-2026-11.zip",
    ):
        assert fact in text, fact
    assert "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY" in text
    # Deployment: blue/green all at once, no rollback; the run's cost from the record.
    assert "ALL_AT_ONCE" in text and "no rollback" in text and "dog-breed-classifier-config-1101" in text
    assert f"${record('champion')['cost']['total_usd']:.4f}" in text
    # Champion vs challenger: breeds readable, McNemar, the breed only the new model knows.
    assert "Affenpinscher" in text and "001.Affenpinscher" not in text.replace("test/001.Affenpinscher", "")
    assert "Bichon frise" in text and "0.241" in text
    assert page.count('<figure class="plot">') == 5  # interval, breed changes, training, tuning, timeline
    assert page.count("data:image/jpeg;base64,") == 4


def test_breed_labels_read_as_names() -> None:
    assert breed_name("001.Affenpinscher") == "Affenpinscher"
    assert breed_name("023.German_shepherd_dog") == "German shepherd dog"
    assert breed_name("Poodle") == "Poodle"


def test_tuning_leaderboard_is_sorted_by_objective_with_the_unscored_trial_last() -> None:
    page = render_report(succeeded_inputs())
    tuning = page[page.index('<section id="tuning">') : page.index('<section id="rules">')]
    order = re.findall(r"dogs-tune-1125-\d{3}", tuning)
    assert order[:5] == [
        "dogs-tune-1125-001",
        "dogs-tune-1125-004",
        "dogs-tune-1125-003",
        "dogs-tune-1125-002",
        "dogs-tune-1125-005",
    ]
    assert "84.21%" in tuning and "★" in tuning and "0.0123" in tuning


def test_categorical_values_reported_json_quoted_read_as_numbers() -> None:
    quoted = [t | {"hyperparameters": {"batch_size": f'"{t["hyperparameters"]["batch_size"]}"'}} for t in trials()]
    page = render_report(ReportInputs(trials=quoted))
    assert "&quot;64&quot;" not in page and "<td class=n>64</td>" in page
    assert page.count('<figure class="plot">') == 1  # the objective over batch size, on numbers


def test_not_evaluated_never_looks_like_a_pass() -> None:
    page = render_report(succeeded_inputs())
    assert 'class="st pass"' in rule_row(page, "Overfit")
    not_evaluated = rule_row(page, "LowGPUUtilization")
    assert 'class="st na"' in not_evaluated and "not a pass" in not_evaluated and 'pass"' not in not_evaluated
    assert 'class="st fail"' in rule_row(page, "IOBottleneck")
    assert "no GPU to judge" in not_evaluated
    assert "1 not evaluated (never counted as a pass)" in text_of(page)
    assert "non-blocking" in page[page.index("<td>IOBottleneck") : page.index("<td>StepOutlier")]
    assert "non-blocking" not in page[page.index("<td>Overfit") : page.index("<td>Overtraining")]


def test_first_run_without_a_champion() -> None:
    document = evaluation("none")
    page = render_report(ReportInputs(record=record("first"), trials=trials(), history=history(), evaluation=document))
    text = text_of(page)
    assert "87.31%" in text and "none yet" in text and "no paired comparison" in text
    assert "First model: no serving model to compare with" in text
    assert "Champion (serving model)" not in text and "no rollback" in text and "create" in text
    # Rules from the record when not given apart.
    assert 'class="st na"' in rule_row(page, "LowGPUUtilization")


def test_failed_run_shows_what_failed_first_and_no_evaluation() -> None:
    page = render_report(ReportInputs(record=record("failed"), trials=trials(), timeline=timeline("CheckRules")))
    text = text_of(page)
    assert page.index('<section id="error"') < page.index('<section id="decision">')
    error = text_of(page[page.index('<section id="error"') : page.index('<section id="decision">')])
    assert "CheckRules" in error and "RuleIssuesFound" in error
    assert "LossNotDecreasing IssuesFound (loss rose from 0.61 to 2.3)" in error
    assert "Stack trace" in error and "errorMessage" not in error
    assert "Failed" in text and "the run failed before the gate" in text
    assert "No paired evaluation for this run" in text and "No deployment was made by this run" in text
    assert "The run failed in CheckRules" in text


def test_champion_that_could_not_be_scored() -> None:
    page = render_report(ReportInputs(record=record("unscored"), evaluation=evaluation("unscored")))
    text = text_of(page)
    assert "not scored" in text and "87.31%" in text
    assert "The serving model could not be scored: the serving model's artifact s3://old/model.tar.gz" in text
    assert "Champion (serving model)" not in text and "Per-breed gains" not in text


def test_the_page_fetches_nothing() -> None:
    for inputs in (
        succeeded_inputs(),
        ReportInputs(record=record("failed"), timeline=timeline("CheckRules")),
        ReportInputs(record=record("first"), evaluation=evaluation("none")),
        ReportInputs(),
    ):
        page = render_report(inputs)
        assert external_references(page) == []
        assert "<script" not in page.lower()
        assert "http://" not in page.replace(SMALL_SVG, "") and "https://" not in page


def test_hostile_text_is_escaped() -> None:
    hostile = "<script>alert(1)</script>"
    document = evaluation("scored")
    document["challenger"]["confused_pairs"][0]["true"] = f"099.{hostile}"
    document["challenger"]["per_breed"]["100.$5_$dog"] = {"images": 5, "correct": 5}
    document["champion"]["per_breed"]["100.$5_$dog"] = {"images": 5, "correct": 0}
    state = _state("failed")
    state["dataset"]["key"] = 'incoming/"><img src=x onerror=alert(2)>.zip'
    state["error"]["Cause"] = "<img src=y onerror=alert(3)> & more"
    hostile_record = run_record.build_record(
        state, "run-<b>", "arn", START, START + timedelta(seconds=5), None, None, [], {}, ("ml.m5.large", 1)
    )
    timeline_entries = [{"state": hostile, "entered": START.isoformat(), "seconds": 1.0, "status": "failed"}]
    hostile_trial = {"name": hostile, "status": hostile, "objective": 0.5, "hyperparameters": {"batch_size": "$x$"}}
    trials_entries = [*trials(), hostile_trial]
    page = render_report(
        ReportInputs(record=hostile_record, evaluation=document, timeline=timeline_entries, trials=trials_entries)
    )
    tags = tags_of(page).tags
    assert not [tag for tag, _ in tags if tag in ("script", "img")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=y onerror=alert(3)&gt; &amp; more" in page
    assert "run-&lt;b&gt;" in page
    assert external_references(page) == []


def test_same_inputs_give_the_same_page() -> None:
    assert render_report(succeeded_inputs()) == render_report(succeeded_inputs())


def test_thumbnails_are_downscaled_jpegs() -> None:
    page = render_report(succeeded_inputs())
    images = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    assert len(images) == 4
    for encoded in images:
        with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
            assert image.format == "JPEG" and max(image.size) <= 128
    broken = ReportInputs(evaluation=evaluation("none"), thumbnails=[{"jpeg": b"not a jpeg", "true": "001.A"}])
    assert "image unreadable" in render_report(broken)


def test_plot_ids_are_unique_across_the_page() -> None:
    page = render_report(succeeded_inputs())
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    for reference in re.findall(r'href="#([^"]+)"|url\(#([^)]+)\)', page):
        assert (reference[0] or reference[1]) in ids


def test_nothing_at_all_still_renders() -> None:
    text = text_of(render_report(ReportInputs()))
    assert "Retraining run report" in text and "No tuning trials" in text


# ---------------------------------------------------------------------------------------------------- browser

CHROMIUM = "/usr/bin/chromium"


def chromium() -> str:
    path = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    if not path:
        pytest.fail(f"headless Chromium is missing ({CHROMIUM}): `make browser` installs it (Debian's chromium)")
    return path


def run_chromium(html_file: Path, profile: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *arguments,
        html_file.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def screenshot(html_file: Path, png: Path, profile: Path, height: int = 4000) -> None:
    result = run_chromium(html_file, profile, f"--screenshot={png}", f"--window-size=1280,{height}")
    assert png.is_file(), f"chromium wrote no screenshot (exit {result.returncode}): {result.stderr[-2000:]}"


@pytest.mark.slow
def test_the_page_renders_in_a_browser(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_report(succeeded_inputs()))
    png = tmp_path / "report.png"
    screenshot(page, png, tmp_path / "profile")
    with Image.open(png) as image:
        rgb = image.convert("RGB")
        assert rgb.size == (1280, 4000)
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 200, "the screenshot is (nearly) one colour"
        white = max(count for count, colour in colours if colour == (255, 255, 255)) if colours else 0
        assert white < 0.97 * rgb.size[0] * rgb.size[1], "the screenshot is blank"
        # The plots drew: the interval plot's green point and the red tolerance line are on the page.
        assert any(colour == (0x1A, 0x7F, 0x37) for _, colour in colours)
    dom = run_chromium(page, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = text_of(dom.stdout)
    for number in ("87.31%", "86.12%", "+1.19 pp", "[-0.84, +3.23] pp", "deploy", "Bernese mountain dog"):
        assert number in rendered, number
    assert dom.stdout.count("<svg") == 6  # five plots and the state machine, parsed as SVG


def test_what_the_caller_could_not_read_is_said_at_the_top() -> None:
    note = "part of the final training job's outputs could not be read: <NoSuchKey>"
    page = render_report(ReportInputs(record=record("first"), notes=[note]))
    assert page.index("could not be read: &lt;NoSuchKey&gt;") < page.index('<section id="decision">')


def test_a_persons_decision_and_an_approval_timeout_are_on_the_page() -> None:
    gate = {"passed": True, "reason": "passed the gates", "challenger_accuracy": 0.8, "model_package_arn": "arn:pkg/3"}
    decision = {"status": "Rejected", "approved_by": "arn:aws:sts::1:assumed-role/ml-lead/ana", "description": "<no>"}
    rejected = render_report(ReportInputs(record={"outcome": "rejected", "gate": gate, "approval_decision": decision}))
    assert "Rejected by <code>arn:aws:sts::1:assumed-role/ml-lead/ana</code>: &lt;no&gt;" in rejected
    timed_out = render_report(ReportInputs(record={"outcome": "approval_timed_out", "gate": gate}))
    assert "Approval timed out" in timed_out and "nobody decided within ApprovalTimeoutHours" in timed_out
