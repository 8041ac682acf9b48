"""Every error a state can end with.

The class name is the Lambda ``errorType`` and therefore the ``ErrorEquals`` string the state machine
catches or retries. Messages say what was wrong and what to do about it.
"""


class PipelineError(Exception):
    """Base class: a terminal failure of the run that must not be retried."""


class RetryableError(Exception):
    """Base class: a transient condition; the state machine retries it with back-off."""


class DatasetInvalid(PipelineError):
    """The dataset zip does not have the expected layout, counts or content."""


class DatasetNotFound(PipelineError):
    """The event names no dataset, or the named object does not exist."""


class TuningFailed(PipelineError):
    """The hyperparameter tuning job failed or was stopped."""


class NoTrainingJobWithMetric(PipelineError):
    """No training job of the tuning job reported the objective metric."""


class TrainingFailed(PipelineError):
    """The final training job failed or was stopped."""


class RuleIssuesFound(PipelineError):
    """A blocking Debugger/Profiler rule reported IssuesFound."""


class RuleEvaluationFailed(PipelineError):
    """A rule evaluation ended in Error or Stopped, so the model is unchecked."""


class DeploymentFailed(PipelineError):
    """The endpoint could not be created or updated."""


class DeploymentRolledBack(PipelineError):
    """The blue/green update was rolled back; the previous model keeps serving."""


class SageMakerThrottled(RetryableError):
    """SageMaker throttled us or was briefly unavailable."""


class PollLimitExceeded(PipelineError):
    """A status loop polled more than MAX_POLLS times; the job was asked to stop."""


class InvalidSageMakerRequest(PipelineError):
    """A request we built breaks the SageMaker service model (enum, length or name pattern)."""


class ModelMetricMissing(PipelineError):
    """The training job reported no test accuracy, so the champion/challenger gate cannot judge the model."""


class PretrainedWeightsMissing(PipelineError):
    """The pinned pretrained weights the jobs start from are not staged in the bucket (or are not the pinned file)."""
