"""The preloaded interpreter behind tests/cli.py: it imports the libraries `pulse` commands use
(NumPy, pandas, SciPy, scikit-learn, SQLAlchemy, Typer, Rich, ...; never Pulse itself), then
forks one child per command it is sent, so that a command starts in a tenth of a second
instead of spending one to two seconds of CPU importing them again.

Run as a script (`python tests/preload_server.py`), never imported by Pulse.
Requests come as JSON lines on stdin, one at a time: {"argv", "env", "cwd", "stdin",
"stdout", "stderr", "timeout", "code"} (stdin, stdout and stderr name files; code, when
given, is run instead of `pulse`, for tests/test_pulse_cli.py); each answer is one JSON line on
stdout: {"returncode": N} or {"timeout": true}. The child is what a fresh `pulse` process
would be from the moment its libraries are loaded: this request's environment, working
directory, arguments and standard streams, Pulse imported in the child, its exit handlers
run, its exit code returned.
"""
from __future__ import annotations

import importlib
import json
import os
import pkgutil
import signal
import sys
import time


def _libraries() -> list[str]:
    """The modules that importing every module of Pulse loads, Pulse's own excepted: found in
    a forked child, so that Pulse itself is never imported here."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            import pulse

            for info in pkgutil.walk_packages(pulse.__path__, "pulse."):
                if info.name.endswith(".__main__"):  # runs the command line when imported
                    continue
                try:
                    importlib.import_module(info.name)
                except Exception:  # noqa: BLE001 - an optional part: its libraries are not needed
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
    for name in names:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module that needs what a command sets up: skip
            pass


#: Thread counts that OpenMP and BLAS read once, when their library loads (here, before the
#: fork): applied again in the child, as its environment says, through threadpoolctl.
_THREAD_VARIABLES = (("OMP_NUM_THREADS", "openmp"), ("OPENBLAS_NUM_THREADS", "blas"),
                     ("MKL_NUM_THREADS", "blas"))


def _thread_settings() -> None:
    limits = {api: int(os.environ[name]) for name, api in _THREAD_VARIABLES
              if os.environ.get(name, "").isdigit()}
    if limits:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=limits)


def _child(req: dict) -> None:
    """In the forked child: become the command and never return."""
    code = 1
    try:
        os.setsid()  # its own process group: a timeout kills the command and its children
        os.environ.clear()
        os.environ.update(req["env"])
        os.chdir(req["cwd"])
        for fd, path, flags in ((0, req["stdin"], os.O_RDONLY),
                                (1, req["stdout"], os.O_WRONLY | os.O_TRUNC),
                                (2, req["stderr"], os.O_WRONLY | os.O_TRUNC)):
            opened = os.open(path, flags)
            os.dup2(opened, fd)
            os.close(opened)
        encoding = os.environ.get("PYTHONIOENCODING", "utf-8").split(":")[0] or "utf-8"
        sys.stdin = open(0, encoding=encoding, closefd=False)
        sys.stdout = open(1, "w", encoding=encoding, closefd=False)
        sys.stderr = open(2, "w", encoding=encoding, errors="backslashreplace", closefd=False)
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


def _serve(answers_fd: int) -> None:
    answers = os.fdopen(answers_fd, "w", buffering=1)
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            os.close(answers_fd)
            _child(req)
        deadline = time.monotonic() + float(req["timeout"])
        status = None
        while status is None:
            done, raw = os.waitpid(pid, os.WNOHANG)
            if done:
                status = raw
            elif time.monotonic() > deadline:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            else:
                time.sleep(0.01)
        if status is None:
            answers.write(json.dumps({"timeout": True}) + "\n")
        else:
            answers.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")


if __name__ == "__main__":
    # sys.path as the `pulse` script has it: its own folder first, not tests/
    sys.path[0] = os.path.dirname(sys.executable)
    # the answers keep the real stdout; whatever a library prints goes to stderr
    answers_fd = os.dup(1)
    os.dup2(2, 1)
    _preload(_libraries())
    _serve(answers_fd)
