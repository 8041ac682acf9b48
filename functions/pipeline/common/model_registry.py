"""The SageMaker model registry: one model package group, one package version per trained model.

Every trained model is registered ``PendingManualApproval`` by EvaluateModel, with its metrics, dataset identity,
hyperparameters and rule results as ``CustomerMetadataProperties``; RejectModel sets ``Rejected`` and ApproveModel
``Approved`` once the endpoint serves it, recording the endpoint config it serves as. The champion (the model the
endpoint serves now) is the Approved package whose ``endpoint_config`` is the endpoint's serving config.

The group is created on first use rather than by the template: CloudFormation cannot delete a group that still holds
versions, and a retained group with a fixed name would block deploying a stack of the same name again; the registry,
like the data bucket, is history that outlives the stack.
"""

from __future__ import annotations

from typing import Any

from pipeline.common.model_packages import TRAINING_JOB_KEY, Package
from pipeline.common.package_listing import newest_packages
from pipeline.common.sagemaker_gateway import SageMakerGateway


def _exact_group_exists(sagemaker: SageMakerGateway, group: str) -> bool:
    return any(
        item["ModelPackageGroupName"] == group
        for page in sagemaker.pages("list_model_package_groups", NameContains=group, MaxResults=100)
        for item in page.get("ModelPackageGroupSummaryList", [])
    )


def ensure_group(sagemaker: SageMakerGateway, group: str, description: str) -> bool:
    """Creates the group when it does not exist yet; True when it was created."""
    if _exact_group_exists(sagemaker, group):
        return False
    sagemaker.call("create_model_package_group", ModelPackageGroupName=group, ModelPackageGroupDescription=description)
    return True


def find_registered(sagemaker: SageMakerGateway, group: str, training_job: str) -> Package | None:
    """This training job's package, when an earlier attempt of EvaluateModel registered it already."""
    return next(
        (p for p in newest_packages(sagemaker, group) if p.properties.get(TRAINING_JOB_KEY) == training_job), None
    )


def register(sagemaker: SageMakerGateway, request: dict[str, Any]) -> str:
    return str(sagemaker.call("create_model_package", **request)["ModelPackageArn"])
