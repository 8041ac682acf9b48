"""SageMaker actions moto 5.2.5 lacks: UpdateEndpoint, ListTrainingJobsForHyperParameterTuningJob,
StopTrainingJob and StopHyperParameterTuningJob; and (``ModelPackageEvents``) the registry's state-change events.

moto dispatches a request to the ``SageMakerResponse`` method named after the action in snake_case, so adding
the methods is enough (decorator mode and an in-process ThreadedMotoServer alike). The request checks follow
the API reference. What happens after a request is accepted is delegated to a ``SageMakerLifecycle``: the
default applies it at once (endpoint updated and InService, job Stopped); ``offline.local_sagemaker`` plugs in
real lifecycles (blue/green update with health check and rollback, killing the training process).

The listing of a tuning job's training jobs reads ``training_job_summaries`` (a list of
``HyperParameterTrainingJobSummary`` dicts) from moto's tuning job object and honours ``StatusEquals``,
``SortBy``, ``SortOrder``, ``MaxResults`` (default 10, as on AWS) and ``NextToken``.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.sagemaker.exceptions import ResourceNotFound, ValidationError
from moto.sagemaker.models import FakeEndpoint, FakeTrainingJob, HyperParameterTuningJob, SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse

from offline.moto_shims._base import MotoPatch, patch_attribute

SORT_KEYS = ("Name", "CreationTime", "Status", "FinalObjectiveMetricValue")
DEFAULT_MAX_RESULTS = 10
MAX_RESULTS_LIMIT = 100


class SageMakerLifecycle(Protocol):
    """What happens after an accepted UpdateEndpoint / StopTrainingJob / StopHyperParameterTuningJob."""

    def update_endpoint(
        self,
        backend: SageMakerModelBackend,
        endpoint: FakeEndpoint,
        endpoint_config_name: str,
        deployment_config: dict[str, Any] | None,
    ) -> None: ...

    def stop_training_job(self, backend: SageMakerModelBackend, job: FakeTrainingJob) -> None: ...

    def stop_tuning_job(self, backend: SageMakerModelBackend, tuning_job: HyperParameterTuningJob) -> None: ...


class ImmediateLifecycle:
    """No jobs run and no model is served: every change takes effect at once."""

    def update_endpoint(
        self,
        backend: SageMakerModelBackend,
        endpoint: FakeEndpoint,
        endpoint_config_name: str,
        deployment_config: dict[str, Any] | None,
    ) -> None:
        config = backend.describe_endpoint_config(endpoint_config_name)
        endpoint.endpoint_config_name = endpoint_config_name
        endpoint.production_variants = endpoint._process_production_variants(config["ProductionVariants"])
        endpoint.last_modified_time = utcnow()
        endpoint.endpoint_status = "InService"

    def stop_training_job(self, backend: SageMakerModelBackend, job: FakeTrainingJob) -> None:
        job.training_job_status = "Stopped"
        job.secondary_status = "Stopped"
        job.last_modified_time = utcnow()

    def stop_tuning_job(self, backend: SageMakerModelBackend, tuning_job: HyperParameterTuningJob) -> None:
        tuning_job.hyper_parameter_tuning_job_status = "Stopped"
        tuning_job.last_modified_time = utcnow()


def _find_endpoint(backend: SageMakerModelBackend, name: str) -> FakeEndpoint:
    endpoint = backend.endpoints.get(name)
    if endpoint is None:
        arn = FakeEndpoint.arn_formatter(name, backend.account_id, backend.region_name)
        raise ValidationError(message=f"Could not find endpoint '{arn}'.")
    return endpoint


def summary_sort_key(sort_by: str) -> Any:
    if sort_by == "Name":
        return lambda summary: summary["TrainingJobName"]
    if sort_by == "CreationTime":
        return lambda summary: summary["CreationTime"]
    if sort_by == "Status":
        return lambda summary: summary["TrainingJobStatus"]
    return lambda summary: summary["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]


def select_training_job_summaries(
    summaries: list[dict[str, Any]],
    *,
    status_equals: str | None = None,
    sort_by: str | None = None,
    sort_order: str | None = None,
) -> list[dict[str, Any]]:
    """Filter and sort HyperParameterTrainingJobSummary dicts as ListTrainingJobsForHyperParameterTuningJob does."""
    sort_by = sort_by or "Name"
    if sort_by not in SORT_KEYS:
        raise ValidationError(message=f"Value '{sort_by}' at 'sortBy' must satisfy enum value set: {list(SORT_KEYS)}")
    if sort_order not in (None, "Ascending", "Descending"):
        raise ValidationError(message=f"Value '{sort_order}' at 'sortOrder' must be Ascending or Descending")
    selected = [s for s in summaries if status_equals is None or s["TrainingJobStatus"] == status_equals]
    if sort_by == "FinalObjectiveMetricValue":
        # The API leaves out jobs that reported no objective metric when sorting by it.
        selected = [s for s in selected if "FinalHyperParameterTuningJobObjectiveMetric" in s]
    return sorted(selected, key=summary_sort_key(sort_by), reverse=sort_order == "Descending")


class SageMakerMissingActions(MotoPatch):
    """Add the four actions to moto's SageMaker; ``lifecycle`` decides what an accepted request does."""

    def __init__(self, lifecycle: SageMakerLifecycle | None = None) -> None:
        super().__init__()
        self.lifecycle: SageMakerLifecycle = lifecycle or ImmediateLifecycle()

    def _patchers_to_start(self) -> list[Any]:
        actions = {
            "update_endpoint": self._update_endpoint,
            "list_training_jobs_for_hyper_parameter_tuning_job": self._list_training_jobs_for_tuning_job,
            "stop_training_job": self._stop_training_job,
            "stop_hyper_parameter_tuning_job": self._stop_tuning_job,
        }
        return [
            patch_attribute(SageMakerResponse, name, _as_response_method(action), create=True)
            for name, action in actions.items()
        ]

    def _update_endpoint(self, response: SageMakerResponse) -> ActionResult:
        backend = response.sagemaker_backend
        endpoint = _find_endpoint(backend, response._get_param("EndpointName"))
        if endpoint.endpoint_status != "InService":
            raise ValidationError(message=f'Cannot update in-progress endpoint "{endpoint.arn}".')
        config_name = response._get_param("EndpointConfigName")
        backend.describe_endpoint_config(config_name)  # ValidationException when the config does not exist
        deployment_config = response._get_param("DeploymentConfig")
        if deployment_config is None and response._get_param("RetainDeploymentConfig"):
            deployment_config = getattr(endpoint, "last_deployment_config", None)
        endpoint.last_deployment_config = deployment_config  # DescribeEndpoint's LastDeploymentConfig
        self.lifecycle.update_endpoint(backend, endpoint, config_name, deployment_config)
        return ActionResult({"EndpointArn": endpoint.arn})

    def _list_training_jobs_for_tuning_job(self, response: SageMakerResponse) -> ActionResult:
        backend = response.sagemaker_backend
        name = response._get_param("HyperParameterTuningJobName")
        tuning_job = backend.hyper_parameter_tuning_jobs.get(name)
        if tuning_job is None:
            raise ResourceNotFound(message=f"Amazon SageMaker can't find a tuning job with name {name}")
        selected = select_training_job_summaries(
            list(getattr(tuning_job, "training_job_summaries", [])),
            status_equals=response._get_param("StatusEquals"),
            sort_by=response._get_param("SortBy"),
            sort_order=response._get_param("SortOrder"),
        )
        max_results = min(int(response._get_param("MaxResults") or DEFAULT_MAX_RESULTS), MAX_RESULTS_LIMIT)
        start = int(response._get_param("NextToken") or 0)
        page = selected[start : start + max_results]
        result: dict[str, Any] = {"TrainingJobSummaries": page}
        if start + max_results < len(selected):
            result["NextToken"] = str(start + max_results)
        return ActionResult(result)

    def _stop_training_job(self, response: SageMakerResponse) -> EmptyResult:
        backend = response.sagemaker_backend
        name = response._get_param("TrainingJobName")
        job = backend.training_jobs.get(name)
        if job is None:
            raise ValidationError(message=f"Requested resource not found: training job {name!r}.")
        if job.training_job_status != "InProgress":
            raise ValidationError(
                message=f"The request was rejected because the training job is in status {job.training_job_status}."
            )
        job.training_job_status = "Stopping"
        job.secondary_status = "Stopping"
        self.lifecycle.stop_training_job(backend, job)
        return EmptyResult()

    def _stop_tuning_job(self, response: SageMakerResponse) -> EmptyResult:
        backend = response.sagemaker_backend
        name = response._get_param("HyperParameterTuningJobName")
        tuning_job = backend.hyper_parameter_tuning_jobs.get(name)
        if tuning_job is None:
            raise ResourceNotFound(message=f"Amazon SageMaker can't find a tuning job with name {name}")
        if tuning_job.hyper_parameter_tuning_job_status != "InProgress":
            raise ValidationError(
                message=f"The request was rejected because the tuning job is in status "
                f"{tuning_job.hyper_parameter_tuning_job_status}."
            )
        tuning_job.hyper_parameter_tuning_job_status = "Stopping"
        self.lifecycle.stop_tuning_job(backend, tuning_job)
        return EmptyResult()


def _as_response_method(action: Any) -> Any:
    def method(response: SageMakerResponse) -> Any:
        return action(response)

    return method


MODEL_PACKAGE_STATE_CHANGE = "SageMaker Model Package State Change"


class ModelPackageEvents(MotoPatch):
    """UpdateModelPackage as on AWS: the registry emits ``SageMaker Model Package State Change`` to EventBridge
    when the approval status is set, and keeps the metadata keys the call does not name (moto 5.2.5 replaces the
    map, clearing it when the call names none, and emits nothing)."""

    def _patchers_to_start(self) -> list[Any]:
        original = SageMakerModelBackend.update_model_package

        def update_model_package(
            backend: SageMakerModelBackend,
            model_package_arn: str,
            model_approval_status: str | None = None,
            approval_description: str | None = None,
            customer_metadata_properties: dict[str, str] | None = None,
            **rest: Any,
        ) -> str:
            name = backend.model_package_name_mapping.get(model_package_arn, model_package_arn)
            package = backend.model_packages.get(name)
            if package is not None:
                kept = dict(package.customer_metadata_properties or {})
                customer_metadata_properties = {**kept, **(customer_metadata_properties or {})} or None
            arn = original(
                backend,
                model_package_arn=model_package_arn,
                model_approval_status=model_approval_status,
                approval_description=approval_description,
                customer_metadata_properties=customer_metadata_properties,
                **rest,
            )
            if model_approval_status and package is not None:
                _emit_state_change(backend, package)
            return str(arn)

        return [patch_attribute(SageMakerModelBackend, "update_model_package", update_model_package)]


def _emit_state_change(backend: SageMakerModelBackend, package: Any) -> None:
    from moto.events.models import events_backends

    detail = {
        "ModelPackageGroupName": package.model_package_group_name,
        "ModelPackageVersion": package.model_package_version,
        "ModelPackageArn": package.arn,
        "ModelPackageName": package.model_package_name,
        "ModelApprovalStatus": package.model_approval_status,
        "ModelPackageStatus": "Completed",
        "ApprovalDescription": package.approval_description,
    }
    events_backends[backend.account_id][backend.region_name].put_events(
        [{"Source": "aws.sagemaker", "DetailType": MODEL_PACKAGE_STATE_CHANGE, "Detail": json.dumps(detail)}]
    )
