"""Domain errors. Every error the user can cause derives from :class:`TriageError`.

Messages say what went wrong and how to fix it; the CLI prints them on one line and exits
non-zero, the API maps them to 4xx responses with a JSON body.
"""

from __future__ import annotations


class TriageError(Exception):
    """Base class of every error triage raises on purpose."""

    #: HTTP status the API answers with when this error escapes a request handler.
    status_code: int = 400
    #: Exit code the CLI uses.
    exit_code: int = 2


class ConfigError(TriageError):
    """A configuration file (routing table, taxonomy, settings) is invalid."""

    status_code = 500
    exit_code = 3


class InputError(TriageError):
    """The caller's input (text, file, column, argument) cannot be processed."""

    status_code = 422


class TextTooLongError(InputError):
    """A text is longer than the configured maximum."""

    status_code = 413


class DataFileError(InputError):
    """A data file cannot be read: unreadable, wrong format or missing a column."""


class ModelError(TriageError):
    """A model artefact is missing, incompatible or was not fitted."""

    status_code = 503
    exit_code = 4


class ModelFormatError(ModelError):
    """An artefact's format version or library versions do not match this installation."""


class NotFoundError(TriageError):
    """A referenced object (case, model version) does not exist."""

    status_code = 404
