"""Model package versions as the pipeline reads them: approval status and ``CustomerMetadataProperties``.

Metadata values may hold only letters, digits, spaces and ``_.:/=+-@`` (at most 256 characters), so values are
sanitised and lists are written ``a=b c=d``. Split from ``model_registry`` (register, find) and
``model_approval`` (approve, reject) so each function's IAM policy grants only the calls its modules make.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.common.sagemaker_gateway import SageMakerGateway

METADATA_VALUE_MAX = 256
METADATA_ENTRIES_MAX = 50
_UNSAFE = re.compile(r"[^\w .:/=+\-@]")

ENDPOINT_CONFIG_KEY = "endpoint_config"
TRAINING_JOB_KEY = "training_job"
TEST_ACCURACY_KEY = "test_accuracy"


def metadata_value(value: object) -> str:
    """``value`` as a CustomerMetadataProperties value: unsafe characters become ``_``, at most 256 characters."""
    text = _UNSAFE.sub("_", str(value)).strip() or "-"
    return text[:METADATA_VALUE_MAX]


def metadata(values: Mapping[str, object]) -> dict[str, str]:
    kept = {key: metadata_value(value) for key, value in values.items() if value is not None}
    return dict(list(kept.items())[:METADATA_ENTRIES_MAX])


@dataclass(frozen=True)
class Package:
    arn: str
    status: str
    properties: dict[str, str]
    model_data_url: str | None = None


def describe(sagemaker: SageMakerGateway, arn: str) -> Package:
    found = sagemaker.call("describe_model_package", ModelPackageName=arn)
    containers = (found.get("InferenceSpecification") or {}).get("Containers") or [{}]
    return Package(
        arn,
        str(found["ModelApprovalStatus"]),
        dict(found.get("CustomerMetadataProperties") or {}),
        containers[0].get("ModelDataUrl"),
    )


def approver(described: Mapping[str, Any]) -> str:
    """Who last changed a described package: the IAM identity, else the Studio user profile."""
    modified = described.get("LastModifiedBy") or {}
    identity = (modified.get("IamIdentity") or {}).get("Arn")
    return str(identity or modified.get("UserProfileName") or "unknown (no LastModifiedBy on the package)")
