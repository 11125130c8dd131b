"""`run_pulse`: the `pulse` command run as a process of its own, started from a preloaded
interpreter (tests/preload_server.py) instead of a fresh one.

Each command is still a separate process with its own arguments, environment, working
directory, standard streams and exit code, and Pulse is imported in it afresh; only the
libraries (NumPy, pandas, SciPy, scikit-learn, SQLAlchemy, ...) were loaded once per test
worker before the fork. That is one to two seconds of CPU saved per command, and the suite
runs a few hundred. tests/test_cli.py and the main job's test keep starting the installed
`pulse` script itself, and tests/test_pulse_cli.py checks that both give the same result.
"""
from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

PULSE = Path(sys.executable).with_name("pulse")
SERVER = Path(__file__).with_name("preload_server.py")

_lock = threading.Lock()
_server: subprocess.Popen[str] | None = None


def _start() -> subprocess.Popen[str]:
    global _server
    if _server is None or _server.poll() is not None:
        _server = subprocess.Popen([sys.executable, str(SERVER)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True, bufsize=1,
                                   cwd=Path(sys.executable).parent)
    return _server


def _stop() -> None:
    """Ask the server to exit (it then kills the spawned commands nobody waited for), and
    wait for it. Said in a request, not only by closing its stdin: a process forked from
    the test worker (a multiprocessing pool, say) may hold the pipe open, and the server
    would never see the end of it."""
    if _server is not None and _server.poll() is None:
        assert _server.stdin is not None
        try:
            _server.stdin.write(json.dumps({"op": "exit"}) + "\n")
            _server.stdin.flush()
            _server.stdin.close()
        except (BrokenPipeError, ValueError):  # it is going already
            pass
        try:
            _server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _server.kill()
            _server.wait()


atexit.register(_stop)  # once: it stops whichever server is running when the worker exits


def run_pulse(*args: str, env: Mapping[str, str] | None = None, input: str | None = None,
              cwd: Path | str | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`subprocess.run([pulse, *args], capture_output=True, text=True, ...)`, from the
    preloaded interpreter; raises `subprocess.TimeoutExpired` after `timeout` seconds (the
    command and its children are killed)."""
    return _run([str(PULSE), *args], env=env, input=input, cwd=cwd, timeout=timeout)


def piped_env(*drop: str) -> dict[str, str]:
    """This test's environment as a scheduler's pipe gives it: without a terminal size
    (COLUMNS, LINES), so rich prints its default 80 columns; `drop` leaves out more names."""
    return {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", *drop)}


def run_preloaded_python(code: str, *, env: Mapping[str, str] | None = None,
                         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -c CODE` in a child of the preloaded interpreter, as `pulse` runs there (for
    tests/test_pulse_cli.py, which compares what the child sees with a fresh process)."""
    return _run([sys.executable, "-c", code], env=env, input=None, cwd=None,
                timeout=timeout, code=code)


def _ask(request: dict) -> dict:
    """One request to this worker's server, and its answer."""
    with _lock:
        server = _start()
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(json.dumps(request) + "\n")
        server.stdin.flush()
        answer = server.stdout.readline()
    if not answer:
        raise RuntimeError(f"the preloaded pulse server stopped (exit {server.poll()})")
    return json.loads(answer)


def _request(argv: Sequence[str], env: Mapping[str, str] | None, cwd: Path | str | None,
             **files: str | None) -> dict:
    return {"argv": list(argv), "env": dict(os.environ if env is None else env),
            "cwd": str(cwd or os.getcwd()), **files}


def _run(argv: Sequence[str], *, env: Mapping[str, str] | None, input: str | None,
         cwd: Path | str | None, timeout: float,
         code: str | None = None) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="pulse-cli-") as tmp:
        files = {name: Path(tmp) / name for name in ("stdin", "stdout", "stderr")}
        files["stdin"].write_text(input or "", encoding="utf-8")
        for name in ("stdout", "stderr"):
            files[name].touch()
        result = _ask({**_request(argv, env, cwd, **{k: str(v) for k, v in files.items()}),
                       "op": "run", "timeout": timeout, "code": code})
        out = files["stdout"].read_text(encoding="utf-8", errors="replace")
        err = files["stderr"].read_text(encoding="utf-8", errors="replace")
    if result.get("timeout"):
        raise subprocess.TimeoutExpired(list(argv), timeout, output=out, stderr=err)
    return subprocess.CompletedProcess(list(argv), result["returncode"], out, err)


class PreloadedProcess:
    """A `pulse` command started by `spawn_pulse`: `pid`, `poll()` and `wait(timeout)` as
    `subprocess.Popen` has them (signals go to `pid` with `os.kill`)."""

    def __init__(self, argv: Sequence[str], pid: int) -> None:
        self.args = list(argv)
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = _ask({"op": "poll", "pid": self.pid})["returncode"]
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            answer = _ask({"op": "wait", "pid": self.pid,
                           "timeout": 10 ** 9 if timeout is None else timeout})
            if answer["returncode"] is None:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            self.returncode = answer["returncode"]
        return self.returncode


def spawn_pulse(*args: str, log: Path, append: bool = False,
                env: Mapping[str, str] | None = None,
                cwd: Path | str | None = None) -> PreloadedProcess:
    """`subprocess.Popen([pulse, *args], stdout=log, stderr=subprocess.STDOUT, ...)` from the
    preloaded interpreter: the command runs while the caller goes on; its output (stdout and
    stderr) goes to `log`, appended to it when `append`."""
    argv = [str(PULSE), *args]
    answer = _ask({**_request(argv, env, cwd, stdin=os.devnull, stdout=str(log), stderr=None),
                   "op": "spawn", "append": append})
    return PreloadedProcess(argv, answer["pid"])
