# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Each creates .venv and installs the pinned requirements when they are missing or changed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.pulse-installed

.PHONY: demo test install browser bench lint clean cluster cluster-down

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

# The console's browser tests (tests/test_browser.py) drive Debian's Chromium through
# Playwright's Python package; nothing is downloaded at run time. Installed only if missing.
browser:
	@test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y --no-install-recommends chromium)

# Pulse's own modules byte-compiled before a run: pip compiles the libraries it installs, not
# an editable project, and where PYTHONDONTWRITEBYTECODE is set (this machine, CI) no process
# writes a .pyc, so every `pulse` command, Airflow task and test worker compiled Pulse from
# source again (measured: 0.3 s of a 2.8 s `pulse model list`). Only stale files are redone.
COMPILE := $(BIN)/python -m compileall -q -j 0 pulse models sql listeners outreach web dags tests

demo: $(STAMP)
	@$(COMPILE) > /dev/null
	$(BIN)/pulse demo run

# Four xdist workers on two cores: the suite waits on Airflow, PostgreSQL and the browser as
# much as it computes, so the workers beyond two fill those waits (measured on a clean clone:
# 15 min 56 s of tests with four, 17 min 10 s with three; 21.7 min with two, long ago).
test: $(STAMP) browser
	@$(COMPILE) > /dev/null
	$(BIN)/python -m pytest -n 4 --dist loadgroup

# The production profile on this machine (docs/cluster.md): Airflow on CeleryExecutor with
# PostgreSQL and Redis; PULSE_DATABASE_URL must name a PostgreSQL warehouse.
cluster: $(STAMP)
	$(BIN)/pulse cluster up

cluster-down:
	$(BIN)/pulse cluster down

bench: $(STAMP)
	$(BIN)/pulse bench ingest --rows 1000000

lint: $(STAMP)
	$(BIN)/ruff check dags/ --select AIR3
	$(BIN)/ruff check .
	$(BIN)/python -m pulse.devkit.checks

clean:
	rm -rf var .pytest_cache
