"""What the local executor reports while jobs run, for a progress display."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

EPOCH_PATTERN = re.compile(r"\bepoch[=: ]\s*(\d+)", re.IGNORECASE)
# What a training job's progress lines start with (training_job.ProgressLog: decoding, the feature pass, the steps
# of a long epoch, each with its rate and time left): the executor reports them as ``progress`` events.
PROGRESS_PREFIX = "progress: "


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a job or endpoint.

    ``kind`` is ``status`` (a job or endpoint changed status), ``metrics`` (a log line carried metric values),
    ``progress`` (a job's progress line, without its prefix), ``trial`` (a tuning trial starts), ``rule`` (a rule
    evaluation changed status) or ``note`` (something a person should know, such as what the local stand-in does
    differently from SageMaker).
    """

    kind: str
    resource: str
    message: str
    status: str | None = None
    tuning_job: str | None = None
    trial: int | None = None
    trials: int | None = None
    epoch: int | None = None
    epochs: int | None = None  # the job's ``epochs`` hyperparameter: how many epoch lines to expect
    metrics: Mapping[str, float] = field(default_factory=dict)


ProgressCallback = Callable[[ProgressEvent], None]
LogCallback = Callable[[str, str], None]


def epoch_in(line: str) -> int | None:
    match = EPOCH_PATTERN.search(line)
    return int(match.group(1)) if match else None


@dataclass
class _JobClock:
    started: float
    epochs: int | None
    # Epoch numbers start at 1: 0 means no epoch line yet.
    first_epoch: int = 0
    first_epoch_at: float = 0.0
    last_epoch: int = 0
    last_epoch_at: float = 0.0


@dataclass
class TimeLeft:
    """Estimates how long the running training jobs (and the tuning job around a trial) still take.

    A job's time per epoch is the mean between its epoch lines, so the first estimate comes with its second epoch:
    the time to the first epoch line holds the one-off work (decoding, the feature pass), which on cached features
    is nearly all of a job, so it says nothing about the epochs left. A tuning job's remaining trials each take
    what its finished trials took on average, or, before any finished, what the current trial is estimated to take
    in all. The estimate covers the epochs, not what follows them (the test evaluation, the int8 check, the rules).
    """

    jobs: dict[str, _JobClock] = field(default_factory=dict)
    trial_seconds: dict[str, list[float]] = field(default_factory=dict)

    def observe(self, event: ProgressEvent, now: float) -> str | None:
        """Feed every event in order; returns the estimate to show for an epoch line, else None."""
        if event.kind == "status" and event.status == "InProgress" and event.resource not in self.jobs:
            self.jobs[event.resource] = _JobClock(started=now, epochs=event.epochs)
        clock = self.jobs.get(event.resource)
        if clock is None:
            return None
        if event.kind == "status" and event.status in ("Completed", "Failed", "Stopped"):
            del self.jobs[event.resource]
            if event.tuning_job and event.status == "Completed":
                self.trial_seconds.setdefault(event.tuning_job, []).append(now - clock.started)
            return None
        if event.kind != "metrics" or event.epoch is None or event.epoch <= clock.last_epoch:
            return None
        if not clock.first_epoch:
            clock.first_epoch, clock.first_epoch_at = event.epoch, now
        clock.last_epoch, clock.last_epoch_at = event.epoch, now
        return self._describe(event, clock, now)

    def job_seconds_left(self, clock: _JobClock) -> float | None:
        if clock.epochs is None or clock.last_epoch <= clock.first_epoch:
            return None
        per_epoch = (clock.last_epoch_at - clock.first_epoch_at) / (clock.last_epoch - clock.first_epoch)
        return max(0.0, clock.epochs - clock.last_epoch) * per_epoch

    def _describe(self, event: ProgressEvent, clock: _JobClock, now: float) -> str | None:
        job_left = self.job_seconds_left(clock)
        if job_left is None:
            return None
        text = f"about {format_duration(job_left)} left in this job"
        if event.tuning_job and event.trial and event.trials:
            finished = self.trial_seconds.get(event.tuning_job) or []
            per_trial = sum(finished) / len(finished) if finished else (now - clock.started) + job_left
            tuning_left = job_left + (event.trials - event.trial) * per_trial
            after = event.trials - event.trial
            text += f", {format_duration(tuning_left)} in the tuning job ({after} more trial{'s' * (after != 1)})"
        return text


def console_line(event: ProgressEvent, time_left: str | None) -> str:
    """How the offline run's console shows an event: epoch lines with their metrics and the time left, a job's
    progress lines with its trial, notes, and status changes."""
    trial = f"trial {event.trial}/{event.trials} " if event.trial else ""
    if event.kind == "metrics" and event.metrics:
        shown = " ".join(f"{k}={v:.4g}" for k, v in event.metrics.items())
        epoch = f"epoch {event.epoch}/{event.epochs or '?'} " if event.epoch else ""
        return f"    {event.resource}: {trial}{epoch}{shown}" + (f" ({time_left})" if time_left else "")
    if event.kind == "progress":
        return f"    {event.resource}: {trial}{event.message}"
    if event.kind == "note":
        return f"    note: {event.message}"
    # Status and rule messages start with their resource's name already.
    return f"    {event.resource}: {event.message.removeprefix(f'{event.resource}: ')}"


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
