"""Job processes and model servers forked from a warm interpreter: torch already imported, the job's code not.

A training job's process spends its first seconds importing torch and torchvision (3.5 s on a fast 2-core machine,
8 s on a slow one), and a run of the offline pipeline or the test suite starts dozens of them. ``WarmInterpreter``
starts one Python process that imports those libraries once (``PRELOADED``: third-party only, never the job's code,
never CUDA: nothing that reads the job's environment) and then forks a child per command. The child becomes what
``python -u <script> ...`` or ``python -u -m <module> ...`` would have been: its own process group, stdin from
/dev/null, stdout and stderr the pipes the executor passed over the socket, the job's working folder, environment,
``sys.argv`` and ``sys.path`` (the script's folder, then the job's ``PYTHONPATH``), the script run as ``__main__``,
atexit handlers run, and the exit status (or killing signal) reported back as ``subprocess.Popen`` reports it.

A forked ``python -u -m torch.distributed.run ...`` (a multi-instance or multi-GPU job's host) forks its workers,
one per rank, from itself in the same way instead of starting fresh interpreters (``_fork_torchrun_workers``); they
stay torchrun's children, in sessions of their own, as torchrun's own ``Popen`` would make them.

The start-up hooks a fresh interpreter would import from the job's path (``sitecustomize``: network isolation's
bootstrap) run in the child before the script. What differs from a fresh interpreter: the preloaded modules were
imported under the environment the warm interpreter started with (one per Python and per value of the variables
read at import, ``shared_interpreter``), so what torch reads at import comes from there (``OMP_NUM_THREADS`` aside:
the child applies the job's), and they were imported before the hooks ran. So only commands of this same Python are
forked; others, and every command when the warm interpreter cannot start, run as plain subprocesses, which
``LocalSageMaker(warm_interpreter=False)`` also asks for.

This file is both sides: ``WarmInterpreter`` (imported by the executor) and, run by path, the server.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

PRELOADED = ("numpy", "PIL.Image", "torch", "torchvision.models")
PRELOADED_NOTE = f"{', '.join(PRELOADED)} preloaded"
MESSAGE_BYTES = 1 << 20  # a request (argv, the job's environment) fits in one SOCK_SEQPACKET message
READY_TIMEOUT_SECONDS = 300


class WarmInterpreterUnavailable(RuntimeError):
    """The warm interpreter did not start (or has gone): commands run as plain subprocesses."""


class _Signals:
    """``subprocess.Popen``'s signalling, for a process whose ``poll`` says whether it still runs."""

    pid: int

    def poll(self) -> int | None:
        raise NotImplementedError

    def send_signal(self, signal_number: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal_number)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class WarmProcess(_Signals):
    """A forked job process, as much of ``subprocess.Popen`` as the executor uses."""

    def __init__(self, pid: int, stdout: IO[str], stderr: IO[str] | None) -> None:
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self._exited = threading.Event()
        self._output: dict[str, str] = {}
        self._readers: list[threading.Thread] = []

    def _set_exit(self, code: int) -> None:
        self.returncode = code
        self._exited.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(f"warm process {self.pid}", timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str | None]:
        """As ``Popen.communicate``: both piped streams read to their end (on threads, so neither pipe fills while
        the other is read), then the exit awaited; ``TimeoutExpired`` past ``timeout``, and a later call goes on."""
        if not self._readers:
            streams = {"stdout": self.stdout, "stderr": self.stderr}
            for name, stream in streams.items():
                if stream is not None:
                    self._readers.append(threading.Thread(target=self._read_all, args=(name, stream), daemon=True))
                    self._readers[-1].start()
        deadline = None if timeout is None else time.monotonic() + timeout
        for reader in self._readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if reader.is_alive():
                raise subprocess.TimeoutExpired(f"warm process {self.pid}", timeout or 0)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self._output["stdout"], self._output.get("stderr")

    def _read_all(self, name: str, stream: IO[str]) -> None:
        with stream:
            self._output[name] = stream.read()


def _runs_a_script(command: Sequence[str], python: str) -> bool:
    """Whether ``command`` is ``<python> -u <script>|-m <module> ...``: what a forked child can become."""
    return len(command) >= 3 and command[0] == python and command[1] == "-u" and command[2] != "-c"


class WarmInterpreter:
    """One warm server process; ``start`` forks a job from it. Thread-safe; ``close`` ends the server."""

    def __init__(self, python: str, environment: Mapping[str, str]) -> None:
        self.python = python
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._socket = ours
        self._server_stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        self._server = subprocess.Popen(
            [python, __file__, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            env=dict(environment),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._server_stderr,
        )
        theirs.close()
        self._lock = threading.Lock()
        self._one_start_at_a_time = threading.Lock()
        self._processes: dict[int, WarmProcess] = {}
        self._early_exits: dict[int, int] = {}
        self._started: list[int] = []
        self._replied = threading.Condition(self._lock)
        self._gone: str | None = None
        ours.settimeout(READY_TIMEOUT_SECONDS)
        try:
            ready = json.loads(ours.recv(MESSAGE_BYTES) or b"{}")
        except (TimeoutError, ValueError) as error:
            ready = {"error": f"{type(error).__name__}: {error}"}
        ours.settimeout(None)
        if not ready.get("ready"):
            self.close()
            raise WarmInterpreterUnavailable(str(ready.get("error") or self._server_error()))
        threading.Thread(target=self._read_replies, name="warm-interpreter", daemon=True).start()

    def takes(self, command: Sequence[str]) -> bool:
        """Commands this interpreter runs: ``<its python> -u <script>|-m <module> ...``."""
        return _runs_a_script(command, self.python)

    def start(
        self, command: Sequence[str], cwd: Path, environment: Mapping[str, str], stderr: IO[str] | None = None
    ) -> WarmProcess:
        """Fork ``command``; its stderr goes to a pipe (``WarmProcess.stderr``) or, when given, to ``stderr``."""
        if not self.takes(command):
            raise ValueError(f"not a command the warm interpreter runs: {list(command)[:3]}")
        stdout_read, stdout_write = os.pipe()
        stderr_read, stderr_write = os.pipe() if stderr is None else (-1, os.dup(stderr.fileno()))
        request = {"argv": list(command[2:]), "cwd": str(cwd), "environment": dict(environment)}
        try:
            # One request in flight: the server answers in order, and a waiting thread releases self._lock.
            with self._one_start_at_a_time, self._lock:
                if self._gone:
                    raise WarmInterpreterUnavailable(self._gone)
                socket.send_fds(self._socket, [json.dumps(request).encode()], [stdout_write, stderr_write])
                while not self._started and not self._gone:
                    self._replied.wait()
                if self._gone:
                    raise WarmInterpreterUnavailable(self._gone)
                pid = self._started.pop(0)
                process = WarmProcess(
                    pid,
                    open(stdout_read, encoding="utf-8", errors="replace"),  # noqa: SIM115 (the reader closes it)
                    open(stderr_read, encoding="utf-8", errors="replace") if stderr is None else None,  # noqa: SIM115
                )
                self._processes[pid] = process
                if pid in self._early_exits:
                    process._set_exit(self._early_exits.pop(pid))
            return process
        except BaseException:
            for fd in (stdout_read, stderr_read):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            raise
        finally:
            os.close(stdout_write)
            os.close(stderr_write)

    def _read_replies(self) -> None:
        while True:
            try:
                data = self._socket.recv(MESSAGE_BYTES)
            except OSError:
                data = b""
            if not data:
                break
            reply = json.loads(data)
            with self._lock:
                if "started" in reply:
                    self._started.append(int(reply["started"]))
                    self._replied.notify_all()
                elif "exited" in reply:
                    pid, code = int(reply["exited"]), int(reply["code"])
                    process = self._processes.pop(pid, None)
                    if process is None:
                        self._early_exits[pid] = code
                    else:
                        process._set_exit(code)
        with self._lock:
            self._gone = f"the warm interpreter ended: {self._server_error()}"
            self._replied.notify_all()
            # Children still running are no longer ours to wait for: say so through their exit code.
            for process in self._processes.values():
                print(f"local executor: {self._gone}; process {process.pid} abandoned", file=sys.stderr)
                process._set_exit(1)
            self._processes.clear()

    @property
    def gone(self) -> bool:
        return self._gone is not None

    def _server_error(self) -> str:
        if self._server.poll() is None:
            return "no answer"
        self._server_stderr.seek(0)
        tail = self._server_stderr.read().strip().splitlines()[-3:]
        return f"exit code {self._server.returncode}: {' | '.join(tail)}"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        try:
            self._server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._server.kill()
            self._server.wait()


_SHARED: dict[tuple[str, tuple[tuple[str, str], ...]], WarmInterpreter] = {}
_SHARED_LOCK = threading.Lock()
# The variables that what PRELOADED imports reads at import (thread pools, kernel dispatch, CUDA, allocators) or that
# decide what it imports: interpreters whose environments agree on these serve each other's jobs.
READ_AT_IMPORT = ("OMP_", "KMP_", "MKL_", "OPENBLAS_", "ATEN_", "ONEDNN_", "DNNL_", "TORCH", "PYTORCH_", "CUDA_",
                  "NVIDIA_", "PYTHON", "LD_")  # fmt: skip


def shared_interpreter(python: str, environment: Mapping[str, str]) -> WarmInterpreter:
    """One warm interpreter per Python (and per value of the READ_AT_IMPORT variables) in this process, started at
    the first call and ended when the process exits: every pipeline of a test module, or of the offline run, forks
    from the same one."""
    key = (python, tuple(sorted((k, v) for k, v in environment.items() if k.startswith(READ_AT_IMPORT))))
    with _SHARED_LOCK:
        warm = _SHARED.get(key)
        if warm is None or warm.gone:
            warm = _SHARED[key] = WarmInterpreter(python, environment)
            atexit.register(warm.close)
        return warm


class JobProcesses:
    """Starts the executor's job commands: forked from this process's warm interpreter (shared_interpreter) when
    it takes them, else as plain subprocesses; each in a process group of its own, stdout and stderr piped as
    text."""

    def __init__(self, python: str, environment: Mapping[str, str], *, warm: bool = True) -> None:
        self._python = python
        self._environment = dict(environment)
        self._warm_wanted = warm
        self.warm_unavailable: str | None = None

    def start(
        self, command: Sequence[str], cwd: Path, environment: Mapping[str, str], stderr: IO[str] | None = None
    ) -> WarmProcess | Any:
        """``command`` started; its stderr piped, or written to ``stderr`` when given."""
        warm = self._warm_interpreter()
        if warm is not None and warm.takes(command):
            try:
                return warm.start(command, cwd, environment, stderr)
            except WarmInterpreterUnavailable as error:
                self.warm_unavailable = str(error)
        return subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(environment),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if stderr is None else stderr,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,
        )

    def _warm_interpreter(self) -> WarmInterpreter | None:
        if not self._warm_wanted or self.warm_unavailable is not None:
            return None
        try:
            return shared_interpreter(self._python, self._environment)
        except WarmInterpreterUnavailable as error:
            self.warm_unavailable = str(error)
            return None


# --- the server (run by path: python warm_interpreter.py <socket fd>) ------------------------------------------


_SERVER_PATH: list[str] = []


def free_port() -> int:
    """A loopback port nothing listens on now, for one job's torchrun rendezvous."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(channel: socket.socket) -> None:
    import importlib

    # The path a fresh interpreter of this Python starts with, without the server's own PYTHONPATH entries: each
    # job puts its script's folder and its own PYTHONPATH in front of it.
    inherited = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    _SERVER_PATH[:] = [entry for entry in sys.path[1:] if entry not in inherited]

    try:
        os.close(os.pidfd_open(os.getpid()))  # how the server learns that a child ended (Linux 5.3 and later)
        for name in PRELOADED:
            importlib.import_module(name)
    except (AttributeError, OSError, ImportError) as error:
        channel.send(json.dumps({"error": f"{type(error).__name__}: {error}"}).encode())
        return
    channel.send(json.dumps({"ready": True}).encode())
    selector = selectors.DefaultSelector()
    selector.register(channel, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj is channel:
                data, fds, _, _ = socket.recv_fds(channel, MESSAGE_BYTES, 2)
                if not data:
                    return  # the executor closed its end
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    _become_job(json.loads(data), fds, channel)  # never returns
                os.setpgid(pid, pid)  # the child does too: killpg works whichever runs first
                for fd in fds:
                    os.close(fd)
                selector.register(os.pidfd_open(pid), selectors.EVENT_READ, pid)
                channel.send(json.dumps({"started": pid}).encode())
            else:
                selector.unregister(key.fileobj)
                os.close(key.fd)
                _, status = os.waitpid(key.data, 0)
                channel.send(json.dumps({"exited": key.data, "code": os.waitstatus_to_exitcode(status)}).encode())


def _become_job(request: dict[str, Any], fds: list[int], channel: socket.socket) -> None:
    import io

    code = 1
    try:
        with contextlib.suppress(PermissionError):
            os.setpgid(0, 0)
        channel.close()
        stdout_fd, stderr_fd = fds
        devnull = os.open(os.devnull, os.O_RDONLY)
        for source, target in ((devnull, 0), (stdout_fd, 1), (stderr_fd, 2)):
            os.dup2(source, target)
            os.close(source)
        # python -u: unbuffered binary streams, text written through at once.
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True, line_buffering=True)
        sys.stderr = io.TextIOWrapper(
            io.FileIO(2, "w", closefd=False), write_through=True, line_buffering=True, errors="backslashreplace"
        )
        argv = request["argv"]
        if argv[:2] == ["-m", "torch.distributed.run"]:
            _fork_torchrun_workers()
        code = _run_as_main(argv, request["cwd"], request["environment"])
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        _exit(code)


def _run_as_main(argv: list[str], cwd: str, environment: Mapping[str, str]) -> int:
    """Run ``argv`` (``<script> ...`` or ``-m <module> ...``) in this process as ``python -u`` would have run it
    in ``cwd`` with ``environment``: the exit code it asked for."""
    import runpy
    import traceback

    try:
        os.chdir(cwd)
        # What the preloaded modules took from the server's start: multiprocessing resolves a spawned child's
        # relative main path against the folder the process started in.
        if "multiprocessing.process" in sys.modules:
            sys.modules["multiprocessing.process"].ORIGINAL_DIR = os.getcwd()  # type: ignore[attr-defined]
        os.environ.clear()
        os.environ.update(environment)
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit() and int(threads) > 0:
            import torch

            torch.set_num_threads(int(threads))
        job_path = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
        sys.orig_argv = [sys.executable, "-u", *argv]
        module = argv[1] if argv[0] == "-m" else None
        first = os.getcwd() if module else os.path.dirname(os.path.abspath(argv[0]))
        sys.path[:] = [first, *job_path, *_SERVER_PATH]
        _run_startup_hooks()
        if module:
            sys.argv = [module, *argv[2:]]
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            runpy.run_path(argv[0], run_name="__main__")
        return 0
    except SystemExit as exit_request:
        if exit_request.code is None or isinstance(exit_request.code, int):
            return exit_request.code or 0
        print(exit_request.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1


def _exit(code: int) -> None:
    """End a forked process as the interpreter would: atexit handlers, flushed streams, no parent's cleanup."""
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    with contextlib.suppress(BaseException):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


class ForkedWorker(_Signals):
    """A torchrun worker forked by ``_fork_torchrun_workers``: as much of ``subprocess.Popen`` as torchrun uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"torchrun worker {self.pid}", timeout or 0)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode


TORCHRUN_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


def _fork_torchrun_workers() -> None:
    """In a forked torchrun: its workers (``python -u <script>|-m <module> ...``, one per rank) forked from this
    process, where torch is already imported, instead of started as fresh interpreters that import it again. Each
    stays torchrun's child in a session of its own, as torchrun's ``Popen(start_new_session=True)`` makes it, with
    torchrun's stdout and stderr (or the files torchrun redirects them to), the environment torchrun gives the
    rank, and torchrun's signal handlers reset. The atexit handlers stay: torchrun registers none of its own, and
    those of the preloaded modules are a fresh rank's too."""
    from torch.distributed.elastic.multiprocessing.subprocess_handler import subprocess_handler

    start_fresh = subprocess_handler.SubprocessHandler._popen

    def popen(handler: Any, args: tuple[str, ...], env: dict[str, str]) -> Any:
        argv = [str(arg) for arg in args]
        if not _runs_a_script(argv, sys.executable):
            return start_fresh(handler, args, env)
        cwd = os.getcwd()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid:
            print(f"local executor: torchrun's worker {pid} forked from the warm interpreter", file=sys.stderr)
            return ForkedWorker(pid)
        code = 1
        try:
            os.setsid()
            for signal_number in TORCHRUN_SIGNALS:
                signal.signal(signal_number, signal.SIG_DFL)
            for redirect, target in ((handler._stdout, 1), (handler._stderr, 2)):
                if redirect is not None:
                    os.dup2(redirect.fileno(), target)
            code = _run_as_main(argv[2:], cwd, env)
        finally:
            _exit(code)

    subprocess_handler.SubprocessHandler._popen = popen


def _run_startup_hooks() -> None:
    """What site.py does at a fresh interpreter's start with the job's sys.path: import ``sitecustomize`` (and
    ``usercustomize``), such as network isolation's bootstrap; the server's own were imported under its path."""
    import site

    sys.modules.pop("sitecustomize", None)
    sys.modules.pop("usercustomize", None)
    site.execsitecustomize()
    if site.ENABLE_USER_SITE:
        site.execusercustomize()


if __name__ == "__main__":
    _serve(socket.socket(fileno=int(sys.argv[1])))
