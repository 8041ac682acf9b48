"""Our equivalents of SageMaker's built-in Debugger rules, as smdebug ``Rule`` subclasses, and one entry point.

The built-in rules are not in the smdebug package (they live only in AWS's rule container), so these
reimplement the ones the pipeline configures, with the built-ins' names and main parameters. Two callers share
``evaluate_rules``: train_model.py (on its own saved tensors, written to ``rule_report.json`` so the pipeline's
gate has evidence when SageMaker Debugger is off for the account) and the offline run's local rule evaluation.

Where we differ from the built-ins, on purpose:
- LossNotDecreasing measures distances in training steps, as AWS's rule does (a loss is compared with one saved at
  least ``num_steps`` training steps earlier, however often losses were saved), but it asks one question of the
  whole job: did the training loss come down from where training started? AWS's version compares every saved
  loss with its predecessor ``num_steps`` back and fires on the first pair that did not decrease by
  ``diff_percent``; on per-batch losses that fires on noise, and on every healthy run whose learning rate decays
  to zero (the loss is flat at the end by design), which a blocking rule cannot afford. Ours compares the mean of
  the saved losses over the last ``num_steps`` training steps with the *lowest* saved loss of the first
  ``num_steps``: an issue unless the mean is ``diff_percent`` % below it, and at once when a loss is not finite.
  Against the lowest early loss, batch-to-batch noise cannot pass for progress (a flat loss's late mean sits above
  the minimum of its early values), while an unstable first step cannot hide real progress. With losses saved
  less often than every ``num_steps`` steps each window holds one loss, which is AWS's comparison exactly.
- Per-batch losses of different batches are not comparable one by one, so Overfit and Overtraining compare means
  over each training/evaluation phase (a phase is a run of consecutive steps in one mode, i.e. an epoch's training
  or validation). Overtraining's patience therefore counts phases (epochs), not steps.
- Gradient and activation checks read scalar reductions (mean |g|, variance, min, max) when only those were
  saved, and compute them from full tensors otherwise.

Result per rule: ``{"status": "NoIssuesFound" | "IssuesFound" | "NotEvaluated" | "Error", "details": str}``.
A rule never passes without judging: "NotEvaluated" means the trial held too little for it (no such tensors,
fewer steps or epochs than its parameters need) and says what it had; "Error" means the evaluation itself failed
(smdebug missing, an unreadable trial, a bug) and says why.
"""

from __future__ import annotations

import collections
import inspect
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

NO_ISSUES, ISSUES, NOT_EVALUATED, ERROR = "NoIssuesFound", "IssuesFound", "NotEvaluated", "Error"
TRAINING_END_MARKER = "training_job_end.ts"  # written by the hook's close()

try:
    from smdebug import modes
    from smdebug.exceptions import NoMoreData, RuleEvaluationConditionMet
    from smdebug.rules.rule import Rule
    from smdebug.rules.rule_invoker import invoke_rule
    from smdebug.trials import create_trial

    SMDEBUG_IMPORT_ERROR: str | None = None
except Exception as _error:  # the rules are optional: training and the report must work without smdebug
    SMDEBUG_IMPORT_ERROR = f"{type(_error).__name__}: {_error}"
    Rule = object


class RuleNotApplicable(Exception):
    """The trial lacks the tensors this rule reads."""


def _loss_tensor_name(trial: Any) -> str:
    names = trial.tensor_names(collection="losses")
    if not names:
        raise RuleNotApplicable("the trial has no tensors in the 'losses' collection")
    return names[0]


def _mode_and_step(trial: Any, step: int) -> tuple[Any, int]:
    return trial.mode_modestep(step)


def _loss_at(trial: Any, loss_name: str, step: int) -> tuple[Any, float] | None:
    mode, mode_step = _mode_and_step(trial, step)
    tensor = trial.tensor(loss_name)
    if mode_step not in tensor.steps(mode=mode):
        return None
    return mode, float(tensor.value(mode_step, mode=mode))


class _LocalRule(Rule):  # type: ignore[misc, valid-type]
    """Adds what the report needs: a finding when the condition is met, a summary when it is not."""

    def __init__(self, base_trial: Any) -> None:
        super().__init__(base_trial, action_str="")
        self.finding = ""
        self.last_step = max(base_trial.steps())

    def summary(self) -> str:
        return "no issues found"

    def not_evaluated(self) -> str | None:
        """Why the rule could not judge the trial (too little data), or None when it did."""
        return None

    def found(self, message: str) -> bool:
        self.finding = message
        return True


class _PhaseRule(_LocalRule):
    """Groups losses into phases: consecutive steps of one mode (an epoch's training, then its validation)."""

    def __init__(self, base_trial: Any) -> None:
        super().__init__(base_trial)
        self.loss_name = _loss_tensor_name(base_trial)
        self.phases: list[tuple[Any, list[float]]] = []

    def invoke_at_step(self, step: int) -> bool:
        loss = _loss_at(self.base_trial, self.loss_name, step)
        if loss is not None:
            mode, value = loss
            if self.phases and self.phases[-1][0] == mode:
                self.phases[-1][1].append(value)
            else:
                if self.phases and self.check_closed_phases():
                    return True
                self.phases.append((mode, [value]))
        return step >= self.last_step and self.check_closed_phases()

    def check_closed_phases(self) -> bool:
        raise NotImplementedError


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


class VanishingGradient(_LocalRule):
    """Issue when the mean |gradient| of any saved gradient tensor falls below ``threshold``."""

    def __init__(self, base_trial: Any, threshold: float = 1e-7) -> None:
        super().__init__(base_trial)
        self.threshold = float(threshold)
        self.gradient_names = base_trial.tensor_names(collection="gradients")
        if not self.gradient_names:
            raise RuleNotApplicable("the trial has no tensors in the 'gradients' collection")
        self.smallest: tuple[float, str, int] | None = None

    def invoke_at_step(self, step: int) -> bool:
        mode, mode_step = _mode_and_step(self.base_trial, step)
        for name in self.gradient_names:
            tensor = self.base_trial.tensor(name)
            if mode_step not in tensor.steps(mode=mode):
                continue
            mean_abs = float(tensor.reduction_value(mode_step, "mean", abs=True, mode=mode))
            if self.smallest is None or mean_abs < self.smallest[0]:
                self.smallest = (mean_abs, name, step)
            if mean_abs < self.threshold:
                return self.found(
                    f"{name}: mean |gradient| {mean_abs:.3g} < threshold {self.threshold:g} at step {step}"
                )
        return False

    def not_evaluated(self) -> str | None:
        return "no gradient values were saved at any step" if self.smallest is None else None

    def summary(self) -> str:
        assert self.smallest is not None
        value, name, step = self.smallest
        return f"smallest mean |gradient| {value:.3g} ({name}, step {step}) >= threshold {self.threshold:g}"


class LossNotDecreasing(_LocalRule):
    """Issue when the training loss did not come down from where training started (see the module docstring):
    the mean loss of the last ``num_steps`` training steps is not ``diff_percent`` % below the lowest loss of the
    first ``num_steps``; or a loss is not finite."""

    def __init__(self, base_trial: Any, num_steps: int = 10, diff_percent: float = 0.1, mode: str = "TRAIN") -> None:
        super().__init__(base_trial)
        self.num_steps, self.diff_percent = int(num_steps), float(diff_percent)
        self.mode = getattr(modes, mode)
        self.loss_name = _loss_tensor_name(base_trial)
        self.losses: list[tuple[int, float]] = []  # (training step, loss)
        self.comparison: dict[str, Any] | None = None

    def invoke_at_step(self, step: int) -> bool:
        loss = _loss_at(self.base_trial, self.loss_name, step)
        if loss is not None and loss[0] == self.mode:
            _, mode_step = _mode_and_step(self.base_trial, step)
            if not math.isfinite(loss[1]):
                return self.found(f"the {self.mode.name} loss is {loss[1]} at training step {mode_step}")
            self.losses.append((mode_step, loss[1]))
        return step >= self.last_step and self._judge()

    def _judge(self) -> bool:
        if self.not_evaluated():
            return False
        first_step, last_step = self.losses[0][0], self.losses[-1][0]
        # Windows of num_steps training steps at both ends, shrunk so they never share a loss.
        width = min(self.num_steps, (last_step - first_step + 1) // 2)
        start = [value for step, value in self.losses if step < first_step + width]
        end = [value for step, value in self.losses if step > last_step - width]
        self.comparison = {
            "first_step": first_step,
            "last_step": last_step,
            "start_lowest": min(start),
            "start_count": len(start),
            "end_mean": _mean(end),
            "end_count": len(end),
        }
        if self._decrease() >= self.diff_percent:
            return False
        return self.found(
            f"the {self.mode.name} loss did not come down over {last_step - first_step} training steps: "
            f"{self._describe()} (needs {self.diff_percent:g}%)"
        )

    def _decrease(self) -> float:
        assert self.comparison is not None
        lowest = self.comparison["start_lowest"]
        return (lowest - self.comparison["end_mean"]) / max(abs(lowest), 1e-12) * 100

    def _describe(self) -> str:
        c = self.comparison
        assert c is not None
        return (
            f"mean of {c['end_count']} loss(es) to step {c['last_step']} {c['end_mean']:.4f}, lowest of "
            f"{c['start_count']} from step {c['first_step']} {c['start_lowest']:.4f}: {self._decrease():.2f}% lower"
        )

    def not_evaluated(self) -> str | None:
        if len(self.losses) < 2 or self.losses[-1][0] - self.losses[0][0] < self.num_steps:
            span = f"steps {self.losses[0][0]}-{self.losses[-1][0]}" if self.losses else "no steps"
            return (
                f"{len(self.losses)} {self.mode.name} loss(es) saved ({span}): comparing needs two at least "
                f"num_steps={self.num_steps} training steps apart; save losses more often or train longer"
            )
        return None

    def summary(self) -> str:
        return f"the loss came down: {self._describe()}"


class Overfit(_PhaseRule):
    """Issue when validation loss exceeds the training loss by more than ``ratio_threshold`` (relative) for
    ``patience`` validations in a row; training loss is the mean of the last ``num_steps`` before validating."""

    def __init__(
        self, base_trial: Any, start_step: int = 0, patience: int = 1, ratio_threshold: float = 0.1, num_steps: int = 10
    ) -> None:
        super().__init__(base_trial)
        self.start_step, self.patience = int(start_step), int(patience)
        self.ratio_threshold, self.num_steps = float(ratio_threshold), int(num_steps)
        self.ratios: list[float] = []
        self.checked = 0

    def check_closed_phases(self) -> bool:
        if len(self.phases) < 2:
            return False
        (train_mode, train_losses), (eval_mode, eval_losses) = self.phases[-2], self.phases[-1]
        if train_mode != modes.TRAIN or eval_mode != modes.EVAL or self.checked >= len(self.phases):
            return False
        self.checked = len(self.phases)
        train_loss = _mean(train_losses[-self.num_steps :])
        ratio = (_mean(eval_losses) - train_loss) / max(abs(train_loss), 1e-12)
        self.ratios.append(ratio)
        recent = self.ratios[-self.patience :]
        if len(recent) == self.patience and all(value > self.ratio_threshold for value in recent):
            return self.found(
                f"validation loss exceeds training loss by {ratio:.1%} (threshold {self.ratio_threshold:.0%}) "
                f"for {self.patience} validation(s) in a row, at validation {len(self.ratios)}"
            )
        return False

    def not_evaluated(self) -> str | None:
        return None if self.ratios else "no training phase followed by a validation phase: nothing to compare"

    def summary(self) -> str:
        return f"(valid - train) / train loss per validation: {', '.join(f'{r:.1%}' for r in self.ratios)}"


class Overtraining(_PhaseRule):
    """Issue when the mean training loss has not improved by ``delta`` for ``patience_train`` epochs, or the
    mean validation loss for ``patience_validation`` epochs (patience counted in phases, see module docstring)."""

    def __init__(
        self, base_trial: Any, patience_train: int = 5, patience_validation: int = 10, delta: float = 0.01
    ) -> None:
        super().__init__(base_trial)
        self.patience = {modes.TRAIN: int(patience_train), modes.EVAL: int(patience_validation)}
        self.delta = float(delta)
        self.best: dict[Any, float] = {}
        self.stale: dict[Any, int] = {modes.TRAIN: 0, modes.EVAL: 0}
        self.closed = 0

    def check_closed_phases(self) -> bool:
        for mode, losses in self.phases[self.closed :]:
            self.closed += 1
            if mode not in self.patience:
                continue
            mean_loss = _mean(losses)
            if mode not in self.best or mean_loss < self.best[mode] - self.delta:
                self.best[mode], self.stale[mode] = min(mean_loss, self.best.get(mode, mean_loss)), 0
                continue
            self.stale[mode] += 1
            if self.stale[mode] >= self.patience[mode]:
                name = "training" if mode == modes.TRAIN else "validation"
                return self.found(
                    f"{name} loss has not improved by {self.delta} for {self.stale[mode]} epochs "
                    f"(best {self.best[mode]:.4f}, latest {mean_loss:.4f})"
                )
        return False

    def not_evaluated(self) -> str | None:
        counts = collections.Counter(mode for mode, _ in self.phases)
        if any(counts[mode] > patience for mode, patience in self.patience.items()):
            return None
        return (
            f"{counts[modes.TRAIN]} training and {counts[modes.EVAL]} validation epochs: judging needs more than "
            f"patience_train={self.patience[modes.TRAIN]} or patience_validation={self.patience[modes.EVAL]}"
        )

    def summary(self) -> str:
        return f"epochs without improvement: training {self.stale[modes.TRAIN]}, validation {self.stale[modes.EVAL]}"


class PoorWeightInitialization(_LocalRule):
    """Issue in the first ``steps`` training steps when the variance of the ReLU inputs differs across layers by
    more than ``threshold`` (max/min), or a layer's inputs all lie within ``distribution_range`` (dead layer),
    at ``patience`` or more of those steps (all of them when fewer were saved)."""

    def __init__(
        self,
        base_trial: Any,
        activation_inputs_regex: str = ".*relu_input",
        threshold: float = 10.0,
        distribution_range: float = 0.001,
        patience: int = 5,
        steps: int = 10,
    ) -> None:
        super().__init__(base_trial)
        self.threshold, self.distribution_range = float(threshold), float(distribution_range)
        self.patience, self.steps = int(patience), int(steps)
        pattern = re.compile(activation_inputs_regex)
        # Saved names carry an input index suffix (layer1.0.relu_input_0), so match the start like smdebug does.
        self.names = [name for name in base_trial.tensor_names() if pattern.match(name)]
        if not self.names:
            raise RuleNotApplicable(
                f"no tensors match {activation_inputs_regex!r}: nothing to judge when only the classifier head "
                "trains on a frozen pretrained backbone; with layers trained from scratch, save ReLU inputs"
            )
        self.bad_steps: list[str] = []
        self.checked_steps = 0
        self.ratios: list[float] = []

    def invoke_at_step(self, step: int) -> bool:
        mode, mode_step = _mode_and_step(self.base_trial, step)
        if mode != modes.TRAIN or mode_step >= self.steps:
            return False
        variances, dead = [], []
        for name in self.names:
            tensor = self.base_trial.tensor(name)
            if mode_step not in tensor.steps(mode=mode):
                continue
            variances.append(float(tensor.reduction_value(mode_step, "variance", mode=mode)))
            spread = max(
                abs(float(tensor.reduction_value(mode_step, "max", mode=mode))),
                abs(float(tensor.reduction_value(mode_step, "min", mode=mode))),
            )
            if spread <= self.distribution_range:
                dead.append(name)
        if not variances:
            return False
        self.checked_steps += 1
        ratio = max(variances) / max(min(variances), 1e-30)
        self.ratios.append(ratio)
        if ratio > self.threshold or dead:
            problems = [f"variance ratio max/min {ratio:.3g} > {self.threshold:g}"] if ratio > self.threshold else []
            if dead:
                problems.append(f"inputs within ±{self.distribution_range:g}: {dead[:3]}")
            self.bad_steps.append(f"step {mode_step}: {'; '.join(problems)}")
        required = min(self.patience, self.steps)
        if len(self.bad_steps) >= required:
            return self.found(f"poor initialization at {len(self.bad_steps)} of the first steps; {self.bad_steps[0]}")
        return False

    def not_evaluated(self) -> str | None:
        return None if self.ratios else f"no ReLU inputs saved in the first {self.steps} training steps"

    def summary(self) -> str:
        return f"ReLU-input variance ratio max/min over {len(self.ratios)} steps: up to {max(self.ratios):.3g}"


RULES: dict[str, Callable[..., _LocalRule]] = {
    "VanishingGradient": VanishingGradient,
    "LossNotDecreasing": LossNotDecreasing,
    "Overfit": Overfit,
    "Overtraining": Overtraining,
    "PoorWeightInitialization": PoorWeightInitialization,
}


def _result(status: str, details: str) -> dict[str, str]:
    return {"status": status, "details": details}


def resolve_parameters(parameters: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``{"LossNotDecreasing_num_steps": 3}`` (SageMaker's custom rule parameter naming, rule name in any case) as
    keyword arguments per rule; an unknown rule or parameter raises ValueError, so a typo is never ignored."""
    by_lower = {name.lower(): name for name in RULES}
    resolved: dict[str, dict[str, Any]] = {}
    for key, value in (parameters or {}).items():
        rule_part, _, parameter = key.partition("_")
        rule = by_lower.get(rule_part.lower())
        if rule is None or not parameter:
            raise ValueError(
                f"debug rule parameter {key!r}: expected <Rule>_<parameter> with a rule of {sorted(RULES)}"
            )
        accepted = [name for name in inspect.signature(RULES[rule]).parameters if name != "base_trial"]
        if parameter not in accepted:
            raise ValueError(f"debug rule parameter {key!r}: {rule} takes {accepted}")
        resolved.setdefault(rule, {})[parameter] = value
    return resolved


def evaluate_rules(
    trial_dir: str, rule_names: list[str] | None = None, parameters: Mapping[str, Any] | None = None
) -> dict[str, dict]:
    """Evaluate our rules on the smdebug trial in ``trial_dir``: {rule name: {"status", "details"}};
    ``parameters`` as :func:`resolve_parameters` takes them."""
    arguments = resolve_parameters(parameters)
    names = list(RULES) if rule_names is None else list(rule_names)
    if SMDEBUG_IMPORT_ERROR is not None:
        return {name: _result(ERROR, f"smdebug unavailable ({SMDEBUG_IMPORT_ERROR})") for name in names}
    if not os.path.isdir(trial_dir):
        return {name: _result(ERROR, f"no smdebug trial at {trial_dir}") for name in names}
    if not os.path.isfile(os.path.join(trial_dir, TRAINING_END_MARKER)):
        # smdebug waits (forever) for files a running job may still write; we only read finished trials.
        message = f"the trial at {trial_dir} is not finished (no {TRAINING_END_MARKER}; was the hook closed?)"
        return {name: _result(ERROR, message) for name in names}
    try:
        trial = create_trial(trial_dir)
        # The trial is finished (checked above): smdebug's 1 s pause before a last refresh buys nothing.
        trial._training_end_delay_refresh = 0
        steps = trial.steps()
    except Exception as error:
        return {name: _result(ERROR, f"cannot read the trial in {trial_dir}: {error}") for name in names}
    if not steps:
        return {name: _result(ERROR, f"the trial in {trial_dir} has no saved steps") for name in names}
    results = {}
    for name in names:
        if name not in RULES:
            results[name] = _result(ERROR, f"unknown rule {name!r}; known: {sorted(RULES)}")
            continue
        results[name] = _evaluate_one(RULES[name], trial, max(steps) + 1, arguments.get(name, {}))
    return results


def _evaluate_one(
    rule_class: Callable[..., _LocalRule], trial: Any, end_step: int, arguments: Mapping[str, Any]
) -> dict[str, str]:
    try:
        rule = rule_class(trial, **arguments)
        invoke_rule(rule, start_step=0, end_step=end_step, raise_eval_cond=True)
    except RuleEvaluationConditionMet:
        return _result(ISSUES, rule.finding)
    except RuleNotApplicable as error:
        return _result(NOT_EVALUATED, str(error))
    except NoMoreData:
        pass
    except Exception as error:  # a rule bug must show up in the report, not crash the training job
        logger.exception("rule %s failed", getattr(rule_class, "__name__", rule_class))
        return _result(ERROR, f"{type(error).__name__}: {error}")
    reason = rule.not_evaluated()
    if reason is not None:
        return _result(NOT_EVALUATED, reason)
    return _result(NO_ISSUES, rule.summary())
