"""The one exception hierarchy callers need to catch."""
from __future__ import annotations


class PulseError(Exception):
    """Base class of every error Pulse raises on purpose."""


class ConfigError(PulseError):
    """A setting is missing or has a value Pulse cannot use."""


class InputFileError(PulseError):
    """A whole input file cannot be read or does not fit the data contract."""


class UnknownSourceError(InputFileError):
    """The named source is not part of the data contract."""
