"""Job processes forked from a warm interpreter behave as ``python -u <script>`` started fresh would: arguments,
folder, environment, path, output, exit status and signals; and what it cannot take runs as a plain process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from offline.local_sagemaker.warm_interpreter import (
    JobProcesses,
    WarmInterpreter,
    WarmInterpreterUnavailable,
    WarmProcess,
    free_port,
)

PYTHON = sys.executable


@pytest.fixture(scope="module")
def warm() -> Iterator[WarmInterpreter]:
    interpreter = WarmInterpreter(PYTHON, os.environ)
    yield interpreter
    interpreter.close()


def script(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


def finished(process: WarmProcess | subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=60)
    assert process.returncode is not None and err is not None
    return process.returncode, out, err


def test_a_forked_script_gets_its_arguments_folder_environment_and_path(warm: WarmInterpreter, tmp_path: Path) -> None:
    # GIVEN a script that reports what a fresh interpreter would have given it
    script(
        tmp_path / "code",
        "job.py",
        """\
        import os, sys
        print("preloaded", "torch" in sys.modules)
        import helper
        print("argv", sys.argv)
        print("cwd", os.getcwd())
        print("environment", sorted(k for k in os.environ if k.startswith("JOB_")), os.environ.get("HOME"))
        print("path", sys.path[:2])
        print("to stderr", file=sys.stderr)
        sys.exit(3)
        """,
    )
    script(tmp_path / "lib", "helper.py", "")
    environment = {"JOB_A": "1", "JOB_B": "2", "PYTHONPATH": str(tmp_path / "lib")}
    # WHEN it is forked with the job's environment (nothing of the executor's)
    process = warm.start([PYTHON, "-u", "job.py", "--epochs", "2"], tmp_path / "code", environment)
    code, out, err = finished(process)
    # THEN it ran as python -u job.py --epochs 2 in its folder would, torch already imported
    assert code == 3 and err == "to stderr\n"
    assert out.splitlines() == [
        "preloaded True",
        "argv ['job.py', '--epochs', '2']",
        f"cwd {tmp_path / 'code'}",
        "environment ['JOB_A', 'JOB_B'] None",
        f"path ['{tmp_path / 'code'}', '{tmp_path / 'lib'}']",
    ]


def test_exit_statuses_are_those_of_a_fresh_interpreter(warm: WarmInterpreter, tmp_path: Path) -> None:
    cases = {
        "raise ValueError('bad data')": (1, "ValueError: bad data"),
        "import sys; sys.exit('refused: no test split')": (1, "refused: no test split"),
        "import atexit; atexit.register(print, 'atexit ran')": (0, ""),
    }
    for number, (body, (expected_code, expected_error)) in enumerate(cases.items()):
        script(tmp_path, f"case{number}.py", body)
        code, out, err = finished(warm.start([PYTHON, "-u", f"case{number}.py"], tmp_path, {}))
        last_error_line = err.strip().splitlines()[-1] if err.strip() else ""
        assert (code, last_error_line) == (expected_code, expected_error), body
    assert out == "atexit ran\n"


def test_processes_started_at_once_from_many_threads_each_get_their_own_pid_and_status(
    warm: WarmInterpreter, tmp_path: Path
) -> None:
    script(tmp_path, "own.py", "import os, sys\nprint(os.getpid())\nsys.exit(int(sys.argv[1]))\n")
    results: dict[int, tuple[int, str, int]] = {}

    def run(number: int) -> None:
        process = warm.start([PYTHON, "-u", "own.py", str(number)], tmp_path, {})
        code, out, _ = finished(process)
        results[number] = (process.pid, out.strip(), code)

    threads = [threading.Thread(target=run, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert {number: (str(pid), code) for number, (pid, _, code) in results.items()} == {
        number: (printed, number) for number, (_, printed, _) in results.items()
    }
    assert sorted(results) == list(range(8))


def test_communicate_reads_both_streams_and_a_timeout_leaves_the_reading_going(
    warm: WarmInterpreter, tmp_path: Path
) -> None:
    # GIVEN a process that writes more than a pipe holds to stderr before stdout, then takes a while to end
    script(tmp_path, "slow.py", "import sys, time\nsys.stderr.write('e' * 200_000)\nprint('out')\ntime.sleep(1.5)\n")
    process = warm.start([PYTHON, "-u", "slow.py"], tmp_path, {})
    # WHEN communicate is given less time than that THEN it says so, as Popen's does
    with pytest.raises(subprocess.TimeoutExpired):
        process.communicate(timeout=0.2)
    # AND a second call returns everything either stream carried, after the exit
    out, err = process.communicate(timeout=60)
    assert (out, err, process.returncode) == ("out\n", "e" * 200_000, 0)


def test_a_module_runs_as_main(warm: WarmInterpreter, tmp_path: Path) -> None:
    script(tmp_path, "tool.py", "import sys\nprint(__name__, sys.argv[1:])\n")
    code, out, _ = finished(warm.start([PYTHON, "-u", "-m", "tool", "x"], tmp_path, {}))
    assert (code, out) == (0, "__main__ ['x']\n")


def test_a_spawned_child_finds_the_relative_main_script(warm: WarmInterpreter, tmp_path: Path) -> None:
    # multiprocessing resolves the main path against the folder the process started in: the job's, not the server's
    script(
        tmp_path,
        "spawner.py",
        """\
        import multiprocessing

        def child(queue):
            queue.put("child ran")

        if __name__ == "__main__":
            context = multiprocessing.get_context("spawn")
            queue = context.Queue()
            process = context.Process(target=child, args=(queue,))
            process.start()
            print(queue.get(timeout=30))
            process.join()
        """,
    )
    code, out, err = finished(warm.start([PYTHON, "-u", "spawner.py"], tmp_path, {}))
    assert (code, out) == (0, "child ran\n"), err


def test_a_killed_process_group_reports_the_signal_as_popen_does(warm: WarmInterpreter, tmp_path: Path) -> None:
    script(tmp_path, "hang.py", "import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    process = warm.start([PYTHON, "-u", "hang.py"], tmp_path, {})
    assert process.stdout.readline() == "started\n"
    assert os.getpgid(process.pid) == process.pid and process.poll() is None
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL


def test_a_server_writes_its_stderr_to_a_file_and_stops_on_terminate(warm: WarmInterpreter, tmp_path: Path) -> None:
    # GIVEN a long-running process (as a model server is) whose stderr goes to its log file
    script(
        tmp_path,
        "serve.py",
        "import sys, time\nsys.stderr.write('log')\nprint('READY 1', flush=True)\ntime.sleep(60)\n",
    )
    with (tmp_path / "server.log").open("a") as log:
        process = warm.start([PYTHON, "-u", "serve.py"], tmp_path, {}, stderr=log)
    assert process.stdout.readline() == "READY 1\n" and process.stderr is None
    # WHEN it is asked to stop
    process.terminate()
    # THEN it ended on SIGTERM, its stderr in the file
    assert process.wait(timeout=30) == -signal.SIGTERM
    assert (tmp_path / "server.log").read_text() == "log"


def test_omp_num_threads_of_the_job_sets_torchs_threads(warm: WarmInterpreter, tmp_path: Path) -> None:
    script(tmp_path, "threads.py", "import torch\nprint(torch.get_num_threads())\n")
    _, out, _ = finished(warm.start([PYTHON, "-u", "threads.py"], tmp_path, {"OMP_NUM_THREADS": "1"}))
    assert out == "1\n"


def test_a_start_up_hook_on_the_jobs_path_runs_before_the_script(warm: WarmInterpreter, tmp_path: Path) -> None:
    # GIVEN a sitecustomize on the job's PYTHONPATH (as network isolation's bootstrap is)
    script(tmp_path / "hook", "sitecustomize.py", "import os\nos.environ['HOOKED'] = 'yes'\n")
    script(tmp_path, "check.py", "import os\nprint(os.environ.get('HOOKED'))\n")
    # THEN the forked job imported it first, as a fresh interpreter would
    process = warm.start([PYTHON, "-u", "check.py"], tmp_path, {"PYTHONPATH": str(tmp_path / "hook")})
    assert finished(process)[:2] == (0, "yes\n")


def test_commands_of_another_python_start_as_plain_processes(warm: WarmInterpreter, tmp_path: Path) -> None:
    assert not warm.takes(["/usr/bin/python3", "-u", "check.py"])
    assert not warm.takes([PYTHON, "-u", "-c", "pass"])
    assert warm.takes([PYTHON, "-u", "check.py"]) and warm.takes([PYTHON, "-u", "-m", "tool"])
    script(tmp_path, "check.py", "print('ran')\n")
    process = JobProcesses(PYTHON, os.environ).start([PYTHON, "-u", "-c", "print('ran')"], tmp_path, dict(os.environ))
    assert isinstance(process, subprocess.Popen)
    assert finished(process)[:2] == (0, "ran\n")


def test_a_lost_server_ends_its_processes_and_refuses_new_ones(tmp_path: Path) -> None:
    interpreter = WarmInterpreter(PYTHON, os.environ)
    script(tmp_path, "hang.py", "import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    running = interpreter.start([PYTHON, "-u", "hang.py"], tmp_path, {})
    assert running.stdout.readline() == "started\n"
    # WHEN the server dies
    interpreter._server.kill()
    # THEN the running process is reported ended (its status can no longer be had) and new starts are refused
    assert running.wait(timeout=30) == 1
    assert interpreter.gone
    with pytest.raises(WarmInterpreterUnavailable, match="the warm interpreter ended"):
        interpreter.start([PYTHON, "-u", "hang.py"], tmp_path, {})
    os.killpg(running.pid, signal.SIGKILL)
    interpreter.close()


TORCHRUN = [PYTHON, "-u", "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
            "--master_addr", "127.0.0.1"]  # fmt: skip


def test_torchruns_workers_are_forked_as_its_own_children_in_sessions_of_their_own(
    warm: WarmInterpreter, tmp_path: Path
) -> None:
    # GIVEN a script that reports what torchrun gave each rank, and whether it started with torch imported
    script(
        tmp_path,
        "rank.py",
        """\
        import os, sys
        preloaded = "torch" in sys.modules
        import torch.distributed as dist
        dist.init_process_group("gloo")
        line = (f"rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']} preloaded {preloaded} own session "
                f"{os.getsid(0) == os.getpid()} parent {os.getppid()} argv {sys.argv} cwd {os.getcwd()} job "
                f"{os.environ['JOB_A']}\\n")
        os.write(1, line.encode())  # one write per rank: the two ranks share torchrun's stdout
        dist.destroy_process_group()
        """,
    )
    port = str(free_port())
    # WHEN torchrun starts two ranks from the warm interpreter
    command = [*TORCHRUN, "--master_port", port, "rank.py", "--x", "1"]
    process = warm.start(command, tmp_path, os.environ | {"JOB_A": "a"})
    code, out, err = finished(process)
    # THEN both ranks ran forked (torch already there), each torchrun's child in its own session, as fresh ones would
    assert code == 0, err[:3000]
    assert sorted(line.split(" parent")[0] for line in out.splitlines()) == [
        "rank 0 of 2 preloaded True own session True",
        "rank 1 of 2 preloaded True own session True",
    ]
    for line in out.splitlines():
        assert f"parent {process.pid} argv ['rank.py', '--x', '1'] cwd {tmp_path} job a" in line
    assert err.count("forked from the warm interpreter") == 2


def test_a_forked_torchrun_worker_failing_or_killed_fails_torchrun_with_its_reason(
    warm: WarmInterpreter, tmp_path: Path
) -> None:
    script(tmp_path, "exits.py", "import os, sys\nsys.exit(5 if os.environ['RANK'] == '1' else 0)\n")
    script(tmp_path, "killed.py", "import os, signal\nif os.environ['RANK'] == '1':\n    os.kill(os.getpid(), 9)\n")
    for name, expected in (("exits.py", "exitcode  : 5"), ("killed.py", "Signal 9 (SIGKILL) received by PID")):
        process = warm.start([*TORCHRUN, "--master_port", str(free_port()), name], tmp_path, dict(os.environ))
        code, _, err = finished(process)
        assert code == 1 and expected in err, err[-2000:]


def test_the_training_tests_can_import_it_without_the_aws_libraries() -> None:
    """tests/training runs on the training image's packages, which have no moto, boto3 or botocore (the Makefile's
    test-training-image): importing the process helpers must not import the executor with the package."""
    probe = (
        "import sys, offline.local_sagemaker.warm_interpreter, offline.synthetic_dataset;"
        "print(sorted(name for name in ('moto', 'boto3', 'botocore') if name in sys.modules))"
    )
    imported = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]"
