"""Approval decisions on a model package version (RejectModel, ApproveModel)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.common.model_packages import Package, describe, metadata
from pipeline.common.sagemaker_gateway import SageMakerGateway


def set_approval(
    sagemaker: SageMakerGateway,
    arn: str,
    status: str,
    description: str,
    extra_properties: Mapping[str, object] | None = None,
) -> Package:
    """Sets the approval status; ``extra_properties`` are merged into the package's metadata.

    The whole merged map is always sent: UpdateModelPackage adds or replaces the keys it is given on AWS, while
    moto 5.2.5 replaces the map (and clears it when the call names none), so sending everything keeps the
    earlier keys either way.
    """
    request: dict[str, Any] = {
        "ModelPackageArn": arn,
        "ModelApprovalStatus": status,
        "ApprovalDescription": description[:1024],
    }
    package = describe(sagemaker, arn)
    properties = {**package.properties, **metadata(extra_properties or {})}
    if properties:
        request["CustomerMetadataProperties"] = properties
    sagemaker.call("update_model_package", **request)
    return Package(arn, status, properties)
