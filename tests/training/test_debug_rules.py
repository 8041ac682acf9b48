"""Our Debugger rule equivalents: issues found on crafted tensors, none on healthy ones.

The trials are written by the same local hook train_model.py uses (debug_hook.create_debug_hook), on a tiny
network whose loss values and gradient sizes are scripted, so each rule sees exactly the condition it checks.
"""

from __future__ import annotations

from pathlib import Path

import debug_rules
import pytest
import torch
from debug_hook import create_debug_hook
from torch import nn

EPOCHS, TRAIN_STEPS, EVAL_STEPS = 12, 3, 1


class _Block(nn.Module):
    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        self.linear = nn.Linear(inputs, outputs)
        nn.init.kaiming_normal_(self.linear.weight, nonlinearity="relu")  # keeps activation variance across layers
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.linear(x))


class _TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block1, self.block2, self.head = _Block(8, 32), _Block(32, 32), nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block2(self.block1(x)))


class _ScriptedLoss(nn.modules.loss._Loss):
    """Returns the scripted value; its gradient is ``gradient_scale`` times that of the outputs' sum."""

    def __init__(self, gradient_scale: float) -> None:
        super().__init__()
        self.value, self.gradient_scale = 1.0, gradient_scale

    def forward(self, outputs: torch.Tensor, _labels: torch.Tensor) -> torch.Tensor:
        total = outputs.sum()
        return (total - total.detach()) * self.gradient_scale + self.value


def _record_trial(
    out_dir: Path,
    train_loss: list[list[float]],
    eval_loss: list[list[float]],
    *,
    gradient_scale: float,
    block2_weight_scale: float,
) -> str:
    network, loss = _TinyNet(), _ScriptedLoss(gradient_scale)
    network.block2.linear.weight.data *= block2_weight_scale
    hook = create_debug_hook(str(out_dir), train_save_interval=1)
    assert hook.source == "local"
    hook.register(network, loss)
    optimizer = torch.optim.SGD(network.parameters(), lr=1e-6)
    inputs, labels = torch.randn(16, 8, generator=torch.Generator().manual_seed(0)), torch.zeros(16)
    for epoch in range(EPOCHS):
        hook.set_mode("train")
        for value in train_loss[epoch]:
            loss.value = value
            optimizer.zero_grad()
            loss(network(inputs), labels).backward()
            optimizer.step()
        hook.set_mode("eval")
        with torch.no_grad():
            for value in eval_loss[epoch]:
                loss.value = value
                loss(network(inputs), labels)
    hook.close()
    return str(out_dir)


@pytest.fixture(scope="module")
def healthy_trial(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Losses fall every epoch, validation tracks training, normal gradients, variance-preserving init."""
    train = [[2.0 * 0.85 ** (epoch + step / TRAIN_STEPS) for step in range(TRAIN_STEPS)] for epoch in range(EPOCHS)]
    valid = [[1.05 * 2.0 * 0.85 ** (epoch + 1)] * EVAL_STEPS for epoch in range(EPOCHS)]
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.delenv("SMDEBUG_CONFIG_FILE_PATH", raising=False)
        return _record_trial(
            tmp_path_factory.mktemp("healthy"), train, valid, gradient_scale=1.0, block2_weight_scale=1.0
        )


@pytest.fixture(scope="module")
def sick_trial(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Flat training loss, validation loss twice the training loss, tiny gradients, one layer's weights x100."""
    train = [[1.0] * TRAIN_STEPS for _ in range(EPOCHS)]
    valid = [[2.0] * EVAL_STEPS for _ in range(EPOCHS)]
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.delenv("SMDEBUG_CONFIG_FILE_PATH", raising=False)
        return _record_trial(
            tmp_path_factory.mktemp("sick"), train, valid, gradient_scale=1e-12, block2_weight_scale=100.0
        )


def test_no_issues_on_a_healthy_trial(healthy_trial: str) -> None:
    results = debug_rules.evaluate_rules(healthy_trial)

    assert set(results) == set(debug_rules.RULES)
    for name, result in results.items():
        assert result["status"] == "NoIssuesFound", (name, result)
        assert result["details"]


@pytest.mark.parametrize(
    ("rule", "evidence"),
    [
        ("VanishingGradient", "mean |gradient|"),
        ("LossNotDecreasing", "the TRAIN loss did not come down over 35 training steps"),
        ("Overfit", "validation loss exceeds training loss by 100.0%"),
        ("Overtraining", "training loss has not improved by 0.01 for 5 epochs"),
        ("PoorWeightInitialization", "variance ratio"),
    ],
)
def test_issue_found_on_crafted_tensors(sick_trial: str, rule: str, evidence: str) -> None:
    result = debug_rules.evaluate_rules(sick_trial, [rule])[rule]

    assert result["status"] == "IssuesFound"
    assert evidence in result["details"]


def test_validation_that_stops_improving_is_overtraining(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN training loss that keeps falling while validation loss stays flat for 11 epochs
    monkeypatch.delenv("SMDEBUG_CONFIG_FILE_PATH", raising=False)
    train = [[2.0 * 0.8**epoch] * TRAIN_STEPS for epoch in range(EPOCHS)]
    valid = [[1.0] * EVAL_STEPS for _ in range(EPOCHS)]
    trial = _record_trial(tmp_path / "t", train, valid, gradient_scale=1.0, block2_weight_scale=1.0)

    # WHEN Overtraining is evaluated (patience_validation defaults to 10 epochs)
    result = debug_rules.evaluate_rules(trial, ["Overtraining"])["Overtraining"]

    # THEN it flags the validation loss
    assert result["status"] == "IssuesFound"
    assert "validation loss has not improved" in result["details"]


def test_missing_or_unfinished_trial_is_an_error(tmp_path: Path) -> None:
    assert debug_rules.evaluate_rules(str(tmp_path / "none"), ["Overfit"]) == {
        "Overfit": {"status": "Error", "details": f"no smdebug trial at {tmp_path / 'none'}"}
    }
    (tmp_path / "unfinished" / "collections").mkdir(parents=True)
    unfinished = debug_rules.evaluate_rules(str(tmp_path / "unfinished"), ["Overfit"])["Overfit"]
    assert unfinished["status"] == "Error" and "not finished" in unfinished["details"]


def test_unknown_rule_is_an_error_beside_real_results(healthy_trial: str) -> None:
    results = debug_rules.evaluate_rules(healthy_trial, ["Overfit", "ProfilerReport"])

    assert results["Overfit"]["status"] == "NoIssuesFound"
    assert results["ProfilerReport"]["status"] == "Error" and "unknown rule" in results["ProfilerReport"]["details"]


def _loss_trial(out_dir: Path, losses: list[float], *, loss_save_interval: int = 1) -> str:
    """A trial of one training phase with the given per-step losses, saved every ``loss_save_interval`` steps (as
    a job's Debugger config may), and one validation step."""
    from smdebug.core.save_config import SaveConfig

    network, loss = _TinyNet(), _ScriptedLoss(1.0)
    # Gradients and weights once (step 0), not every step: only the losses are judged here, and smdebug writes each
    # tensor's reductions in Python (every step of them took most of a 200-step test's seconds).
    hook = create_debug_hook(str(out_dir), train_save_interval=len(losses) + 1)
    hook.hook.get_collection("losses").save_config = SaveConfig(save_interval=loss_save_interval)
    hook.register(network, loss)
    inputs, labels = torch.randn(16, 8, generator=torch.Generator().manual_seed(0)), torch.zeros(16)
    hook.set_mode("train")
    for value in losses:
        loss.value = value
        loss(network(inputs), labels).backward()
    hook.set_mode("eval")
    with torch.no_grad():
        loss(network(inputs), labels)
    hook.close()
    return str(out_dir)


def _loss_not_decreasing(trial: str) -> dict[str, str]:
    return debug_rules.evaluate_rules(trial, ["LossNotDecreasing"])["LossNotDecreasing"]


@pytest.fixture
def local_hook_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMDEBUG_CONFIG_FILE_PATH", raising=False)


@pytest.mark.usefixtures("local_hook_env")
def test_loss_not_decreasing_measures_training_steps_not_saved_steps(tmp_path: Path) -> None:
    # GIVEN 60 steps of a falling loss saved every 20th step only (3 saved losses, as a sparse job config saves)
    trial = _loss_trial(tmp_path / "t", [2.0 * 0.97**step for step in range(60)], loss_save_interval=20)

    # WHEN LossNotDecreasing (num_steps 10) judges it
    result = _loss_not_decreasing(trial)

    # THEN the losses 40 training steps apart are compared (AWS's step distance), not "nothing to compare"
    assert result["status"] == "NoIssuesFound", result
    assert "from step 0 2.0000" in result["details"] and "to step 40" in result["details"]


@pytest.mark.usefixtures("local_hook_env")
def test_loss_not_decreasing_with_too_few_steps_is_not_evaluated(tmp_path: Path) -> None:
    # GIVEN losses saved over 8 training steps only, fewer than num_steps=10
    trial = _loss_trial(tmp_path / "t", [2.0 - 0.1 * step for step in range(9)])

    result = _loss_not_decreasing(trial)

    # THEN the rule says it could not judge, and what it had; it never passes
    assert result["status"] == "NotEvaluated", result
    assert "9 TRAIN loss(es) saved (steps 0-8)" in result["details"]


@pytest.mark.usefixtures("local_hook_env")
def test_loss_not_decreasing_sees_a_flat_noisy_loss_as_an_issue(tmp_path: Path) -> None:
    # GIVEN a loss that only wanders around 4.89 (a learning rate of 0: every batch differs, nothing is learned)
    noise = torch.randn(200, generator=torch.Generator().manual_seed(1)) * 0.05
    trial = _loss_trial(tmp_path / "t", [4.89 + float(value) for value in noise])

    result = _loss_not_decreasing(trial)

    assert result["status"] == "IssuesFound", result
    assert "did not come down over 199 training steps" in result["details"]


@pytest.mark.usefixtures("local_hook_env")
def test_loss_not_decreasing_accepts_a_converged_loss_that_is_flat_at_the_end(tmp_path: Path) -> None:
    # GIVEN a noisy loss that fell, then sat flat for its last 100 steps (a schedule decaying to zero): AWS's
    # pairwise comparison would flag the flat end; the question ours asks is whether training brought it down
    noise = torch.randn(200, generator=torch.Generator().manual_seed(2)) * 0.05
    losses = [max(1.0, 4.9 - 0.04 * step) + float(value) for step, value in enumerate(noise)]
    trial = _loss_trial(tmp_path / "t", losses)

    result = _loss_not_decreasing(trial)

    assert result["status"] == "NoIssuesFound", result


@pytest.mark.usefixtures("local_hook_env")
def test_loss_not_decreasing_is_not_fooled_by_a_spike_in_the_first_steps(tmp_path: Path) -> None:
    # GIVEN a loss that spikes at its second step (warm-up from scratch does that), then comes down by a third
    losses = [1.1, 9.0, 1.2, 1.1, 1.05] + [1.0 - 0.01 * step for step in range(30)]
    trial = _loss_trial(tmp_path / "t", losses)

    result = _loss_not_decreasing(trial)

    # THEN it is compared with the lowest loss of the first 10 steps (0.96): the spike neither hides nor fakes progress
    assert result["status"] == "NoIssuesFound", result
    assert "lowest of 10 from step 0 0.9600" in result["details"]


@pytest.mark.usefixtures("local_hook_env")
def test_loss_not_decreasing_flags_a_loss_that_is_not_finite(tmp_path: Path) -> None:
    trial = _loss_trial(tmp_path / "t", [2.0, 1.5, float("nan"), 1.0] + [0.5] * 20)

    result = _loss_not_decreasing(trial)

    assert result["status"] == "IssuesFound"
    assert result["details"] == "the TRAIN loss is nan at training step 2"


@pytest.mark.usefixtures("local_hook_env")
def test_rules_with_too_little_data_are_not_evaluated_never_passed(tmp_path: Path) -> None:
    # GIVEN one short epoch: 12 training steps, one validation step, no ReLU inputs past the first steps
    trial = _loss_trial(tmp_path / "t", [2.0 - 0.1 * step for step in range(12)])

    results = debug_rules.evaluate_rules(trial, ["Overtraining"])

    # THEN Overtraining (patience 5 training / 10 validation epochs) says it had one epoch of each
    assert results["Overtraining"]["status"] == "NotEvaluated"
    assert "1 training and 1 validation epochs" in results["Overtraining"]["details"]
