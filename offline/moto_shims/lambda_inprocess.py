"""Run our real Lambda handlers in this process when moto's Lambda is invoked (no Docker).

moto 5.2.5 runs a function's code in Docker; here every ``Invoke`` (from boto3, from the Step Functions engine,
from EventBridge targets) reaches ``moto.awslambda.models.LambdaFunction.invoke``, which this patch replaces.
The handler comes from the function's ``Handler`` string (``package.module.function``) unless a test overrides
it by function name; the function's ``Environment.Variables`` are set for the call; an exception becomes the
Lambda runtime's error payload (``errorType`` is the exception's class name, which Step Functions matches in
``ErrorEquals``); a Handler that does not import gives the runtime's ``Runtime.ImportModuleError`` or
``Runtime.HandlerNotFound``. Not reproduced: the function's timeout is reported by the context but not enforced.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import botocore.endpoint
import botocore.utils
from moto.awslambda.models import LambdaFunction

from offline.moto_shims._base import MotoPatch, patch_attribute

Handler = Callable[[Any, Any], Any]

# The environment is process-wide, so two handlers must not run at once; on AWS each runs in its own sandbox.
# Held while a handler runs with its function's environment patched into os.environ. Every other thread that
# iterates os.environ must take it too: iterating it while the patch is being undone raises KeyError.
ENVIRONMENT_LOCK = threading.RLock()


def _proxies_read_under_the_environment_lock(url: str) -> dict[str, str]:
    """botocore's proxy lookup, which iterates os.environ whenever any thread creates a client (the test's own
    thread polling Step Functions while a handler runs in moto's execution thread, a training job's upload thread)."""
    with ENVIRONMENT_LOCK:
        return botocore.utils.get_environ_proxies(url)  # type: ignore[no-any-return]


@dataclass
class LocalLambdaContext:
    """The parts of the Lambda context object our handlers and Powertools read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: float
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started_at: float = field(default_factory=time.monotonic)

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        elapsed = time.monotonic() - self.started_at
        return max(0, int((self.timeout_seconds - elapsed) * 1000))


@dataclass(frozen=True)
class Invocation:
    function_name: str
    event: Any
    error_type: str | None


class HandlerNotResolved(Exception):
    """The function's Handler string names no importable callable; ``error_type`` is the Lambda runtime's."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def resolve_handler(handler_string: str) -> Handler:
    module_name, _, attribute = handler_string.rpartition(".")
    if not module_name:
        raise HandlerNotResolved("Runtime.MalformedHandlerName", f"Bad handler '{handler_string}': not enough values")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise HandlerNotResolved(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {error}"
        ) from error
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise HandlerNotResolved("Runtime.HandlerNotFound", f"Handler '{attribute}' missing on module '{module_name}'")
    return handler  # type: ignore[no-any-return]


def _lambda_error_payload(exc: BaseException) -> dict[str, Any]:
    return {
        "errorMessage": str(exc),
        "errorType": exc.error_type if isinstance(exc, HandlerNotResolved) else type(exc).__name__,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


class InProcessLambda(MotoPatch):
    """Patch moto's Lambda so that invoking a function calls its Python handler in this process.

    ``overrides`` maps a function name to a callable used instead of the function's ``Handler``.
    ``invocations`` records every call (name, event, error type or None) for assertions and audits.
    """

    def __init__(self, overrides: Mapping[str, Handler] | None = None) -> None:
        super().__init__()
        self.overrides: dict[str, Handler] = dict(overrides or {})
        self.invocations: list[Invocation] = []

    def _patchers_to_start(self) -> list[Any]:
        return [
            patch_attribute(LambdaFunction, "invoke", self._make_invoke()),
            patch_attribute(botocore.endpoint, "get_environ_proxies", _proxies_read_under_the_environment_lock),
        ]

    def _make_invoke(self) -> Callable[..., bytes]:
        shim = self

        def invoke(function: LambdaFunction, body: Any, request_headers: Any, response_headers: Any) -> bytes:
            return shim.invoke(function, body, response_headers)

        return invoke

    def invoke(self, function: LambdaFunction, body: Any, response_headers: Any) -> bytes:
        event = json.loads(body) if body else {}
        context = LocalLambdaContext(
            function_name=function.function_name,
            invoked_function_arn=function.function_arn,
            memory_limit_in_mb=int(function.memory_size or 128),
            timeout_seconds=float(function.timeout or 3),
        )
        environment = {
            "AWS_LAMBDA_FUNCTION_NAME": function.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(context.memory_limit_in_mb),
            "AWS_REGION": function.region,
            **{key: str(value) for key, value in (function.environment_vars or {}).items()},
        }
        with ENVIRONMENT_LOCK:
            try:
                handler = self.overrides.get(function.function_name) or resolve_handler(function.handler)
                with mock.patch.dict(os.environ, environment):
                    result = handler(event, context)
                payload = json.dumps(result)
            except Exception as exc:  # the Lambda runtime turns any unhandled exception into this payload
                response_headers["x-amz-function-error"] = "Unhandled"
                payload = _lambda_error_payload(exc)
                self.invocations.append(Invocation(function.function_name, event, payload["errorType"]))
                return json.dumps(payload).encode("utf-8")
        self.invocations.append(Invocation(function.function_name, event, None))
        return payload.encode("utf-8")
