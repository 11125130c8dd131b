"""The first-response time customers expect per channel, in minutes (issue 15).

The built-in file is `models/responses.yaml`; `PULSE_RESPONSES_EXPECTATIONS` points at your
own copy. It lives on the ground floor because both the response reports (models/responses.py)
and the account features (sql/features.py, which may not import models/) read it.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

from pulse.core.errors import ConfigError

#: Periods `pulse responses report` reads by default: its chart draws as many. Here, on the
#: ground floor, so that the command line's default is this one without importing models/.
REPORT_PERIODS = 12


def default_file() -> Path:
    """The built-in expectations: `responses.yaml` of the installed `pulse.models` package
    (found without importing it)."""
    spec = importlib.util.find_spec("pulse.models")
    places = list(spec.submodule_search_locations or []) if spec else []
    for place in places:
        path = Path(place) / "responses.yaml"
        if path.exists():
            return path
    raise ConfigError("the built-in response expectations (pulse/models/responses.yaml) "
                      "are missing: reinstall Pulse or set PULSE_RESPONSES_EXPECTATIONS")


def load_expectations(path: Path | str | None = None) -> dict[str, float]:
    """Minutes customers expect per channel (lower-case), with a `default`."""
    if path is None:
        from pulse.core.settings import get_settings

        path = get_settings().responses_expectations or default_file()
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the response expectations: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of channel to minutes")
    out: dict[str, float] = {}
    for channel, minutes in raw.items():
        if isinstance(minutes, bool) or not isinstance(minutes, int | float) or minutes <= 0:
            raise ConfigError(f"{path}: invalid value for {channel!r}: expected minutes > 0 "
                              f"(not {minutes!r})")
        out[str(channel).lower()] = float(minutes)
    out.setdefault("default", 60.0)
    return out
