"""tests/pulse_cli.py's preloaded `pulse` gives what the installed script gives: the same
output, exit codes, standard input, environment and working directory, and a timeout that
kills the command."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.pulse_cli import PULSE, run_preloaded_python, run_pulse, spawn_pulse

WIDE = {"COLUMNS": "120"}


def _both(*args: str, env: dict[str, str], input: str | None = None,
          cwd: Path | None = None) -> tuple[subprocess.CompletedProcess[str], ...]:
    real = subprocess.run([str(PULSE), *args], input=input, capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120, check=False)
    return real, run_pulse(*args, env=env, input=input, cwd=cwd, timeout=120)


def test_help_and_a_usage_error_read_the_same() -> None:
    env = {**os.environ, **WIDE}
    for args in (("--help",), ("risk-list", "--help"), ("no-such-command",),
                 ("score", "--as-of", "not-a-date")):
        real, preloaded = _both(*args, env=env)
        assert (preloaded.returncode, preloaded.stdout, preloaded.stderr) == (
            real.returncode, real.stdout, real.stderr), args
    assert real.returncode == 2 and "not-a-date" in real.stderr


def test_the_warehouse_stdin_and_a_pulse_error_as_the_script_has_them(
        engine: Engine, pulse_home: Path) -> None:
    env = {**os.environ, **WIDE}
    real, preloaded = _both("user", "add", "ana@example.com", "--role", "csm",
                            env=env, input="correct horse battery staple\n")
    assert real.returncode == 0, real.stderr
    # the preloaded add came second: refused with a PulseError (one line, exit 1), as the
    # installed script refuses it
    again = subprocess.run([str(PULSE), "user", "add", "ana@example.com", "--role", "csm"],
                           input="correct horse battery staple\n", capture_output=True,
                           text=True, env=env, timeout=120, check=False)
    assert again.returncode == 1 and again.stderr.startswith("error: ")
    assert (preloaded.returncode, preloaded.stderr) == (again.returncode, again.stderr)
    real, preloaded = _both("user", "list", "--format", "json", env=env)
    assert real.returncode == 0, real.stderr
    assert json.loads(preloaded.stdout) == json.loads(real.stdout)
    assert [u["email"] for u in json.loads(real.stdout)] == ["ana@example.com"]


def test_environment_and_working_directory_are_the_callers(tmp_path: Path) -> None:
    """A relative PULSE_HOME is read from the environment given and resolved against the
    working directory given, as for the script."""
    env = {**os.environ, **WIDE, "PULSE_HOME": "relative-home"}
    env.pop("PULSE_DATABASE_URL", None)
    for name in ("real", "preloaded"):
        (tmp_path / name).mkdir()
    real = subprocess.run([str(PULSE), "db", "upgrade"], capture_output=True, text=True,
                          env=env, cwd=tmp_path / "real", timeout=120, check=False)
    preloaded = run_pulse("db", "upgrade", env=env, cwd=tmp_path / "preloaded", timeout=120)
    assert real.returncode == preloaded.returncode == 0, real.stderr + preloaded.stderr
    said = [" ".join(p.stdout.split()) for p in (real, preloaded)]  # wrapped where it fits
    assert said[1] == said[0].replace(str(tmp_path / "real"), str(tmp_path / "preloaded"))
    for name in ("real", "preloaded"):
        assert (tmp_path / name / "relative-home" / "pulse.db").is_file(), name


def test_a_timeout_kills_the_command(tmp_path: Path) -> None:
    env = {**os.environ, "PULSE_HOME": str(tmp_path)}
    with pytest.raises(subprocess.TimeoutExpired):
        # some minutes of work (a world of 20,000 accounts over two years), stopped after 2 s
        run_pulse("demo", "generate", "--accounts", "20000", "--days", "730", "--out",
                  str(tmp_path / "world"), env=env, timeout=2)
    # and the next command runs as before
    assert run_pulse("--help", env=env).returncode == 0




def test_thread_counts_from_the_environment_take_effect() -> None:
    """OpenBLAS (NumPy's) and OpenMP read their thread counts when their library loads,
    which for NumPy's was in the preloaded interpreter, before the command's environment:
    the child applies them again, and its pools are what a fresh process's are. A variable
    of a BLAS that is not loaded (MKL's, beside NumPy's OpenBLAS) changes nothing in either."""
    probe = ("import sklearn.ensemble\n"
             "from threadpoolctl import threadpool_info\n"
             "print(sorted({(p['user_api'], p['num_threads']) for p in threadpool_info()}))\n")
    for threads, mkl in (("1", None), ("2", None), ("1", "2")):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
        env.pop("MKL_NUM_THREADS", None)
        if mkl:
            env["MKL_NUM_THREADS"] = mkl
        fresh = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                               env=env, timeout=120, check=True)
        preloaded = run_preloaded_python(probe, env=env)
        assert preloaded.returncode == 0, preloaded.stderr
        assert preloaded.stdout == fresh.stdout
        assert fresh.stdout == f"[('blas', {threads}), ('openmp', {threads})]\n"


def test_a_spawned_command_nobody_waits_for_ends_with_the_server(tmp_path: Path) -> None:
    """A test that fails before it waits leaves its spawned command to the server, which
    kills and reaps it when the worker goes (here: stopped; the next command restarts it)."""
    import multiprocessing
    import time

    from tests import pulse_cli

    env = {**os.environ, **WIDE, "PULSE_HOME": str(tmp_path)}
    long = spawn_pulse("demo", "generate", "--accounts", "20000", "--days", "730", "--out",
                       str(tmp_path / "world"), log=tmp_path / "log.txt", env=env)
    assert long.poll() is None
    # a process forked from the worker holds the server's stdin open (as a multiprocessing
    # pool of an earlier test may): the server must stop all the same
    holder = multiprocessing.get_context("fork").Process(target=time.sleep, args=(120,))
    holder.start()
    try:
        pulse_cli._stop()
        with pytest.raises(ProcessLookupError):  # killed and reaped: no such process any more
            os.kill(long.pid, 0)
    finally:
        holder.kill()
        holder.join()
    assert run_pulse("--help", env=env).returncode == 0  # a new server


def test_a_spawned_command_runs_beside_the_caller_and_can_be_killed(tmp_path: Path) -> None:
    env = {**os.environ, **WIDE, "PULSE_HOME": str(tmp_path)}
    log = tmp_path / "log.txt"
    log.write_text("before\n")
    long = spawn_pulse("demo", "generate", "--accounts", "20000", "--days", "730", "--out",
                       str(tmp_path / "world"), log=log, append=True, env=env)
    short = spawn_pulse("no-such-command", log=tmp_path / "short.txt", env=env)
    assert short.wait(timeout=60) == 2 and short.poll() == 2
    with open(tmp_path / "real.txt", "wb") as real_log:  # the same, as subprocess.Popen runs it
        real = subprocess.Popen([str(PULSE), "no-such-command"], env=env, stdout=real_log,
                                stderr=subprocess.STDOUT)
        assert real.wait(timeout=60) == 2
    said = (tmp_path / "short.txt").read_text()
    assert "No such command" in said and said == (tmp_path / "real.txt").read_text()
    assert long.poll() is None  # still generating
    with pytest.raises(subprocess.TimeoutExpired):
        long.wait(timeout=0.5)
    os.kill(long.pid, signal.SIGKILL)
    assert long.wait(timeout=30) == -signal.SIGKILL
    assert log.read_text().startswith("before\n")  # appended to, not truncated
