"""The preloaded interpreter behind tests/pulse_cli.py: it imports the libraries `pulse`
commands use (NumPy, pandas, SciPy, scikit-learn, SQLAlchemy, Typer, Rich, ...; never Pulse
itself), then forks one child per command it is sent, so that a command starts in a tenth of
a second instead of spending one to two seconds of CPU importing them again.

Run as a script (`python tests/preload_server.py`), never imported by Pulse.
Requests come as JSON lines on stdin, one at a time: {"argv", "env", "cwd", "stdin",
"stdout", "stderr", "append", "timeout", "code"} (stdin, stdout and stderr name files, a null
stderr goes to stdout; code, when given, is run instead of `pulse`, for
tests/test_pulse_cli.py), with an "op" of "run", "spawn", "poll", "wait" or "exit"
(`_serve`); each answer is one JSON line on stdout: {"returncode": N}, {"pid": N} or
{"timeout": true}.
The child is what a fresh `pulse` process would be from the moment its libraries are loaded:
this request's environment, working directory, arguments and standard streams, Pulse
imported in the child, its exit handlers run, its exit code returned.
"""
from __future__ import annotations

import importlib
import json
import os
import pkgutil
import signal
import sys
import time
from typing import Any

#: Pulse's packages with a folder of their own (pyproject.toml's package-dir maps
#: pulse.models to models/, and so on): walking pulse/ alone finds none of them.
_PACKAGES = ("pulse", "pulse.sql", "pulse.listeners", "pulse.models", "pulse.outreach",
             "pulse.web")


def _libraries() -> list[str]:
    """The modules that importing every module of Pulse loads, Pulse's own excepted: found in
    a forked child, so that Pulse itself is never imported here."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            for package in _PACKAGES:
                module = importlib.import_module(package)
                for info in pkgutil.walk_packages(module.__path__, f"{package}."):
                    if info.name.endswith(".__main__"):  # runs the command line when imported
                        continue
                    try:
                        importlib.import_module(info.name)
                    except Exception:  # noqa: BLE001 - an optional part, its libraries unneeded
                        pass
            names = [n for n in list(sys.modules) if n.split(".")[0] not in ("pulse", "__main__")]
            with os.fdopen(write, "w") as handle:
                json.dump(names, handle)
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as handle:
        names = json.loads(handle.read() or "[]")
    os.waitpid(pid, 0)
    return names


def _preload(names: list[str]) -> None:
    import warnings

    with warnings.catch_warnings():  # a library's own import-time notices are not a command's
        warnings.simplefilter("ignore")
        for name in names:
            if name in sys.modules:
                continue
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - a module that needs what a command sets up: skip
                pass


#: Thread counts that OpenMP and BLAS read once, when their library loads (here, before the
#: fork): applied again in the child, as its environment says, through threadpoolctl. Each
#: loaded library takes its own variable (OpenBLAS never reads MKL_NUM_THREADS, nor MKL
#: OPENBLAS_NUM_THREADS), as a fresh process would.
_THREAD_VARIABLES = {"openmp": "OMP_NUM_THREADS", "openblas": "OPENBLAS_NUM_THREADS",
                     "mkl": "MKL_NUM_THREADS", "blis": "BLIS_NUM_THREADS"}


def _thread_settings() -> None:
    from threadpoolctl import threadpool_info, threadpool_limits

    limits = {}
    for lib in threadpool_info():
        value = os.environ.get(_THREAD_VARIABLES.get(lib["internal_api"], ""), "")
        if value.isdigit():
            limits[lib["prefix"]] = int(value)
    if limits:
        threadpool_limits(limits=limits)


def _child(req: dict) -> None:
    """In the forked child: become the command and never return."""
    code = 1
    try:
        os.setsid()  # its own process group: a timeout kills the command and its children
        os.environ.clear()
        os.environ.update(req["env"])
        os.chdir(req["cwd"])
        write = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if req.get("append") else os.O_TRUNC)
        for fd, path, flags in ((0, req["stdin"], os.O_RDONLY), (1, req["stdout"], write),
                                (2, req["stderr"], write)):
            if path is None:  # stderr into stdout, as stderr=subprocess.STDOUT
                os.dup2(1, fd)
                continue
            opened = os.open(path, flags, 0o644)
            os.dup2(opened, fd)
            os.close(opened)
        encoding = os.environ.get("PYTHONIOENCODING", "utf-8").split(":")[0] or "utf-8"
        sys.stdin = open(0, encoding=encoding, closefd=False)
        sys.stdout = open(1, "w", encoding=encoding, closefd=False)
        # as Python's own: stdout block-buffered into a file or pipe, stderr line-buffered
        sys.stderr = open(2, "w", buffering=1, encoding=encoding, errors="backslashreplace",
                          closefd=False)
        sys.argv = list(req["argv"])
        _thread_settings()
        if req.get("code") is not None:  # tests/test_pulse_cli.py's probes
            source = req["code"]

            def main() -> None:
                exec(compile(source, "<string>", "exec"), {"__name__": "__main__"})
        else:
            from pulse.cli import main

        try:
            main()
            code = 0
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:  # noqa: BLE001 - as the interpreter would: traceback, exit 1
            import traceback

            traceback.print_exc()
            code = 1
        import atexit

        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed stream at exit is not an error
                pass
        os._exit(code)


def _wait(pid: int, timeout: float | None) -> int | None:
    """The exit status of child `pid` once it ends, or None after `timeout` seconds (None:
    don't wait at all)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(raw)
        if deadline is None or time.monotonic() > deadline:
            return None
        time.sleep(0.01)


def _serve(answers_fd: int) -> None:
    """Requests by "op": "run" (the default: fork, wait, answer the exit code; killed after
    its timeout), "spawn" (fork, answer the pid at once), "poll" and "wait" (a spawned
    child's exit code, or null; "wait" gives up after its timeout), "exit". When the test
    worker goes ("exit", or stdin closes), the spawned children nobody waited for (a test
    that failed first) are killed with their process groups and reaped, not left running
    against a warehouse being dropped."""
    answers = os.fdopen(answers_fd, "w", buffering=1)
    spawned: dict[int, int | None] = {}  # pid: exit code once reaped
    try:
        _answer(answers, answers_fd, spawned)
    finally:
        for pid in [p for p, code in spawned.items() if code is None]:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:  # it ended, or its group is gone already
                pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _answer(answers: Any, answers_fd: int, spawned: dict[int, int | None]) -> None:
    for line in sys.stdin:
        req = json.loads(line)
        op = req.get("op", "run")
        if op == "exit":
            return
        if op in ("poll", "wait"):
            pid = int(req["pid"])
            if spawned.get(pid) is None:
                spawned[pid] = _wait(pid, float(req["timeout"]) if op == "wait" else None)
            answers.write(json.dumps({"returncode": spawned[pid]}) + "\n")
            continue
        pid = os.fork()
        if pid == 0:
            os.close(answers_fd)
            _child(req)
        if op == "spawn":
            spawned[pid] = None
            answers.write(json.dumps({"pid": pid}) + "\n")
            continue
        code = _wait(pid, float(req["timeout"]))
        if code is None:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            answers.write(json.dumps({"timeout": True}) + "\n")
        else:
            answers.write(json.dumps({"returncode": code}) + "\n")


if __name__ == "__main__":
    # sys.path as the `pulse` script has it: its own folder first, not tests/
    sys.path[0] = os.path.dirname(sys.executable)
    # the answers keep the real stdout; whatever a library prints goes to stderr
    answers_fd = os.dup(1)
    os.dup2(2, 1)
    _preload(_libraries())
    _serve(answers_fd)
