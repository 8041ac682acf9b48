"""Patches of moto's Step Functions engine: instant Wait/Retry timers and a StartExecution without a name.

Fast timers (optional): moto's ASL engine really sleeps in Wait states and between retries; offline, the poll
loops and back-offs would only add wall time, so ``FastStepFunctionsTimers`` makes both return at once
(``TimeoutSeconds`` is untouched).

Execution names: in execute mode, moto 5.2.5 names an execution started without ``name`` ``None``, so a
second such start returns the first execution or fails with ``ExecutionAlreadyExists``. AWS generates a UUID;
``ExecutionNameFix`` does the same.

Task clients: moto's engine creates a boto3 client for every Lambda task it runs, which is a quarter of a
state-machine test's time; ``ReusedTaskClients`` keeps one per region and service (botocore clients are thread-safe)
for as long as it is installed.

Parsing: moto parses a definition with its ANTLR grammar when the state machine is created and again for every
execution (0.12 s for ours, 0.36 s under coverage's tracer: a sixth of a state-machine test). ``ParsedDefinitions``
keeps each valid definition's parse tree and builds every execution's components from it afresh (moto's
``Preprocessor``, a tenth of the cost), so no two executions share component objects.
"""

from __future__ import annotations

import threading
import types
import uuid
from typing import Any

from antlr4 import ParserRuleContext
from moto.core.models import botocore_stubber
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor
from moto.stepfunctions.parser.models import StepFunctionsParserBackend

from offline.moto_shims._base import MotoPatch, patch_attribute


def _no_wait(self: WaitFunction, env: Any, wait_seconds: int) -> None:
    return None


class FastStepFunctionsTimers(MotoPatch):
    """Wait states and Retry back-off return immediately."""

    def _patchers_to_start(self) -> list[Any]:
        return [
            patch_attribute(WaitFunction, "_wait_interval", _no_wait),
            patch_attribute(retrier_decl, "time", types.SimpleNamespace(sleep=lambda seconds: None)),
        ]


_original_start_execution = StepFunctionsParserBackend.start_execution


def _start_execution_with_generated_name(
    self: StepFunctionsParserBackend,
    state_machine_arn: str,
    name: str | None = None,
    execution_input: str | None = None,
    trace_header: str | None = None,
) -> Any:
    return _original_start_execution(self, state_machine_arn, name or str(uuid.uuid4()), execution_input, trace_header)


class ExecutionNameFix(MotoPatch):
    """StartExecution without ``name`` gets a fresh UUID name, as on AWS."""

    def _patchers_to_start(self) -> list[Any]:
        return [patch_attribute(StepFunctionsParserBackend, "start_execution", _start_execution_with_generated_name)]


class ReusedTaskClients(MotoPatch):
    """Lambda tasks share one client per region (and per whether moto intercepts calls in-process)."""

    def __init__(self) -> None:
        super().__init__()
        self._clients: dict[tuple[str, str, bool], Any] = {}
        self._lock = threading.Lock()
        self._create = lambda_eval_utils.boto_client_for

    def _patchers_to_start(self) -> list[Any]:
        self._clients.clear()
        return [patch_attribute(lambda_eval_utils, "boto_client_for", self._client_for)]

    def _client_for(self, region: str, service: str, state_credentials: Any = None) -> Any:
        # moto's own function ignores state_credentials (it signs with fixed test keys), so one client serves all.
        key = (region, service, botocore_stubber.enabled)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self._create(region=region, service=service, state_credentials=state_credentials)
            return self._clients[key]


class ParsedDefinitions(MotoPatch):
    """Each valid definition lexed and parsed once; every parse still returns components of its own."""

    def __init__(self) -> None:
        super().__init__()
        self._trees: dict[str, ParserRuleContext] = {}
        self._lock = threading.Lock()
        self._parse = AmazonStateLanguageParser.parse

    def _patchers_to_start(self) -> list[Any]:
        self._trees.clear()
        return [patch_attribute(AmazonStateLanguageParser, "parse", staticmethod(self._parse_once))]

    def _parse_once(self, definition: str) -> tuple[EvalComponent, ParserRuleContext]:
        with self._lock:
            tree = self._trees.get(definition)
        if tree is None:
            program, tree = self._parse(definition)  # an invalid definition raises here, every time, as before
            with self._lock:
                self._trees[definition] = tree
            return program, tree
        return Preprocessor().visit(tree), tree
