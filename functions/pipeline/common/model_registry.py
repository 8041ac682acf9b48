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

from collections.abc import Iterator
from typing import Any

from pipeline.common.model_packages import ENDPOINT_CONFIG_KEY, TRAINING_JOB_KEY, Package, describe
from pipeline.common.sagemaker_gateway import SageMakerGateway

# Newest versions scanned for this training job's package (a retried EvaluateModel) or for the champion.
SCAN_LIMIT = 20


def _exact_group_exists(sagemaker: SageMakerGateway, group: str) -> bool:
    request: dict[str, Any] = {"NameContains": group, "MaxResults": 100}
    while True:
        page = sagemaker.call("list_model_package_groups", **request)
        if any(item["ModelPackageGroupName"] == group for item in page.get("ModelPackageGroupSummaryList", [])):
            return True
        if not page.get("NextToken"):
            return False
        request["NextToken"] = page["NextToken"]


def ensure_group(sagemaker: SageMakerGateway, group: str, description: str) -> bool:
    """Creates the group when it does not exist yet; True when it was created."""
    if _exact_group_exists(sagemaker, group):
        return False
    sagemaker.call("create_model_package_group", ModelPackageGroupName=group, ModelPackageGroupDescription=description)
    return True


def _newest(sagemaker: SageMakerGateway, group: str, approval_status: str | None = None) -> Iterator[Package]:
    request: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "SortBy": "CreationTime",
        "SortOrder": "Descending",
        "MaxResults": SCAN_LIMIT,
    }
    if approval_status:
        request["ModelApprovalStatus"] = approval_status
    for summary in sagemaker.call("list_model_packages", **request).get("ModelPackageSummaryList", [])[:SCAN_LIMIT]:
        yield describe(sagemaker, summary["ModelPackageArn"])


def find_registered(sagemaker: SageMakerGateway, group: str, training_job: str) -> Package | None:
    """This training job's package, when an earlier attempt of EvaluateModel registered it already."""
    return next((p for p in _newest(sagemaker, group) if p.properties.get(TRAINING_JOB_KEY) == training_job), None)


def find_champion(sagemaker: SageMakerGateway, group: str, serving_config: str) -> Package | None:
    """The Approved package the endpoint serves now (ApproveModel recorded its endpoint config)."""
    return next(
        (p for p in _newest(sagemaker, group, "Approved") if p.properties.get(ENDPOINT_CONFIG_KEY) == serving_config),
        None,
    )


def register(sagemaker: SageMakerGateway, request: dict[str, Any]) -> str:
    return str(sagemaker.call("create_model_package", **request)["ModelPackageArn"])
