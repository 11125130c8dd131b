"""Several `airflow dags test` runs in one Airflow process (`DagSession` in airflow_runner.py).

Run as `python -m pulse.devkit.dag_session` with the environment `airflow_environ()` builds.
Each line on standard input is a JSON list, the arguments after `airflow` (`["dags", "test",
DAG_ID, ...]`); each is parsed by Airflow's own CLI parser and run by its own command
function, exactly as the `airflow` script runs one, and its output goes to standard output.
After each, one line `<END_MARK> <exit status>` says it is over. End of input ends the process.

What one process saves over one `airflow` process per run is starting Airflow (its CLI, its
in-process execution API) and importing what the tasks import, about ten seconds a run on a
loaded machine. Each run still parses the DAG files afresh and is a DAG run of its own in the
metadata database.
"""
from __future__ import annotations

import json
import sys
import traceback

#: Printed on a line of its own, with the exit status, after each run's output.
END_MARK = "\x1epulse-dag-session-run-ended"


def _run(parser: object, argv: list[str]) -> int:
    try:
        args = parser.parse_args(argv)  # type: ignore[attr-defined]
        args.func(args)
    except SystemExit as exc:  # the CLI's way of failing ("DagRun failed", a bad argument)
        if isinstance(exc.code, int):
            return exc.code
        if exc.code is not None:
            print(exc.code, file=sys.stderr)
        return 1
    except Exception:  # a command that raised: its traceback, as the airflow script shows it
        traceback.print_exc()
        return 1
    return 0


def main() -> None:
    # As airflow/__main__.py does: the configuration first, then the parser, and the default
    # configuration file written if it is missing.
    from airflow import configuration  # noqa: F401
    from airflow.cli import cli_parser
    from airflow.configuration import write_default_airflow_configuration_if_needed

    write_default_airflow_configuration_if_needed()
    parser = cli_parser.get_parser()
    for line in sys.stdin:
        if not line.strip():
            continue
        code = _run(parser, [str(a) for a in json.loads(line)])
        for stream in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__):
            if stream is not None:
                stream.flush()
        print(f"{END_MARK} {code}", flush=True)


if __name__ == "__main__":
    main()
