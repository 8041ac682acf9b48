"""The newest versions of a model package group, described: read-only, for the functions that look packages up
(a module of its own so that only they are granted ``ListModelPackages``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pipeline.common.model_packages import Package, describe
from pipeline.common.sagemaker_gateway import SageMakerGateway

# Newest versions scanned for this training job's package (a retried EvaluateModel) or for the champion.
SCAN_LIMIT = 20


def newest_packages(sagemaker: SageMakerGateway, group: str, approval_status: str | None = None) -> Iterator[Package]:
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
