"""Serve one model artifact over HTTP the way the SageMaker PyTorch inference container does.

Run by path, in a process of its own (one per endpoint fleet, as each fleet is its own container), so two
versions of ``inference.py``/``dog_model.py`` never share a Python process. It loads the model with the
artifact's ``model_fn`` before it listens, then prints ``READY <port>`` (or ``FAILED <reason>`` and exits 1).

- ``GET /ping``: 200 once the model is loaded.
- ``POST /invocations``: ``input_fn(body, content_type)`` → ``predict_fn`` → ``output_fn(prediction, accept)``;
  an exception with an integer ``status_code`` (the toolkit's ``BaseInferenceToolkitError``) answers with that
  status, any other exception with 500, as the toolkit's ``Transformer`` does.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any


def _default_input_fn(body: bytes, content_type: str) -> Any:
    if content_type.split(";")[0].strip() != "application/json":
        raise ValueError(f"no input_fn in the inference code and {content_type!r} is not application/json")
    return json.loads(body)


def _default_predict_fn(data: Any, model: Any) -> Any:
    return model(data)


def _default_output_fn(prediction: Any, accept: str) -> str:
    return json.dumps(prediction)


def load_inference_module(code_dir: Path, program: str) -> ModuleType:
    sys.path.insert(0, str(code_dir))  # the container puts code/ on sys.path: inference.py imports dog_model
    spec = importlib.util.spec_from_file_location(Path(program).stem, code_dir / program)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"no {program} in {code_dir}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class InferenceHandler(BaseHTTPRequestHandler):
    module: ModuleType
    model: Any

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}\n")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/ping":
            self._answer(200, b"", "text/plain")
        else:
            self._answer(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        if self.path != "/invocations":
            self._answer(404, b"not found", "text/plain")
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content_type = self.headers.get("Content-Type") or "application/json"
        accept = self.headers.get("Accept") or "application/json"
        module = self.module
        try:
            data = getattr(module, "input_fn", _default_input_fn)(body, content_type)
            prediction = getattr(module, "predict_fn", _default_predict_fn)(data, self.model)
            result = getattr(module, "output_fn", _default_output_fn)(prediction, accept)
        except Exception as error:
            status = getattr(error, "status_code", None)
            message = f"{type(error).__name__}: {error}"
            traceback.print_exc()
            self._answer(status if isinstance(status, int) else 500, message.encode(), "text/plain")
            return
        if isinstance(result, tuple):
            result, accept = result
        payload = result.encode() if isinstance(result, str) else bytes(result)
        self._answer(200, payload, accept if "*" not in accept else "application/json")


def exit_with_parent(parent_pid: int) -> None:
    """Never outlive the process that started this server (a killed test run must not leave servers behind)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--code-dir", required=True, type=Path)
    parser.add_argument("--program", default="inference.py")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args()
    # As the toolkit does in the container: model_fn's log lines (e.g. the precision served) reach server.log.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.parent_pid is not None:
        exit_with_parent(args.parent_pid)
    try:
        module = load_inference_module(args.code_dir, args.program)
        model = module.model_fn(str(args.model_dir))
    except Exception as error:
        traceback.print_exc()
        print(f"FAILED model_fn could not load the model: {type(error).__name__}: {error}", flush=True)
        sys.exit(1)
    InferenceHandler.module = module
    InferenceHandler.model = model
    server = ThreadingHTTPServer(("127.0.0.1", args.port), InferenceHandler)
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
