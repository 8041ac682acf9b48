"""What the offline run asks of the template: poll bounds, epochs per path, the floor for stand-in weights."""

from __future__ import annotations

import json
from pathlib import Path

from offline.initial_weights import InitialWeights, choose_initial_weights
from offline.run import OFFLINE_MAX_POLLS, RunOptions, parse_args

STAND_IN = choose_initial_weights("stand-in")
RANDOM = choose_initial_weights("random")


def test_no_poll_count_ends_an_offline_run_and_the_jobs_get_the_weights() -> None:
    parameters = RunOptions().template_parameters((160, 40, 40), STAND_IN)
    assert int(parameters["MaxPolls"]) == OFFLINE_MAX_POLLS >= 10**6  # 11 days of 1-second polls
    assert json.loads(parameters["ExtraHyperparameters"])["weights"] == "pretrained"
    assert parameters["NetworkIsolation"] == "true"  # the weights come through the channel: no job needs a network


def test_epochs_follow_the_path_unless_given() -> None:
    production = RunOptions().template_parameters((160, 40, 40), STAND_IN)
    scratch = RunOptions(weights="random").template_parameters((160, 40, 40), RANDOM)
    given = RunOptions(tuning_epochs=2, epochs=5).template_parameters((160, 40, 40), STAND_IN)
    assert (production["TuningEpochs"], production["TrainingEpochs"]) == ("10", "20")
    assert (scratch["TuningEpochs"], scratch["TrainingEpochs"]) == ("3", "8")
    assert (given["TuningEpochs"], given["TrainingEpochs"]) == ("2", "5")


def test_a_dataset_of_your_own_without_imagenet_weights_is_not_held_to_the_imagenet_floor() -> None:
    own = RunOptions(dataset=Path("dogs.zip"))
    imagenet = InitialWeights("imagenet", "imagenet", "ImageNet ResNet18")
    assert own.template_parameters(None, STAND_IN)["AccuracyFloor"] == "0"
    assert "AccuracyFloor" not in own.template_parameters(None, imagenet)  # the template's 0.60
    assert "AccuracyFloor" not in RunOptions().template_parameters((160, 40, 40), STAND_IN)  # the sample learns
    chosen = parse_args(["--dataset", "dogs.zip", "--parameter", "AccuracyFloor=0.3"])
    assert chosen.template_parameters(None, STAND_IN)["AccuracyFloor"] == "0.3"


def test_approve_after_is_an_option_of_the_run() -> None:
    assert parse_args(["--approve-after", "5"]).approve_after == 5.0
    assert parse_args([]).approve_after is None
