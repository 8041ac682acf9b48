"""Checks botocore leaves to the service: enum values, maximum lengths and sizes, name patterns.

botocore's client-side validation checks required members, unknown keys, types and minimums, but a misspelt
enum (``"AllAtOnce"`` for ``"ALL_AT_ONCE"``), a 33-character tuning job name or a value above a maximum only
fails on AWS, hours into a run. :func:`request_problems` walks a request against the operation's input shape
in the service model that ships with botocore, so the check follows the API without a hand-kept table.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import botocore.session
from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StructureShape

from pipeline.common.errors import InvalidSageMakerRequest


@cache
def service_model(service: str) -> ServiceModel:
    return botocore.session.get_session().get_service_model(service)


@cache
def _compiled(pattern: str) -> re.Pattern[str] | None:
    # The model's patterns are Java regexes; the few Python cannot compile (\p{L} classes) are left unchecked.
    try:
        return re.compile(pattern, re.DOTALL)
    except re.error:
        return None


def _scalar_problems(path: str, shape: Shape, value: Any) -> list[str]:
    problems: list[str] = []
    metadata = shape.metadata
    if shape.type_name == "string" and isinstance(value, str):
        allowed = metadata.get("enum")
        if allowed and value not in allowed:
            problems.append(f"{path}: {value!r} is not one of {allowed}")
        if "max" in metadata and len(value) > metadata["max"]:
            problems.append(f"{path}: {len(value)} characters, at most {metadata['max']} allowed")
        compiled = _compiled(metadata["pattern"]) if "pattern" in metadata else None
        if compiled is not None and not compiled.fullmatch(value):
            problems.append(f"{path}: {value!r} does not match {metadata['pattern']!r}")
    elif (
        shape.type_name in {"integer", "long", "float", "double"}
        and isinstance(value, int | float)
        and "max" in metadata
        and value > metadata["max"]
    ):
        problems.append(f"{path}: {value} is above the maximum {metadata['max']}")
    return problems


def _problems(path: str, shape: Shape, value: Any) -> list[str]:
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        found: list[str] = []
        for name, member_value in value.items():
            if name in shape.members:
                found += _problems(f"{path}.{name}" if path else name, shape.members[name], member_value)
        return found
    if isinstance(shape, ListShape) and isinstance(value, list):
        found = (
            [f"{path}: {len(value)} items, at most {shape.metadata['max']}"]
            if len(value) > shape.metadata.get("max", len(value))
            else []
        )
        for index, item in enumerate(value):
            found += _problems(f"{path}[{index}]", shape.member, item)
        return found
    if isinstance(shape, MapShape) and isinstance(value, dict):
        found = (
            [f"{path}: {len(value)} entries, at most {shape.metadata['max']}"]
            if len(value) > shape.metadata.get("max", len(value))
            else []
        )
        for key, item in value.items():
            found += _problems(f"{path}[{key!r}]", shape.key, key)
            found += _problems(f"{path}[{key!r}]", shape.value, item)
        return found
    return _scalar_problems(path, shape, value)


def operation_model(service: ServiceModel | str, operation: str) -> OperationModel:
    """The operation by its API name (``CreateTrainingJob``) or boto3 method name (``create_training_job``).

    Pass a client's ``meta.service_model`` to reuse the model the client already loaded.
    """
    model = service_model(service) if isinstance(service, str) else service
    api_name = operation if operation in model.operation_names else _api_name(model, operation)
    return model.operation_model(api_name)


def _api_name(model: ServiceModel, method_name: str) -> str:
    wanted = method_name.replace("_", "").lower()
    for name in model.operation_names:
        if name.lower() == wanted:
            return str(name)
    raise ValueError(f"{model.service_name} has no operation {method_name!r}")


def request_problems(service: ServiceModel | str, operation: str, request: dict[str, Any]) -> list[str]:
    """Every enum, maximum and pattern violation in ``request``, as readable ``path: problem`` lines."""
    input_shape = operation_model(service, operation).input_shape
    return [] if input_shape is None else _problems("", input_shape, request)


def check_request(service: ServiceModel | str, operation: str, request: dict[str, Any]) -> None:
    problems = request_problems(service, operation, request)
    if problems:
        name = service if isinstance(service, str) else service.service_name
        raise InvalidSageMakerRequest(
            f"{operation} request breaks the {name} API model: " + "; ".join(problems) + ". Fix the setting or "
            "template parameter that produced the value."
        )
