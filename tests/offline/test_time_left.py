"""The offline run's estimate of the time left for training jobs, from the executor's progress events, and the
console's lines for those events."""

from __future__ import annotations

from offline.local_sagemaker.progress import ProgressEvent, TimeLeft, console_line, format_duration


def _status(job: str, status: str, *, epochs: int | None = 4, **trial: object) -> ProgressEvent:
    return ProgressEvent("status", job, f"{job}: {status}", status=status, epochs=epochs, **trial)  # type: ignore[arg-type]


def _epoch(job: str, epoch: int, *, epochs: int | None = 4, **trial: object) -> ProgressEvent:
    return ProgressEvent(
        "metrics",
        job,
        f"epoch={epoch}",
        epoch=epoch,
        epochs=epochs,
        metrics={"train:loss": 1.0},
        **trial,  # type: ignore[arg-type]
    )


def test_a_job_is_estimated_from_the_time_between_its_epoch_lines() -> None:
    clock = TimeLeft()
    clock.observe(_status("train-1", "InProgress", epochs=5), now=0)
    # The first epoch line comes 30 s in, nearly all of it one-off work (decoding, the feature pass): no estimate
    assert clock.observe(_epoch("train-1", 1, epochs=5), now=30) is None
    # Later epochs take 10 s each: 2 epochs left x 10 s
    clock.observe(_epoch("train-1", 2, epochs=5), now=40)
    assert clock.observe(_epoch("train-1", 3, epochs=5), now=50) == "about 20 s left in this job"


def test_a_tuning_job_adds_the_trials_after_this_one_at_the_finished_trials_mean() -> None:
    clock = TimeLeft()
    trial = {"tuning_job": "tune-1", "trials": 3}
    # Trial 1 (no finished trial yet): its own estimate stands for each later trial: (30 + 10) x 2 + 10
    clock.observe(_status("t-001", "InProgress", epochs=3, trial=1, **trial), now=0)
    clock.observe(_epoch("t-001", 1, epochs=3, trial=1, **trial), now=20)
    first = clock.observe(_epoch("t-001", 2, epochs=3, trial=1, **trial), now=30)
    assert first == "about 10 s left in this job, 1 min 30 s in the tuning job (2 more trials)"
    clock.observe(_status("t-001", "Completed", epochs=3, trial=1, **trial), now=50)
    # Trial 2: one trial after it, at the 50 s trial 1 took
    clock.observe(_status("t-002", "InProgress", epochs=3, trial=2, **trial), now=50)
    clock.observe(_epoch("t-002", 1, epochs=3, trial=2, **trial), now=60)
    second = clock.observe(_epoch("t-002", 2, epochs=3, trial=2, **trial), now=65)
    assert second == "about 5 s left in this job, 55 s in the tuning job (1 more trial)"


def test_nothing_is_said_without_the_epoch_count_or_before_the_job_started() -> None:
    clock = TimeLeft()
    assert clock.observe(_epoch("never-started", 1), now=5) is None
    clock.observe(_status("train-2", "InProgress", epochs=None), now=0)
    assert clock.observe(_epoch("train-2", 1, epochs=None), now=5) is None


def test_a_resumed_job_is_estimated_from_the_epochs_it_ran_since_its_restart() -> None:
    # A resumed (spot) job prints epochs again from its checkpoint: repeated or earlier lines move nothing
    clock = TimeLeft()
    clock.observe(_status("train-3", "InProgress", epochs=6), now=0)
    assert clock.observe(_epoch("train-3", 3), now=10) is None
    assert clock.observe(_epoch("train-3", 3), now=20) is None
    assert clock.observe(_epoch("train-3", 4, epochs=6), now=30) == "about 40 s left in this job"
    assert clock.observe(_epoch("train-3", 2, epochs=6), now=35) is None


def test_durations_read_as_people_say_them() -> None:
    assert [format_duration(s) for s in (4.4, 59.6, 61, 3600 + 120 + 5)] == [
        "4 s",
        "1 min 00 s",
        "1 min 01 s",
        "1 h 02 min",
    ]


def test_the_console_shows_epochs_with_the_time_left_progress_with_the_trial_and_each_name_once() -> None:
    trial = {"tuning_job": "tune-1", "trial": 2, "trials": 3}
    epoch = _epoch("t-002", 3, epochs=10, **trial)
    assert console_line(epoch, "about 20 s left in this job") == (
        "    t-002: trial 2/3 epoch 3/10 train:loss=1 (about 20 s left in this job)"
    )
    progress = ProgressEvent("progress", "t-002", "decoding train 3072/6680 (812.3/s, about 4 s left)", **trial)  # type: ignore[arg-type]
    assert console_line(progress, None) == "    t-002: trial 2/3 decoding train 3072/6680 (812.3/s, about 4 s left)"
    assert console_line(_status("train-1", "Completed"), None) == "    train-1: Completed"
    started = ProgressEvent("trial", "t-002", "trial 2 of 3: {'batch_size': '64'}", **trial)  # type: ignore[arg-type]
    assert console_line(started, None) == "    t-002: trial 2 of 3: {'batch_size': '64'}"
    assert console_line(ProgressEvent("note", "tune-1", "runs trials one at a time"), None) == (
        "    note: runs trials one at a time"
    )
