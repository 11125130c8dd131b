"""The one exception hierarchy: every error Pulse raises on purpose is a `PulseError`.

Lower layers raise these types; the command line and the web app convert them to a message
or an HTTP status at the edge, and third-party errors are converted where they enter.
Some also derive from a built-in (`ValueError`, `KeyError`) so that generic callers keep working.

    PulseError
    ├── ConfigError ·························· a setting is missing or unusable
    │   └── TaxonomyError (also TextError) ··· the routing taxonomy file
    ├── InputFileError ······················· a whole input file cannot be used
    │   ├── UnknownSourceError
    │   └── StatuspageError
    ├── InvalidArgumentError (ValueError) ···· a parameter outside what a function accepts
    │   ├── UnknownNameError (KeyError) ······ a name (flag, source, ...) that is not defined
    │   └── ConsoleUserError ················· a console user that cannot be added or changed
    ├── NothingToShowError ··················· a chart or report with no data to draw
    ├── health and models
    │   ├── NotScoredError
    │   ├── ScorecardError
    │   ├── RiskListError
    │   ├── TrainingDataError
    │   ├── ModelInputError (ValueError)
    │   ├── ModelArtifactError
    │   ├── RegistryError
    │   ├── UnknownIncidentError
    │   └── TextError
    ├── listeners
    │   ├── XListenerError
    │   └── SurveyAnswerError
    │       ├── SurveyNotFound, WrongContact, SurveyExpired
    │       └── InvalidRating, NotRated, CommentTooLong, EmptyComment
    └── outreach
        ├── TokenError ······················· a public link's token
        ├── TemplateError
        ├── DigestError
        ├── SendGridError
        └── OutboxError
            ├── InvalidDraftError (ValueError)
            │   └── HeaderInjectionError
            └── TransportAuthError ··············· the provider refused the key (401/403)
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class PulseError(Exception):
    """Base class of every error Pulse raises on purpose."""


class ConfigError(PulseError):
    """A setting is missing or has a value Pulse cannot use."""


class InputFileError(PulseError):
    """A whole input file cannot be read or does not fit the data contract."""


class UnknownSourceError(InputFileError):
    """The named source is not part of the data contract."""


class InvalidArgumentError(PulseError, ValueError):
    """A parameter outside what the function accepts; the message names it and what was expected."""


class UnknownNameError(InvalidArgumentError, KeyError):
    """A name (a flag, a source, a measure) that is not defined."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConsoleUserError(InvalidArgumentError):
    """A console user cannot be added or changed as asked (weak password, unknown role, ...)."""


class NothingToShowError(PulseError):
    """A chart or report was asked for where there is no data to draw."""


# --------------------------------------------------------------------------- health and models


class NothingToScoreError(PulseError):
    """No account had landed or happened by the as-of date, so nothing could be scored."""


class NotScoredError(PulseError):
    """The date has no stored features or health to work from."""


class ScorecardError(PulseError):
    """A scorecard file cannot be used; each problem names its line."""

    def __init__(self, source: str, problems: list[tuple[int | None, str]]) -> None:
        self.source = source
        self.problems = sorted(problems, key=lambda p: (p[0] or 0))
        super().__init__(self.describe())

    def lines(self) -> list[str]:
        """One line per problem: `FILE, line N: PROBLEM`."""
        return [f"{self.source}, line {n}: {msg}" if n else f"{self.source}: {msg}"
                for n, msg in self.problems]

    def describe(self) -> str:
        if len(self.problems) == 1:
            return self.lines()[0]
        return f"{self.source}: {len(self.problems)} problems: " + "; ".join(
            f"line {n}: {msg}" if n else msg for n, msg in self.problems)


class RiskListError(PulseError):
    """A risk-list request Pulse cannot answer as asked (an unknown flag or band)."""


class TrainingDataError(PulseError):
    """History that cannot give a churn model honest training and validation windows."""


class ModelInputError(PulseError, ValueError):
    """Data or settings given to the churn model that it cannot use."""


class ModelArtifactError(PulseError):
    """A saved churn model that cannot be loaded."""


class RegistryError(PulseError):
    """The model registry cannot do what was asked (no such version, a race, ...)."""


class UnknownIncidentError(PulseError):
    """No incident with that id has landed."""


class TextError(PulseError):
    """Text models or their inputs (training files, taxonomies) cannot be used."""


class TaxonomyError(TextError, ConfigError):
    """The routing taxonomy file does not have the expected shape."""


# --------------------------------------------------------------------------- listeners


class StatuspageError(InputFileError):
    """A Statuspage document cannot be fetched, or is not an incidents document."""


class XListenerError(PulseError):
    """One or more X queries failed; their watermarks stayed where they were."""


class SurveyAnswerError(PulseError):
    """A survey answer cannot be recorded."""


class SurveyNotFound(SurveyAnswerError):
    """No survey was sent under this id (unknown, or skipped and never sent)."""


class WrongContact(SurveyAnswerError):
    """The survey was sent to another contact."""


class SurveyExpired(SurveyAnswerError):
    """The survey no longer takes answers."""


class InvalidRating(SurveyAnswerError):
    """The rating is not one of 1..5."""


class NotRated(SurveyAnswerError):
    """A comment was sent for a survey that has no rating yet."""


class CommentTooLong(SurveyAnswerError):
    """The comment is longer than MAX_COMMENT_CHARS characters."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"a comment may have at most {limit:,} characters (this one has "
                         f"{length:,})")
        self.length = length
        self.limit = limit


class EmptyComment(SurveyAnswerError):
    """The comment has no text."""


# --------------------------------------------------------------------------- outreach


class TokenError(PulseError):
    """A public link's token is malformed, tampered with, expired or meant for another use."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # malformed, tampered, expired, wrong_purpose


class TemplateError(PulseError):
    """A template is unknown or cannot be rendered from the context it was given."""


class DigestError(PulseError):
    """A digest cannot be built from the arguments given."""


class SendGridError(PulseError):
    """SendGrid answered something the transport cannot act on."""


class OutboxError(PulseError):
    """The outbox cannot queue or send as asked."""

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


class InvalidDraftError(OutboxError, ValueError):
    """A draft cannot become a message (bad address, unknown template, ...)."""


class HeaderInjectionError(InvalidDraftError):
    """An address meant for a header contains a line break."""


class TransportAuthError(OutboxError):
    """The provider refused the transport's credentials (HTTP 401/403): the run stops and the
    messages not yet accepted stay queued, to go out once the key is fixed."""

    def __init__(self, message: str, *, transport: str, status: int,
                 results: Sequence[Any] = (), report: Any = None) -> None:
        super().__init__(message, report)
        self.transport = transport
        self.status = status
        self.results = list(results)  # what earlier requests of the same call achieved


class PlaybookError(ScorecardError):
    """A playbooks file cannot be used; each problem names its line (and its rule)."""


class TaskError(InvalidArgumentError):
    """A playbook task cannot change as asked (unknown, closed already, no reason given)."""

    #: the HTTP status the console answers with: 400 a bad request, 404 no such task, 409 the
    #: task is closed already
    http_status = 400


class UnknownTaskError(TaskError):
    """No task has that id."""

    http_status = 404


class TaskClosedError(TaskError):
    """The task was closed already (by someone else, or meanwhile)."""

    http_status = 409
