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
        ("LossNotDecreasing", "not 0.1% below the first window"),
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
